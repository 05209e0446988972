-- The feeds ask for created_at DESC, rowid DESC. An index on created_at
-- DESC keeps equal times in ascending rowid order, so SQLite sorted every
-- page again in a temporary b-tree; an ascending index read backwards gives
-- exactly that order (bench/README.md, "Data path").
DROP INDEX activities_by_time;
DROP INDEX activities_by_user;
CREATE INDEX activities_by_time ON activities (created_at);
CREATE INDEX activities_by_user ON activities (user_handle, created_at);
