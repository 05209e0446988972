//! The one thread that writes, committing the writes that wait together in
//! one transaction (group commit).
//!
//! Before, each write went to the blocking pool: under a load of creates
//! the pool grew to hundreds of threads queued on the writer connection's
//! lock, and the server spent more time in the kernel (thread wake-ups,
//! one commit's WAL write each) than in its own code: 107 µs of CPU a
//! create, 8,000 creates/s (bench/README.md, "Data path"). Now a write is
//! a message to this thread; each takes the writes waiting at that moment
//! (up to [`MAX_BATCH`]), runs each in a savepoint of one transaction, so a
//! failing write rolls back alone, commits once and only then answers them
//! all: none is answered before its data is committed, and if the commit
//! fails every write of it gets the error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{StoreError, shared_error, store_error};
use crate::store::StoreResult;
use crate::telemetry::spans::Caller;

/// The most writes one transaction commits.
const MAX_BATCH: usize = 64;

/// How a write is answered once its batch's fate is known: `None` when
/// the batch committed, else the commit's error.
type Answer = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;

struct Job {
    /// Runs the write on the connection and answers how to deliver its result.
    run: Box<dyn FnOnce(&mut Connection) -> Answer + Send>,
    /// Runs outside any transaction, on its own (a checkpoint).
    alone: bool,
}

/// Hands writes to the writer thread. Cloned with the store; the thread
/// ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: Sender<Job>,
}

impl Writer {
    /// Starts the thread that writes through `conn`, counting each commit
    /// in `writes` before answering the writes it held.
    pub fn start(conn: Arc<Mutex<Connection>>, writes: Arc<AtomicU64>) -> std::io::Result<Self> {
        let (jobs, queue) = channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(&conn, &queue, &writes))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in a transaction of its own or shared with the writes
    /// waiting beside it, inside the caller's span; answers once committed.
    pub async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.send(false, in_savepoint(work)).await
    }

    /// Runs `work` on its own, outside any transaction.
    pub async fn alone<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.send(true, work).await
    }

    async fn send<T, F>(&self, alone: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (job, answered) = job(alone, work);
        self.jobs.send(job).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// A write as the thread runs it, inside the caller's span, and where its
/// result will arrive.
fn job<T, F>(alone: bool, work: F) -> (Job, oneshot::Receiver<StoreResult<T>>)
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let (answer, answered) = oneshot::channel();
    let caller = Caller::current();
    let run = move |conn: &mut Connection| -> Answer {
        // A panicking write must not end the thread every write needs;
        // its savepoint rolls back as it unwinds.
        let result = catch_unwind(AssertUnwindSafe(|| caller.in_scope(|| work(conn))))
            .unwrap_or_else(|_| Err(panicked()));
        Box::new(move |commit_failed: Option<&rusqlite::Error>| {
            let result = match commit_failed {
                Some(err) => Err(shared_error(err)),
                None => result.map_err(store_error),
            };
            // The caller may have gone (its request timed out): the write
            // stands, nobody is left to tell.
            let _ = answer.send(result);
        })
    };
    let job = Job {
        run: Box::new(run),
        alone,
    };
    (job, answered)
}

/// `work` in a savepoint of the batch's transaction: undone alone if it fails.
fn in_savepoint<T, F>(work: F) -> impl FnOnce(&mut Connection) -> rusqlite::Result<T>
where
    F: FnOnce(&Connection) -> rusqlite::Result<T>,
{
    move |conn| {
        let savepoint = conn.savepoint()?;
        let answer = work(&savepoint)?;
        savepoint.commit()?;
        Ok(answer)
    }
}

fn panicked() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("the write panicked and was rolled back".into()),
    )
}

fn stopped() -> StoreError {
    StoreError::Internal("the database writer has stopped".into())
}

fn serve(conn: &Mutex<Connection>, queue: &Receiver<Job>, writes: &AtomicU64) {
    let mut held: Option<Job> = None;
    loop {
        let Some(first) = held.take().or_else(|| queue.recv().ok()) else {
            return;
        };
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        if first.alone {
            let answer = (first.run)(&mut conn);
            writes.fetch_add(1, Ordering::Release);
            answer(None);
            continue;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) if job.alone => {
                    held = Some(job);
                    break;
                }
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&mut conn, batch, writes);
    }
}

