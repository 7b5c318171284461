//! [`SyncEngine`]: runs `/starling/sync/1` sessions for the network layer,
//! keeps per-peer status and back-off, and owns the hosted-feed list.
//!
//! Guarantees: a misbehaving peer only ever ends its own session (others
//! keep running) and is refused for a growing back-off period afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::error::Result;
use crate::identity::id::AuthorId;
use crate::node::Node;
use crate::store::{now_ms, replication};
use crate::sync::error::{Penalty, SyncError};
use crate::sync::frame::{DEFAULT_MAX_FRAME, MIN_MAX_FRAME};
use crate::sync::scope;
use crate::sync::session::{self, Ctx, PeerStats};
use crate::sync::watch::{self as ext_watch, WatchHandle};

/// Per-session limits against floods. Exceeding one ends the session with
/// [`SyncError::Flood`].
///
/// The entry limits apply to what this node did not request: live pushes,
/// fork evidence, and anything beyond the peer's Plans. Entries a Plan
/// announced, up to what the peer's clocks say it holds of the feeds this
/// node asked for, are requested catch-up and exempt (the byte limits and
/// `max_soft_faults` still apply to them).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Sustained unrequested entries per second a peer may send.
    pub entries_per_sec: u64,
    /// Unrequested entries a peer may send in a burst.
    pub entries_burst: u64,
    /// Sustained bytes per second a peer may send.
    pub bytes_per_sec: u64,
    /// Bytes a peer may send in a burst.
    pub bytes_burst: u64,
    /// Clock messages a peer may send in one session.
    pub max_clock_messages: u32,
    /// Feeds a peer may announce in one session, all clocks together.
    pub max_clock_items: u64,
    /// Entries a peer may send that were already held or did not fit,
    /// before the session is ended as a protocol violation.
    pub max_soft_faults: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            entries_per_sec: 5_000,
            entries_burst: 50_000,
            bytes_per_sec: 8 * 1024 * 1024,
            bytes_burst: 64 * 1024 * 1024,
            max_clock_messages: 256,
            max_clock_items: 200_000,
            max_soft_faults: 20_000,
        }
    }
}

/// Settings of the sync engine. Start from `SyncConfig::default()`.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Feeds within this many follow hops of the user are replicated (2).
    pub hops: u32,
    /// Entries per Entries message at most (1024; a frame also bounds it by
    /// bytes). Large batches make catch-up cheap: one transaction, one
    /// fsync and one batch verification each.
    pub batch_size: usize,
    /// Largest frame this node accepts, in bytes (256 KiB; at least 32 KiB).
    pub max_frame: usize,
    /// How many of the newest entries of a feed the peer lacks are sent
    /// before any older history (50).
    pub newest_first: u64,
    /// How long the peer may take to send its Hello and Summary (10 s).
    pub handshake_timeout: Duration,
    /// Flood limits.
    pub limits: Limits,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            hops: 2,
            batch_size: 1024,
            max_frame: DEFAULT_MAX_FRAME,
            newest_first: 50,
            handshake_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// What one finished session did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionSummary {
    /// The peer's user, proven by its Hello.
    pub remote_author: Option<AuthorId>,
    /// Entries this node sent.
    pub entries_sent: u64,
    /// New entries this node stored from the peer.
    pub entries_received: u64,
    /// Entries the peer sent that this node already held.
    pub duplicates_received: u64,
    /// Frame bytes written, headers included.
    pub bytes_sent: u64,
    /// Frame bytes read, headers included.
    pub bytes_received: u64,
}

impl From<&PeerStats> for SessionSummary {
    fn from(s: &PeerStats) -> SessionSummary {
        SessionSummary {
            remote_author: s.author,
            entries_sent: s.entries_sent,
            entries_received: s.entries_received,
            duplicates_received: s.duplicates_received,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
        }
    }
}

/// Sync state with one peer, for the app's "connected peers" screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSyncStatus {
    /// The transport peer id.
    pub peer: String,
    /// Whether a session with it is running.
    pub connected: bool,
    /// Its user, once its Hello was verified.
    pub author: Option<AuthorId>,
    /// Feeds this node asked the peer for that are not waiting for entries
    /// the peer announced.
    pub feeds_in_sync: u64,
    /// Entries the peer announced and has not sent yet.
    pub entries_behind: u64,
    /// New entries stored from the peer (current or last session).
    pub entries_received: u64,
    /// Entries sent to the peer (current or last session).
    pub entries_sent: u64,
    /// The peer sent everything this node asked for.
    pub caught_up: bool,
}

