//! When the write-ahead log is copied into the database file.
//!
//! Every commit appends its pages to the WAL and fsyncs it; a checkpoint
//! copies the newest version of each page into the database file. Only
//! when a checkpoint has copied *every* frame can the next transaction
//! start the WAL again from its beginning, overwriting the old frames in
//! place. That restart matters: appending to a file that keeps growing
//! costs more per fsync (block allocation and metadata) than overwriting
//! blocks the file already has, and a WAL that never restarts grows until
//! the safety limit below.
//!
//! Two workloads pull in different directions:
//! - a bulk sync commits batches of thousands of entries back to back: a
//!   checkpoint on the writer's thread would stall it for as long as the
//!   copy takes, so the bulk of each checkpoint runs on a background thread
//!   with its own connection;
//! - publishing and messaging commit a few pages at a time, often faster
//!   than a background pass ends, so a background pass alone never catches
//!   up with the writer: the WAL never restarts and another pass is needed
//!   after every commit. Once a background pass has copied all but a few
//!   frames, the writer copies that small remainder itself, right after a
//!   commit, so the next transaction restarts the WAL.
//!
//! The frame count comes from SQLite's WAL hook, which replaces SQLite's
//! own automatic checkpoint; [`INLINE_LIMIT_FRAMES`] is the safety net that
//! bounds the WAL if the background thread falls far behind or cannot start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

use crate::error::Result;

/// WAL frames (4 KiB pages) past which a background pass starts: 16 MiB.
pub(super) const BACKGROUND_START_FRAMES: i64 = 4_000;

/// Frames a background pass may have left behind for the writer to copy
/// itself (2 MiB): a few hundred small commits, or one medium batch.
const WRITER_REMAINDER_FRAMES: i64 = 512;

/// Frames past which the writer checkpoints itself after every commit while
/// no background pass runs (64 MiB): the bound on the WAL's size if the
/// background thread falls far behind or cannot start.
const INLINE_LIMIT_FRAMES: i64 = 16_000;

/// The checkpoint policy of one store: what the WAL holds, what the
/// background thread has copied, and the thread itself.
pub(super) struct Checkpoints {
    db: PathBuf,
    /// Frames in the WAL after the latest commit (from the WAL hook).
    frames: Arc<AtomicI64>,
    /// Frames the latest background pass left copied, in the current WAL
    /// generation (0: none since the WAL restarted).
    copied: Arc<AtomicI64>,
    /// Wakes the background thread; started on first need.
    wake: Mutex<Option<SyncSender<()>>>,
    /// Held by whoever checkpoints, so the truncating checkpoint after a
    /// delete ([`super::Store::checkpoint_truncate`]) never finds the
    /// checkpoint lock taken, and the writer never waits for a pass.
    turn: Arc<Mutex<()>>,
}

/// What the writer should do after a commit.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing: the WAL is small.
    Nothing,
    /// Wake the background thread for a pass.
    Background,
    /// Copy the rest on the writer's connection now.
    Inline,
}

/// The policy, on the figures it depends on (see the module docs).
fn next_step(frames: i64, copied: i64) -> Step {
    if frames >= INLINE_LIMIT_FRAMES {
        Step::Inline
    } else if frames < BACKGROUND_START_FRAMES {
        Step::Nothing
    } else if copied > 0 && (0..=WRITER_REMAINDER_FRAMES).contains(&(frames - copied)) {
        Step::Inline
    } else {
        Step::Background
    }
}

impl Checkpoints {
    /// Takes over checkpointing of `writer`'s database at `db`: SQLite's
    /// automatic checkpoint is replaced by a WAL hook that records the
    /// frame count after each commit.
    pub(super) fn install(db: &Path, writer: &mut Connection) -> Result<Checkpoints> {
        let frames = Arc::new(AtomicI64::new(0));
        let copied = Arc::new(AtomicI64::new(0));
        let (hook_frames, hook_copied) = (frames.clone(), copied.clone());
        writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            let pages = i64::from(pages);
            // Fewer frames than after the previous commit: the WAL started
            // again, so what a pass copied belongs to the previous one.
            if pages < hook_frames.swap(pages, Ordering::Relaxed) {
                hook_copied.store(0, Ordering::Relaxed);
            }
            // Never an error: the commit has happened, and an error here
            // would make it look failed.
            Ok(())
        }))?;
        Ok(Checkpoints {
            db: db.to_owned(),
            frames,
            copied,
            wake: Mutex::new(None),
            turn: Arc::new(Mutex::new(())),
        })
    }

    /// Called on the writer's connection right after each commit.
    pub(super) fn after_commit(&self, writer: &Connection) {
        let frames = self.frames.load(Ordering::Relaxed);
        match next_step(frames, self.copied.load(Ordering::Relaxed)) {
            Step::Nothing => {}
            Step::Background => self.wake_background(),
            Step::Inline => {
                // Never wait for the turn here: the writer's lock is held,
                // and the truncating checkpoint after a delete takes the
                // turn before the writer's lock. A pass that is running
                // copies these frames anyway; the next commit tries again.
                let turn = self.turn.try_lock().ok();
                if let Some(_turn) = turn
                    && let Err(e) = passive_checkpoint(writer)
                {
                    tracing::debug!(error = %e, "checkpoint after a commit failed");
                }
            }
        }
    }

    /// Waits for any running checkpoint to end and holds off others until
    /// the guard is dropped. Take it before the writer's lock, never while
    /// holding it.
    pub(super) fn take_turn(&self) -> MutexGuard<'_, ()> {
        self.turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_background(&self) {
        let mut slot = self
            .wake
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = spawn_background(&self.db, self.turn.clone(), self.copied.clone());
        }
        if let Some(wake) = slot.as_ref() {
            // Full: a pass is already pending, which covers this one.
            let _ = wake.try_send(());
        }
    }
}

