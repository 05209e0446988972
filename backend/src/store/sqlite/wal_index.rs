//! Whether anything was committed to a WAL database since the last look,
//! told by one read of the WAL-index header instead of a read transaction.
//!
//! The feed cache asks for the store's version on every read. Through
//! SQLite that is `PRAGMA data_version` in a read transaction: locking and
//! unlocking the database file and the WAL index, four `fcntl` calls and
//! the pager's work around them: about a quarter of a cached read's CPU
//! (bench/README.md, "Data path", step 5). While no commit has happened
//! since the last such look, its answer still holds; this module tells
//! that with one `pread` of the `-shm` file.
//!
//! The `-shm` file of a WAL database starts with the WAL-index header,
//! twice (SQLite's file format, "The WAL-Index Format"): 48 bytes holding
//! the WAL's last committed frame, its salts and a checksum. Every commit,
//! by any connection of any process, appends frames and then rewrites both
//! copies, the second one first, before any reader can see it; it answers
//! only after that. Other processes' writes to the file's shared mapping
//! are in the page cache `pread` reads, so a header read after a commit
//! answered is that commit's header or a later one. The header never comes
//! back to an earlier value: frames only accumulate, and a WAL that starts
//! over takes new salts.
//!
//! A read that overlaps a commit writing the header may see the copies
//! differ, and then it is not trusted; if it sees them agree on the old
//! value, the commit had not answered yet, so the old version was still
//! true when the read began. The file stays in place while this process
//! holds a connection: SQLite truncates or rebuilds it only with no
//! connection open anywhere.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::store::StoreVersion;

/// Bytes of one copy of the WAL-index header.
const COPY: usize = 48;

/// Both copies, as they are read in one call.
type Header = [u8; 2 * COPY];

/// The `-shm` file of one database, and the last version read from the
/// database with the header it was read under.
pub(super) struct WalIndex {
    shm: File,
    seen: Option<(Header, StoreVersion)>,
}

impl WalIndex {
    /// Opens `database`'s `-shm` file for reading; it exists once a
    /// connection has the database open in WAL mode.
    pub(super) fn open(database: &Path) -> io::Result<Self> {
        let mut name = database.as_os_str().to_owned();
        name.push("-shm");
        Ok(WalIndex {
            shm: File::open(name)?,
            seen: None,
        })
    }

    /// The header as it is now, when its two copies agree; `None` when a
    /// commit is writing it or the file cannot be read.
    pub(super) fn header(&self) -> Option<Header> {
        let mut header = [0; 2 * COPY];
        self.shm.read_exact_at(&mut header, 0).ok()?;
        (header[..COPY] == header[COPY..]).then_some(header)
    }

    /// The version last read, if nothing was committed since: the header
    /// is the one it was read under, and this process's own count of
    /// commits (`local`) has not moved.
    pub(super) fn unchanged(&self, header: Option<&Header>, local: u64) -> Option<StoreVersion> {
        let (seen, version) = self.seen.as_ref()?;
        (header == Some(seen) && version.local == local).then_some(*version)
    }

    /// Keeps `version`, read from the database after `header` was read,
    /// for the next look. Without a header there is nothing to compare
    /// with, and the next look reads the database again.
    pub(super) fn remember(&mut self, header: Option<Header>, version: StoreVersion) {
        self.seen = header.map(|header| (header, version));
    }
}