struct SessionSlot {
    stats: Arc<Mutex<PeerStats>>,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct PeerRecord {
    sessions: HashMap<u64, SessionSlot>,
    last: Option<PeerStats>,
    failures: u32,
    backoff_until: Option<Instant>,
}

pub(crate) struct Inner {
    pub(crate) node: Arc<Node>,
    config: SyncConfig,
    peers: Mutex<HashMap<String, PeerRecord>>,
    /// Number of live sessions (the external-write watcher polls only
    /// while it is above zero).
    pub(crate) live: watch::Sender<usize>,
    scope_epoch: watch::Sender<u64>,
    next_session: AtomicU64,
}

/// The replication engine. Cheap to clone (an `Arc` inside); create one per
/// [`Node`] and hand every peer stream to [`SyncEngine::run_session`].
#[derive(Clone)]
pub struct SyncEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Back-off after the n-th consecutive penalised session: 2^n seconds, at
/// most 10 minutes; a ban is one hour.
fn backoff_for(penalty: Penalty, failures: u32) -> Option<Duration> {
    match penalty {
        Penalty::None => None,
        Penalty::Disconnect => {
            Some(Duration::from_secs(1u64 << failures.min(10)).min(Duration::from_secs(600)))
        }
        Penalty::Ban => Some(Duration::from_secs(3600)),
    }
}

impl SyncEngine {
    /// Creates the engine for `node`. A `max_frame` below 32 KiB is raised
    /// to 32 KiB (one maximal entry must fit).
    pub fn new(node: Arc<Node>, mut config: SyncConfig) -> SyncEngine {
        config.max_frame = config.max_frame.clamp(MIN_MAX_FRAME, u32::MAX as usize);
        config.batch_size = config.batch_size.max(1);
        SyncEngine {
            inner: Arc::new(Inner {
                node,
                config,
                peers: Mutex::new(HashMap::new()),
                live: watch::channel(0).0,
                scope_epoch: watch::channel(0).0,
                next_session: AtomicU64::new(1),
            }),
        }
    }