/// A `PASSIVE` checkpoint: copies what it can without waiting for readers
/// or the writer. Returns the frames in the WAL and the frames copied.
fn passive_checkpoint(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?)
}

/// Starts the background thread with its own connection; it ends when the
/// store (holding the sender) is dropped. `None` if it cannot start, in
/// which case the writer's own checkpoint at [`INLINE_LIMIT_FRAMES`] still
/// bounds the WAL.
fn spawn_background(
    db: &Path,
    turn: Arc<Mutex<()>>,
    copied: Arc<AtomicI64>,
) -> Option<SyncSender<()>> {
    let conn = match Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "background checkpointer not started");
            return None;
        }
    };
    let (wake, wakes) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("starling-checkpoint".into())
        .spawn(move || {
            while wakes.recv().is_ok() {
                let _turn = turn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match passive_checkpoint(&conn) {
                    Ok((_, done)) => copied.store(done.max(0), Ordering::Relaxed),
                    Err(e) => tracing::debug!(error = %e, "background checkpoint failed"),
                }
            }
        });
    match spawned {
        Ok(_) => Some(wake),
        Err(e) => {
            tracing::warn!(error = %e, "background checkpointer not started");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Small commits back to back, faster than a background pass: the
    /// WAL must still start again instead of growing towards the limit
    /// (before the writer copied the remainder itself it reached 48 MiB
    /// within 3,000 published posts).
    #[test]
    fn back_to_back_small_commits_keep_the_wal_restarting() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("starling.db");
        let store = Store::open(&db).unwrap();
        store
            .write(|tx| Ok(tx.execute_batch("CREATE TABLE scratch (body BLOB)")?))
            .unwrap();
        let wal = super::super::wal_path(&db);
        // About eight pages per commit, like a published post.
        let body = vec![7u8; 7 * 4096];
        let mut restarts = 0;
        let mut last = 0;
        for _ in 0..4 * INLINE_LIMIT_FRAMES / 8 {
            store
                .write(|tx| Ok(tx.execute("INSERT INTO scratch (body) VALUES (?1)", [&body])?))
                .unwrap();
            let frames = store.checkpoints.frames.load(Ordering::Relaxed);
            if frames < last {
                restarts += 1;
            }
            last = frames;
            // The background pass's 16 MiB and what the writer adds while
            // passes catch up (generous for slow disks): far from the
            // 64 MiB where the writer would checkpoint on its own.
            let limit = 2 * BACKGROUND_START_FRAMES as u64 * 4120;
            assert!(
                std::fs::metadata(&wal).unwrap().len() <= limit,
                "the WAL grew past {limit} bytes"
            );
        }
        assert!(restarts >= 8, "the WAL started again only {restarts} times");
    }

    #[test]
    fn small_wals_are_left_alone() {
        assert_eq!(next_step(0, 0), Step::Nothing);
        assert_eq!(next_step(BACKGROUND_START_FRAMES - 1, 0), Step::Nothing);
    }

    #[test]
    fn a_large_wal_goes_to_the_background_first() {
        assert_eq!(next_step(BACKGROUND_START_FRAMES, 0), Step::Background);
        // A pass copied too little of what is there now (a bulk batch
        // landed meanwhile): another pass, not a stall of the writer.
        assert_eq!(
            next_step(BACKGROUND_START_FRAMES + 2_000, BACKGROUND_START_FRAMES),
            Step::Background
        );
    }

    #[test]
    fn the_writer_copies_a_small_remainder_itself() {
        let copied = BACKGROUND_START_FRAMES + 1_000;
        assert_eq!(next_step(copied + 24, copied), Step::Inline);
        assert_eq!(
            next_step(copied + WRITER_REMAINDER_FRAMES, copied),
            Step::Inline
        );
        // A count from before the WAL restarted is not trusted.
        assert_eq!(next_step(copied - 100, copied), Step::Background);
    }

    #[test]
    fn past_the_limit_the_writer_checkpoints() {
        assert_eq!(next_step(INLINE_LIMIT_FRAMES, 0), Step::Inline);
    }
}
