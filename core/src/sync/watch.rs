//! The external-write watcher: turns entries that another process wrote to
//! this node's database (the CLI's `starling post` while `starling serve`
//! runs) into `EntryAdded` events, so live sync sessions push them.
//!
//! Guarantees and cost: it polls `PRAGMA data_version` on its own read-only
//! connection — an in-memory check that costs no disk i/o — and queries
//! `entries` only when another connection committed. It polls **only while
//! at least one sync session is live** (otherwise it sleeps until one
//! starts), every 50 ms while another process wrote in the last minute,
//! every 100 ms for the next ten minutes and every 500 ms after that, so an
//! idle phone wakes at most twice a second, and never without peers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::Result;
use crate::events::NodeEvent;
use crate::store::replication;
use crate::sync::engine::Inner;

const FAST: Duration = Duration::from_millis(50);
const NORMAL: Duration = Duration::from_millis(100);
const IDLE: Duration = Duration::from_millis(500);
/// Rows read per query while catching up with a large external write.
const PAGE: u32 = 1000;

/// Keeps the watcher running; dropping it stops the watcher.
#[derive(Debug)]
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Unregisters the watcher from the node's event bus when the task ends.
struct Registered(Arc<Inner>);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.node.event_bus().watcher_stopped();
    }
}

pub(crate) fn spawn(inner: Arc<Inner>) -> Result<WatchHandle> {
    let path = inner.node.database_path();
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Register before reading the starting point, so a write of this
    // process that commits after it is noted as local.
    inner.node.event_bus().watcher_started();
    let registered = Registered(inner.clone());
    let start = (data_version(&conn)?, replication::max_entry_rowid(&conn)?);
    // A Mutex makes the connection shareable across awaits (it is only
    // ever used by this task).
    let conn = Mutex::new(conn);
    let task = tokio::spawn(async move {
        let _registered = registered;
        if let Err(e) = run(&inner, &conn, start).await {
            tracing::warn!(error = %e, "external write watcher stopped");
        }
    });
    Ok(WatchHandle { task })
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "data_version", |r| r.get(0))?)
}

async fn run(inner: &Inner, conn: &Mutex<Connection>, start: (i64, i64)) -> Result<()> {
    let (mut version, mut last_rowid) = start;
    let mut live = inner.live.subscribe();
    let mut last_external = Instant::now();
    let me = inner.node.whoami().ok();
    loop {
        // No session: nothing to push to, so do not poll at all.
        if live.wait_for(|n| *n > 0).await.is_err() {
            return Ok(());
        }
        let idle = last_external.elapsed();
        let interval = if idle < Duration::from_secs(60) {
            FAST
        } else if idle < Duration::from_secs(600) {
            NORMAL
        } else {
            IDLE
        };
        tokio::time::sleep(interval).await;
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        let v = data_version(&conn)?;
        if v == version {
            continue;
        }
        version = v;
        // Envelopes queued by another process (`starling dm send`).
        if let Err(e) = crate::mailbox::flush_outbox(&inner.node) {
            tracing::debug!(error = %e, "outbox flush failed");
        }
        loop {
            let rows = replication::entries_after_rowid(&conn, last_rowid, PAGE)?;
            let n = rows.len();
            for (rowid, id, author, seq) in rows {
                last_rowid = rowid;
                if inner.node.event_bus().take_local(&id) {
                    continue;
                }
                last_external = Instant::now();
                // Another process's follow or block: sessions re-check their
                // scope (this process's writes bump the epoch themselves).
                if matches!(
                    replication::entry_tag(&conn, &author, seq)?,
                    Some(0x03..=0x06)
                ) {
                    inner.node.note_graph_change();
                }
                inner.node.emit(NodeEvent::EntryAdded {
                    id,
                    author,
                    seq,
                    own: Some(author) == me,
                });
            }
            if n < PAGE as usize {
                break;
            }
        }
    }
}
