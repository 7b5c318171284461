//! The local store: one SQLite database per node (`<data_dir>/starling.db`)
//! holding every accepted feed entry, the payloads, decoded index tables for
//! the app's views, the social graph and the sealed secrets.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous = FULL`. In WAL mode
//! `FULL` makes SQLite fsync the write-ahead log at every commit, so once a
//! write transaction (a publish, an ingested batch) has committed, its entries
//! are on stable storage: they survive not only a `kill -9` of the process
//! but also a power loss or OS crash. `NORMAL` would fsync only at
//! checkpoints: it survives a killed process (the WAL is in the OS page
//! cache) but a power cut could silently drop the last acknowledged
//! transactions — and a feed entry that was acknowledged, replicated to
//! peers and then lost locally would make the next publish reuse its sequence
//! number, which the network sees as a fork of the user's own feed. The cost
//! is one fsync per commit; publishing is interactive (one entry per user
//! action) and ingest commits whole batches, so that cost is paid per batch,
//! not per entry.
//!
//! # Connections
//!
//! One writer connection behind a mutex serialises all writes; a separate
//! read-only connection (WAL lets it read a consistent snapshot while the
//! writer commits) serves the queries. Write helpers take a
//! `&rusqlite::Transaction` so callers compose them into one atomic unit
//! ([`Store::write`] opens it `IMMEDIATE` and commits it).
//!
//! # Deletion leaves no trace in the files
//!
//! `PRAGMA secure_delete = ON` zeroes freed cells and pages, the FTS5 index
//! runs with its `secure-delete` option, and after a transaction that
//! deleted content the WAL is checkpointed and truncated
//! ([`Store::checkpoint_truncate`]) so older page images holding the text
//! leave the `-wal` file too.

pub(crate) mod apply;
mod checkpoint;
pub mod cursor;
pub(crate) mod export;
pub(crate) mod graph;
pub(crate) mod ingest;
pub mod migrations;
pub(crate) mod publish;
pub(crate) mod queries;
pub(crate) mod replication;
pub(crate) mod secrets;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::Result;

pub use cursor::{Cursor, Page, PageRequest};

/// File name of the database inside a node's data dir.
pub const DATABASE_FILE: &str = "starling.db";

/// How long a connection waits for a lock held by another process (e.g. the
/// CLI run while an app holds the store open) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store of one node. `Send + Sync`: both connections sit behind
/// mutexes.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// When the WAL is copied into the database (see `checkpoint.rs`).
    checkpoints: checkpoint::Checkpoints,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, recovering from poisoning: a panic inside a write drops