/// Runs a batch in one transaction and answers each write once it is
/// committed. If the transaction cannot begin (another process holds the
/// write lock past the busy timeout), each write runs in its own.
fn commit(conn: &mut Connection, batch: Vec<Job>, writes: &AtomicU64) {
    if conn.execute_batch("BEGIN IMMEDIATE").is_err() {
        for job in batch {
            let answer = (job.run)(conn);
            writes.fetch_add(1, Ordering::Release);
            answer(None);
        }
        return;
    }
    let answers: Vec<Answer> = batch.into_iter().map(|job| (job.run)(conn)).collect();
    let committed = conn.execute_batch("COMMIT");
    if committed.is_err() && !conn.is_autocommit() {
        // Nothing of the batch stands; the error says why to each write.
        let _ = conn.execute_batch("ROLLBACK");
    }
    // Counted before anyone is answered: a read after an answer sees a new
    // version (a failed commit counts too; it costs a cache miss at most).
    writes.fetch_add(1, Ordering::Release);
    let failure = committed.err();
    for answer in answers {
        answer(failure.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;

    fn database() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parents (id INTEGER PRIMARY KEY);
             CREATE TABLE children (id INTEGER PRIMARY KEY, parent INTEGER
                 REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        conn
    }

    fn insert(table: &'static str, id: i64) -> (Job, oneshot::Receiver<StoreResult<()>>) {
        job(
            false,
            in_savepoint(move |conn: &Connection| {
                let sql = format!("INSERT INTO {table} (id) VALUES (?1)");
                conn.execute(&sql, params![id]).map(drop)
            }),
        )
    }

    fn ids(conn: &Connection, table: &str) -> Vec<i64> {
        let mut statement = conn.prepare(&format!("SELECT id FROM {table}")).unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn a_failing_write_rolls_back_alone_and_the_rest_of_its_batch_commits() {
        let mut conn = database();
        let writes = AtomicU64::new(0);
        let (jobs, mut answers): (Vec<_>, Vec<_>) = [
            insert("parents", 1),
            insert("parents", 1),
            insert("parents", 2),
        ]
        .into_iter()
        .unzip();
        commit(&mut conn, jobs, &writes);
        assert!(answers[0].try_recv().unwrap().is_ok());
        assert!(matches!(
            answers[1].try_recv().unwrap(),
            Err(StoreError::Conflict(_))
        ));
        assert!(answers[2].try_recv().unwrap().is_ok());
        assert_eq!(ids(&conn, "parents"), [1, 2]);
        assert_eq!(writes.load(Ordering::Acquire), 1, "one commit");
    }

    #[test]
    fn a_failed_commit_fails_every_write_of_it_and_keeps_none() {
        let mut conn = database();
        let writes = AtomicU64::new(0);
        // A child of no parent passes its own statement (the key is checked
        // at commit), then fails the whole commit.
        let orphan = job(
            false,
            in_savepoint(|conn: &Connection| {
                conn.execute("INSERT INTO children (id, parent) VALUES (1, 99)", [])
                    .map(drop)
            }),
        );
        let (jobs, mut answers): (Vec<_>, Vec<_>) =
            [insert("parents", 1), orphan].into_iter().unzip();
        commit(&mut conn, jobs, &writes);
        for answer in &mut answers {
            assert!(matches!(
                answer.try_recv().unwrap(),
                Err(StoreError::Conflict(_))
            ));
        }
        assert!(ids(&conn, "parents").is_empty());
        assert!(conn.is_autocommit(), "rolled back");
    }

    #[tokio::test]
    async fn a_panicking_write_is_an_error_and_the_writer_goes_on() {
        let conn = Arc::new(Mutex::new(database()));
        let writer = Writer::start(Arc::clone(&conn), Arc::default()).unwrap();
        let panics: StoreResult<()> = writer
            .write(|conn| {
                conn.execute("INSERT INTO parents (id) VALUES (1)", [])?;
                panic!("a bug in a write");
            })
            .await;
        assert!(matches!(panics, Err(StoreError::Internal(_))), "{panics:?}");
        let next = writer
            .write(|conn| conn.execute("INSERT INTO parents (id) VALUES (2)", []))
            .await;
        assert_eq!(next.unwrap(), 1);
        assert_eq!(ids(&conn.lock().unwrap(), "parents"), [2]);
    }
}