    /// The node this engine replicates.
    pub fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    /// The engine's settings.
    pub fn config(&self) -> &SyncConfig {
        &self.inner.config
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<String, PeerRecord>> {
        self.inner.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one sync session with `remote_peer` over `stream` until the
    /// stream closes, [`SyncEngine::disconnect`] is called, or an error.
    ///
    /// Both sides send their Hello at once, so `initiator` only orders the
    /// session key material: pass `true` on the side that opened the
    /// stream and `false` on the other. `local_peer` / `remote_peer` are the
    /// transport's authenticated peer ids (the Hello signature binds them).
    /// The session first catches up both ways (newest entries first), then
    /// stays open and pushes new entries live. Dropping the future ends the
    /// session too. Needs the identity unlocked (it signs the Hello).
    ///
    /// Errors: [`SyncError::BackedOff`] if the peer misbehaved recently;
    /// otherwise see [`SyncError`] and [`SyncError::penalty`] — the engine
    /// already applied the penalty's back-off.
    pub async fn run_session<S>(
        &self,
        local_peer: String,
        remote_peer: String,
        stream: S,
        initiator: bool,
    ) -> Result<SessionSummary, SyncError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(retry_in) = self.backoff_remaining(&remote_peer) {
            return Err(SyncError::BackedOff { retry_in });
        }
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(Mutex::new(PeerStats::default()));
        let (stop_tx, stop_rx) = watch::channel(false);
        self.peers()
            .entry(remote_peer.clone())
            .or_default()
            .sessions
            .insert(
                id,
                SessionSlot {
                    stats: stats.clone(),
                    stop: stop_tx,
                },
            );
        let guard = SessionGuard {
            engine: self.clone(),
            peer: remote_peer.clone(),
            id,
        };
        self.inner.live.send_modify(|n| *n += 1);
        let ctx = Arc::new(Ctx {
            node: self.inner.node.clone(),
            config: self.inner.config.clone(),
            local_peer,
            remote_peer,
            initiator,
            stats: stats.clone(),
            stop: stop_rx,
            scope_epoch: self.inner.scope_epoch.subscribe(),
            session_id: id,
        });
        // Queued outgoing envelopes (e.g. from `starling dm send` while no
        // session ran) and expired ones: before the inventory is built.
        if let Err(e) = crate::mailbox::maintain_carrier(&self.inner.node) {
            tracing::debug!(error = %e, "mailbox maintenance failed");
        }
        let result = session::run(ctx, stream).await;
        let summary = SessionSummary::from(&*stats.lock().unwrap_or_else(|p| p.into_inner()));
        guard.finish(result.as_ref().err().map(SyncError::penalty));
        match &result {
            Err(e) => tracing::debug!(peer = %guard.peer, error = %e, "sync session failed"),
            Ok(()) => tracing::debug!(peer = %guard.peer, "sync session ended"),
        }
        result.map(|()| summary)
    }

    /// Ends every running session with `peer` (each returns `Ok`).
    pub fn disconnect(&self, peer: &str) {
        if let Some(rec) = self.peers().get(peer) {
            for slot in rec.sessions.values() {
                let _ = slot.stop.send(true);
            }
        }
    }

    /// How long `peer` is still refused after misbehaving, if it is.
    pub fn backoff_remaining(&self, peer: &str) -> Option<Duration> {
        let until = self.peers().get(peer)?.backoff_until?;
        until.checked_duration_since(Instant::now())
    }

    /// Forgets `peer`'s back-off (e.g. the user retries by hand).
    pub fn clear_backoff(&self, peer: &str) {
        if let Some(rec) = self.peers().get_mut(peer) {
            rec.backoff_until = None;
            rec.failures = 0;
        }
    }

    /// Number of sessions running now.
    pub fn live_sessions(&self) -> usize {
        *self.inner.live.borrow()
    }

    /// Keeps `author`'s feed on this node although it is outside the
    /// user's follow scope: the relay ("pub") role for people this node
    /// invited. Persisted; running sessions request it right away.
    pub fn host_feed(&self, author: AuthorId) -> Result<()> {
        self.inner
            .node
            .store()
            .write(|tx| replication::host_feed(tx, &author, now_ms()))?;
        self.inner.scope_epoch.send_modify(|e| *e += 1);
        Ok(())
    }

    /// Stops hosting `author` (stored entries stay). Returns whether it was
    /// hosted.
    pub fn unhost_feed(&self, author: AuthorId) -> Result<bool> {
        self.inner
            .node
            .store()
            .write(|tx| replication::unhost_feed(tx, &author))
    }

    /// The feeds this node hosts for others.
    pub fn hosted_feeds(&self) -> Result<Vec<AuthorId>> {
        self.inner.node.store().read(replication::hosted_feeds)
    }

    /// The feeds this node replicates now: within `hops` of the user, plus
    /// hosted feeds, without blocked ones.
    pub fn scope(&self) -> Result<Vec<AuthorId>> {
        scope::compute(&self.inner.node, self.inner.config.hops)
    }

    /// Sync state per known peer, sorted by peer id.
    pub fn status(&self) -> Vec<PeerSyncStatus> {
        let peers = self.peers();
        let mut out: Vec<PeerSyncStatus> = peers
            .iter()
            .map(|(peer, rec)| {
                let live = rec
                    .sessions
                    .values()
                    .next()
                    .map(|s| s.stats.lock().unwrap_or_else(|p| p.into_inner()).clone());
                let connected = live.is_some();
                let s = live.or_else(|| rec.last.clone()).unwrap_or_default();
                let behind = s.remaining();
                let pending_feeds = if behind > 0 { s.planned_feeds } else { 0 };
                PeerSyncStatus {
                    peer: peer.clone(),
                    connected,
                    author: s.author,
                    feeds_in_sync: s.wants.saturating_sub(pending_feeds),
                    entries_behind: behind,
                    entries_received: s.entries_received,
                    entries_sent: s.entries_sent,
                    caught_up: s.caught_up,
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// Starts the external-write watcher (call from within a Tokio
    /// runtime): entries another process writes to this node's data dir
    /// (the CLI's `starling post` while `starling serve` runs) become
    /// `EntryAdded` events within about 100 ms, so live sessions push them.
    /// It polls only while a session runs; see `sync::watch`. Envelopes
    /// another process queued (`starling dm send`) are handed to the carrier
    /// and pushed the same way. Also publishes this node's prekey bundle
    /// when none is current. Stops when the handle is dropped.
    pub fn watch_external_writes(&self) -> Result<WatchHandle> {
        // This is the long-running node's start: publish a prekey bundle if
        // none is current, so others can start conversations with us.
        if let Err(e) = crate::mailbox::refresh_prekeys(&self.inner.node) {
            tracing::debug!(error = %e, "prekey refresh failed");
        }
        ext_watch::spawn(self.inner.clone())
    }
}

/// Deregisters a session even when its future is dropped mid-way.
struct SessionGuard {
    engine: SyncEngine,
    peer: String,
    id: u64,
}

impl SessionGuard {
    fn finish(&self, penalty: Option<Penalty>) {
        let mut peers = self.engine.peers();
        let rec = peers.entry(self.peer.clone()).or_default();
        match penalty {
            Some(p @ (Penalty::Disconnect | Penalty::Ban)) => {
                rec.failures = rec.failures.saturating_add(1);
                rec.backoff_until = backoff_for(p, rec.failures).map(|d| Instant::now() + d);
            }
            Some(Penalty::None) => {}
            // A clean session forgives earlier failures.
            None => rec.failures = 0,
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        {
            let mut peers = self.engine.peers();
            if let Some(rec) = peers.get_mut(&self.peer)
                && let Some(slot) = rec.sessions.remove(&self.id)
            {
                rec.last = Some(slot.stats.lock().unwrap_or_else(|p| p.into_inner()).clone());
            }
        }
        self.engine
            .inner
            .live
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}