/// its `Transaction`, which rolls back, so the connection is still sound.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to
    /// the current schema. Fails with `Error::SchemaTooNew` if a newer
    /// Starling wrote it.
    pub fn open(path: &Path) -> Result<Store> {
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode returns the resulting mode as a row; WAL is persistent
        // in the file, setting it again on every open is a no-op.
        let _mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", true)?;
        writer.pragma_update(None, "secure_delete", true)?;
        tune(&writer, WRITER_CACHE_KIB)?;
        // Checkpoints follow checkpoint.rs's policy instead of SQLite's
        // automatic one. When the WAL starts again after a checkpoint, a
        // file grown past 16 MiB (a bulk batch) is cut back to that.
        let checkpoints = checkpoint::Checkpoints::install(path, &mut writer)?;
        writer.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
        migrations::migrate(&mut writer)?;
        // A large WAL left behind (by a migration that rewrote tables, or a
        // process killed mid bulk sync) would make every later open scan
        // it to rebuild the WAL index: copy it into the database and cut it
        // now. Busy (another process reading) just leaves it for later.
        if std::fs::metadata(wal_path(path)).is_ok_and(|m| m.len() > LARGE_WAL_BYTES) {
            let _busy: i64 =
                writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        }

        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        reader.pragma_update(None, "query_only", true)?;
        tune(&reader, READER_CACHE_KIB)?;
        Ok(Store {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            checkpoints,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one `IMMEDIATE` write transaction and commits it if `f`
    /// succeeds; on any error nothing of it is written. When `write` returns
    /// `Ok`, the transaction is durable (see the module docs).
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let conn = lock(&self.writer);
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        self.checkpoints.after_commit(&conn);
        Ok(out)
    }

    /// Runs `f` on the reader connection inside one read transaction, so all
    /// its queries see the same snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = lock(&self.reader);
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        // Read-only: ending the transaction either way is fine; commit is
        // just the cheaper way to release the snapshot.
        tx.commit()?;
        Ok(out)
    }

    /// Copies the whole WAL into the database file and truncates the WAL to
    /// zero bytes, so page images of deleted content no longer exist in the
    /// `-wal` file. Called after transactions that deleted content.
    pub fn checkpoint_truncate(&self) -> Result<()> {
        // Hold the reader lock too: an open read snapshot would stop the
        // checkpoint from reaching the end of the WAL.
        let _turn = self.checkpoints.take_turn();
        let reader = lock(&self.reader);
        let writer = lock(&self.writer);
        let (busy, _log, _checkpointed): (i64, i64, i64) =
            writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        drop(reader);
        if busy != 0 {
            // Another process holds a snapshot; the next checkpoint after a
            // delete (or SQLite's automatic one) will finish the job.
            tracing::debug!("wal checkpoint after delete was blocked by a reader");
        }
        Ok(())
    }

    /// The home timeline's bare SQL (ids and text of one page, no
    /// hydration): the baseline the timeline benchmark compares against.
    #[doc(hidden)]
    pub fn raw_timeline_ids(
        &self,
        me: &crate::identity::id::AuthorId,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>> {
        self.read(|c| queries::raw_timeline_ids(c, me, limit))
    }

    /// Direct access to the writer connection, for benchmarks and tests that
    /// need raw SQL beside the store (e.g. a baseline measurement).
    #[doc(hidden)]
    pub fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        f(&mut conn)
    }
}

/// Page cache of the writer connection, in KiB (SQLite's default): the hot
/// pages of ingest's indexes, small enough for a phone's background memory
/// budget (docs/BENCHMARKS.md: receiver RSS during a bulk sync; bigger
/// caches bought little speed there, the writes are dominated by commits).
const WRITER_CACHE_KIB: i64 = 2 * 1024;
/// Page cache of the reader connection, in KiB (SQLite's default): a view
/// reads a few index ranges and the rows of one page.
const READER_CACHE_KIB: i64 = 2 * 1024;

/// WAL size past which opening a store copies the WAL into the database
/// and truncates it (the size where background checkpoints start).
const LARGE_WAL_BYTES: u64 = checkpoint::BACKGROUND_START_FRAMES as u64 * 4096;

/// The `-wal` file next to the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Per-connection settings. Ingest and the views cycle through a few dozen
/// distinct statements (rusqlite keeps 16 by default, then re-prepares).
/// The page cache (SQLite's default is 2 MiB) only takes memory as pages are
/// touched, and counts in the node's resident memory.
///
/// The query planner stability guarantee (QPSG) keeps each cached
/// statement's plan independent of the values bound to it. Without it, the
/// bundled SQLite (built with STAT4) marks a parameter compared with a
/// prefix of an index, such as `entries WHERE author = ?1`, as one that
/// may change the plan, and then parses and plans the statement again
/// every time a value is bound: about a tenth of a publish's CPU time
/// went into re-preparing its feed-tip query. Our plans never depend on
/// values (the store has no ANALYZE statistics to consult).
fn tune(conn: &Connection, cache_kib: i64) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Current time in ms since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Converts a u64 from the wire into SQLite's i64, refusing values that do
/// not fit instead of wrapping them negative.
pub(crate) fn to_sql_int(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        crate::error::Error::InvalidInput(format!("{v} does not fit the store's integer range"))
    })
}

/// Reads a stored non-negative integer back into u64.
pub(crate) fn from_sql_int(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod testutil;
