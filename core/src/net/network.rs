//! [`Network`]: the async handle an app holds to run its node on the
//! network. It owns the swarm task, the sync sessions, the blob and invite
//! protocol handlers and (optionally) the control socket.
//!
//! Guarantees:
//! * one sync session per connected peer: the side whose PeerId (as bytes)
//!   sorts lower opens `/starling/sync/1`; a second inbound session from a
//!   peer that already has one is refused;
//! * a session that ends with a [`engine::Penalty`] costs the peer a
//!   strike: it is disconnected and not accepted or redialled for
//!   `2^strikes` seconds (at most an hour); three strikes, or a
//!   `Penalty::Ban`, ban it for a day (kept in the store across restarts);
//! * a relay whose invite was accepted is remembered (at most 8) and asked
//!   for a reservation again at every start and after every loss, with
//!   back-off capped at a minute, until the network stops or the relay is
//!   forgotten ([`Network::forget_relay`]);
//! * [`Network::stop`] is graceful: sessions see their input end and get
//!   [`crate::net::NetConfig::shutdown_grace`] to finish their writes, then
//!   every connection is closed and the swarm task ends.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite, Future, StreamExt};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, kad};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::Node;
use crate::error::{Error, Result};
use crate::feed::BlobRef;
use crate::identity::id::{AuthorId, BlobId};
use crate::net::blobs::{self, BLOB_PROTOCOL, BlobStore};
use crate::net::config::NetConfig;
use crate::net::engine::{self, PeerSyncStatus, Penalty, SyncConfig, SyncEngine, WatchHandle};
use crate::net::invite::{
    self, INVITE_PROTOCOL, InviteAnswer, InviteCode, RelayReservation, ReservationError,
};
use crate::net::records::{self, ReachRecord};
use crate::net::swarm::{self, Command};
use crate::net::{control, persist};
use crate::store::now_ms;

/// Stream protocol of sync sessions.
pub const SYNC_PROTOCOL: &str = "/starling/sync/1";
/// Strikes after which a peer is banned.
const STRIKES_TO_BAN: u32 = 3;
/// How long a ban lasts.
const BAN_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Longest backoff after a penalty.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often known-but-disconnected peers are considered for a redial.
const REDIAL_TICK: Duration = Duration::from_secs(2);
/// Longest pause between redials of one peer.
const MAX_REDIAL_DELAY: Duration = Duration::from_secs(60);
/// How long `start` waits for the listeners to come up.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// How long `dial` waits for the connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after the first failed relay reservation (doubling after each).
const RESERVATION_FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest pause between relay reservation attempts: a relay that is down
/// for hours costs one dial a minute.
const RESERVATION_MAX_RETRY: Duration = Duration::from_secs(60);
/// A reservation held at least this long counts as healthy: after losing it
/// the back-off starts again from [`RESERVATION_FIRST_RETRY`]. One lost
/// sooner keeps the grown pause, so a relay that grants and drops at once
/// is not asked in a tight loop.
const RESERVATION_STABLE: Duration = Duration::from_secs(60);

/// An `Error` for network failures (reported as I/O errors).
pub(crate) fn net_error(msg: String) -> Error {
    Error::Io(std::io::Error::other(msg))
}

/// A connected peer as [`Network::peers`] reports it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Its network id (`12D3Koo…`).
    pub peer: PeerId,
    /// Addresses of the open connections.
    pub addrs: Vec<Multiaddr>,
    /// Connected since (ms since the Unix epoch).
    pub connected_since_ms: u64,
    /// Whether a sync session with it runs now.
    pub syncing: bool,
    /// Whether it offers relay service.
    pub relay: bool,
    /// Whether every open connection to it goes through a relay (a
    /// `/p2p-circuit` connection): true while only a relayed connection
    /// exists, false once a direct one does (for example after DCUtR
    /// punched a hole through both NATs). Relayed connections are limited
    /// by the relay in time and bytes, and the relay sees when the two
    /// peers talk (not what they say: the connection is end-to-end
    /// encrypted).
    pub relayed: bool,
}

/// What AutoNAT has learned about this node's reachability: whether peers
/// that were asked to dial it back could (see [`Network::reachability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reachability {
    /// Not probed yet, or no peer could be asked (AutoNAT asks only peers
    /// it sees at a public IP address, and only after about 15 s).
    #[default]
    Unknown,
    /// A peer dialed this node back at an address it listens on, now an
    /// external address of this node ([`Network::external_addrs`]).
    Public,
    /// Peers could not dial this node back: it is behind a NAT or a
    /// firewall and is reached through relays (and DCUtR hole punching).
    Private,
}

impl Reachability {
    /// `"unknown"`, `"public"` or `"private"` (for JSON and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// One open connection to a peer.
pub(crate) struct ConnState {
    /// The remote's address; for a relayed connection the circuit address.
    pub addr: Multiaddr,
    /// Whether it goes through a relay.
    pub relayed: bool,
}

/// Per-connected-peer bookkeeping.
pub(crate) struct PeerState {
    pub conns: HashMap<ConnectionId, ConnState>,
    pub since_ms: u64,
    pub relay: bool,
}

impl PeerState {
    /// Whether every open connection goes through a relay.
    pub(crate) fn relayed(&self) -> bool {
        !self.conns.is_empty() && self.conns.values().all(|c| c.relayed)
    }
}

/// Redial schedule of one known peer.
pub(crate) struct Redial {
    attempts: u32,
    next_at: Instant,
}

/// Mutable state shared by the swarm task and the handle.
#[derive(Default)]
pub(crate) struct State {
    pub connected: HashMap<PeerId, PeerState>,
    pub listen: Vec<Multiaddr>,
    pub sessions: HashSet<PeerId>,
    pub backoff: HashMap<PeerId, Instant>,
    pub banned: HashMap<PeerId, u64>,
    pub redial: HashMap<PeerId, Redial>,
    /// What AutoNAT concluded.
    pub reachability: Reachability,
    /// External addresses confirmed (by AutoNAT, or taken by a relay).
    pub external: Vec<Multiaddr>,
    /// Relays with a running reservation keeper.
    pub relays: HashMap<PeerId, RelayKeeper>,
}

/// The handle of one relay's reservation keeper ([`keep_reservation`]).
pub(crate) struct RelayKeeper {
    /// What it reports.
    status: watch::Receiver<RelayStatus>,
    /// Cuts its back-off pause short (a new invite from the relay).
    wake: Arc<tokio::sync::Notify>,
}

/// What a relay's reservation keeper reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayStatus {
    /// The circuit address while the relay holds a reservation for us.
    pub listening: Option<Multiaddr>,
    /// Reservations asked for since the last one granted.
    pub attempts: u32,
    /// Why the last attempt failed, or why the reservation was lost.
    pub reason: String,
}

/// A relay this node keeps a reservation at, as [`Network::relays`]
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// The relay's network id.
    pub peer: PeerId,
    /// Where this node reaches it.
    pub addrs: Vec<Multiaddr>,
    /// The circuit address peers reach this node at through it, while the
    /// relay holds a reservation; `None` while the node is asking for one.
    pub listening: Option<Multiaddr>,
}

/// Shared by every clone of [`Network`] and by its tasks.
pub(crate) struct Inner {
    pub node: Arc<Node>,
    pub engine: SyncEngine,
    pub config: NetConfig,
    pub peer_id: PeerId,
    pub commands: mpsc::UnboundedSender<Command>,
    pub control: libp2p_stream::Control,
    pub blobs: BlobStore,
    state: Mutex<State>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    sessions: Mutex<HashMap<PeerId, JoinHandle<()>>>,
    /// Bytes read and written by all sync sessions (for the benchmarks).
    wire: Arc<WireCounters>,
    /// Keeps the engine's external-write watcher running.
    watcher: Mutex<Option<WatchHandle>>,
}

/// Bytes carried by sync sessions, as seen above the stream multiplexer.
#[derive(Default)]
pub(crate) struct WireCounters {
    read: AtomicU64,
    written: AtomicU64,
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether connections from `peer` are refused right now.
    pub(crate) fn refuses(&self, peer: &PeerId) -> bool {
        let now = Instant::now();
        let mut st = self.state();
        if st.backoff.get(peer).is_some_and(|until| *until > now) {
            return true;
        }
        let banned_until = match st.banned.get(peer) {
            Some(b) => *b,
            None => {
                let b = persist::peer_penalty(&self.node, peer)
                    .ok()
                    .flatten()
                    .map_or(0, |(_, b)| b);
                st.banned.insert(*peer, b);
                b
            }
        };
        banned_until > now_ms()
    }

    /// A peer connected: start the sync session if we are the initiator.
    pub(crate) fn on_connected(self: &Arc<Self>, peer: PeerId) {
        if !self.config.sync || self.stopping() {
            return;
        }
        if self.peer_id.to_bytes() < peer.to_bytes() {
            let inner = self.clone();
            let handle = tokio::spawn(async move { inner.initiate(peer).await });
            self.track_session(peer, handle);
        }
    }

    /// One of several connections to `peer` closed: if we initiate its
    /// sessions and none runs any more, start one on the connections left.
    /// (A session on a relayed connection ends when the relay drops the
    /// circuit or when a direct connection replaces it.)
    pub(crate) fn ensure_session(self: &Arc<Self>, peer: PeerId) {
        if !self.config.sync
            || self.stopping()
            || self.peer_id.to_bytes() >= peer.to_bytes()
            || self.refuses(&peer)
        {
            return;
        }
        let running = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .is_some_and(|h| !h.is_finished());
        if !running {
            self.on_connected(peer);
        }
    }

    fn track_session(&self, peer: PeerId, handle: JoinHandle<()>) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|_, h| !h.is_finished());
        if let Some(old) = s.insert(peer, handle) {
            // Only reachable if the old task is finishing; let it.
            drop(old);
        }
    }

    /// Initiator side: open the stream and run sessions while connected,
    /// retrying ordinary failures a few times.
    async fn initiate(self: Arc<Self>, peer: PeerId) {
        let protocol = StreamProtocol::new(SYNC_PROTOCOL);
        for attempt in 0..5u32 {
            if self.stopping() || !self.state().connected.contains_key(&peer) {
                return;
            }
            let mut control = self.control.clone();
            let stream = match control.open_stream(peer, protocol.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "cannot open a sync stream: {e}");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    continue;
                }
            };
            match self.clone().session(peer, stream, true).await {
                Ok(()) => return,
                Err(Penalty::None) => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Runs one session; `Err(penalty)` if it ended with an error (the
    /// penalty has been applied already).
    async fn session(
        self: Arc<Self>,
        peer: PeerId,
        stream: Stream,
        initiator: bool,
    ) -> Result<(), Penalty> {
        {
            let mut st = self.state();
            if !st.sessions.insert(peer) {
                tracing::debug!(%peer, "refusing a second sync session");
                return Ok(());
            }
        }
        let stream = Graceful::new(stream, self.shutdown.subscribe(), self.wire.clone());
        let result = self
            .engine
            .run_session(
                self.peer_id.to_string(),
                peer.to_string(),
                stream,
                initiator,
            )
            .await;
        self.state().sessions.remove(&peer);
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let penalty = e.penalty();
                tracing::info!(%peer, ?penalty, "sync session ended: {e}");
                self.penalise(peer, penalty);
                Err(penalty)
            }
        }
    }

    /// Applies a session penalty.
    fn penalise(&self, peer: PeerId, penalty: Penalty) {
        if penalty == Penalty::None || self.stopping() {
            return;
        }
        let strikes = persist::add_strike(&self.node, &peer, 0).unwrap_or(1);
        let ban = penalty == Penalty::Ban || strikes >= STRIKES_TO_BAN;
        {
            let mut st = self.state();
            let delay = Duration::from_secs(1u64 << strikes.min(12)).min(MAX_BACKOFF);
            st.backoff.insert(peer, Instant::now() + delay);
            if ban {
                let until = now_ms() + BAN_DURATION.as_millis() as u64;
                st.banned.insert(peer, until);
                let _ = persist::ban(&self.node, &peer, until);
                tracing::warn!(%peer, strikes, "peer banned");
            }
        }
        let _ = self.commands.send(Command::Disconnect(peer));
    }

    /// Starts keeping a reservation at `relay` (remembered in the store)
    /// unless a keeper already runs for it; returns the keeper's status.
    pub(crate) fn keep_relay(self: &Arc<Self>, relay: PeerId) -> watch::Receiver<RelayStatus> {
        let mut st = self.state();
        if let Some(keeper) = st.relays.get(&relay)
            && keeper.status.has_changed().is_ok()
        {
            // Someone wants the reservation now: do not let them wait out
            // a long pause after earlier failures.
            keeper.wake.notify_one();
            return keeper.status.clone();
        }
        let (tx, rx) = watch::channel(RelayStatus::default());
        let wake = Arc::new(tokio::sync::Notify::new());
        st.relays.insert(
            relay,
            RelayKeeper {
                status: rx.clone(),
                wake: wake.clone(),
            },
        );
        drop(st);
        let inner = self.clone();
        self.spawn(keep_reservation(inner, relay, tx, wake));
        rx
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(fut);
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(h);
    }
}

/// A running network node. Cheap to clone; every clone drives the same
/// swarm. Create it inside a tokio runtime (multi-threaded recommended),
/// and call [`Network::stop`] when done: its tasks run until then.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("peer_id", &self.inner.peer_id)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Starts the network for `node` with a sync engine of default settings.
    /// See [`Network::start_with_engine`].
    pub async fn start(node: Arc<Node>, config: NetConfig) -> Result<Network> {
        let engine = SyncEngine::new(node.clone(), SyncConfig::default());
        Self::start_with_engine(node, engine, config).await
    }

    /// Starts the network: loads (or creates, sealed) this device's network
    /// key, builds the swarm, listens on `config.listen`, registers the
    /// Starling protocols, dials the bootstrap and known peers, and returns
    /// once the listeners are up (at most 5 s).
    ///
    /// Errors: [`Error::Locked`] if the at-rest key is unavailable (the
    /// network key is sealed with it); [`Error::Io`] if no listen address
    /// could be bound.
    pub async fn start_with_engine(
        node: Arc<Node>,
        engine: SyncEngine,
        config: NetConfig,
    ) -> Result<Network> {
        persist::ensure_schema(&node)?;
        let key = persist::network_key(&node)?;
        let peer_id = key.public().to_peer_id();
        let blobs = BlobStore::open(
            node.data_dir(),
            config.max_blob_size,
            config.blob_cache_bytes,
        )?;
        let mut swarm = swarm::build(key, &config)?;
        if config.relay_server {
            swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
        }
        let mut control = swarm.behaviour().stream.new_control();
        let sync_in = control
            .accept(StreamProtocol::new(SYNC_PROTOCOL))
            .map_err(|e| net_error(e.to_string()))?;
        let blob_in = control
            .accept(StreamProtocol::new(BLOB_PROTOCOL))
            .map_err(|e| net_error(e.to_string()))?;
        let invite_in = control
            .accept(StreamProtocol::new(INVITE_PROTOCOL))
            .map_err(|e| net_error(e.to_string()))?;
        let mut listening = 0;
        for addr in &config.listen {
            match swarm.listen_on(addr.clone()) {
                Ok(_) => listening += 1,
                Err(e) => tracing::warn!(%addr, "cannot listen: {e}"),
            }
        }
        if listening == 0 && !config.listen.is_empty() {
            return Err(net_error("could not listen on any address".into()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            node,
            engine,
            config,
            peer_id,
            commands: tx,
            control,
            blobs,
            state: Mutex::new(State::default()),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            wire: Arc::default(),
            watcher: Mutex::new(None),
        });
        let swarm_task = tokio::spawn(swarm::run(swarm, rx, inner.clone()));
        inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(swarm_task);
        let net = Network { inner };
        net.spawn_acceptors(sync_in, blob_in, invite_in);
        // Wait for the listeners so callers can print real addresses.
        let deadline = Instant::now() + LISTEN_WAIT;
        while net.inner.state().listen.len() < listening && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if net.inner.config.sync {
            // Entries another process writes (the CLI's `post`) are pushed live.
            let handle = net.inner.engine.watch_external_writes()?;
            *net.inner.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        }
        for addr in net.inner.config.bootstrap.clone() {
            let _ = net.inner.commands.send(Command::Dial {
                addr,
                peer: None,
                reply: None,
            });
        }
        // Reservations do not survive a restart: ask every remembered
        // relay again, or this node is unreachable behind its NAT.
        if net.inner.config.redial_known_peers {
            match persist::known_relays(&net.inner.node) {
                Ok(relays) => {
                    for r in relays {
                        net.inner.keep_relay(r.peer);
                    }
                }
                Err(e) => tracing::warn!("cannot read the remembered relays: {e}"),
            }
        }
        if net.inner.config.redial_known_peers {
            let inner = net.inner.clone();
            net.inner.spawn(redial_loop(inner));
        }
        if net.inner.config.announce {
            let inner = net.inner.clone();
            net.inner.spawn(announce_loop(inner));
        }
        if net.inner.config.control_socket {
            control::serve(net.clone())?;
        }
        Ok(net)
    }

    fn spawn_acceptors(
        &self,
        mut sync_in: libp2p_stream::IncomingStreams,
        mut blob_in: libp2p_stream::IncomingStreams,
        mut invite_in: libp2p_stream::IncomingStreams,
    ) {
        let inner = self.inner.clone();
        let mut stop = inner.shutdown.subscribe();
        self.inner.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    next = sync_in.next() => {
                        let Some((peer, stream)) = next else { return };
                        // Only the peer with the lower PeerId opens sessions;
                        // a stream from the other side would duplicate ours.
                        if !inner.config.sync
                            || inner.refuses(&peer)
                            || inner.peer_id.to_bytes() < peer.to_bytes()
                        {
                            continue; // dropping the stream resets it
                        }
                        let i = inner.clone();
                        let h = tokio::spawn(async move {
                            let _ = i.session(peer, stream, false).await;
                        });
                        inner.track_session(peer, h);
                    }
                }
            }
        });
        let inner = self.inner.clone();
        let mut stop = inner.shutdown.subscribe();
        self.inner.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    next = blob_in.next() => {
                        let Some((peer, stream)) = next else { return };
                        let store = inner.blobs.clone();
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(
                                blobs::FETCH_TIMEOUT,
                                blobs::serve(&store, stream),
                            )
                            .await;
                            if let Ok(Err(e)) = r {
                                tracing::debug!(%peer, "blob request failed: {e}");
                            }
                        });
                    }
                }
            }
        });
        let inner = self.inner.clone();
        let mut stop = inner.shutdown.subscribe();
        self.inner.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    next = invite_in.next() => {
                        let Some((peer, stream)) = next else { return };
                        let i = inner.clone();
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(
                                invite::EXCHANGE_TIMEOUT,
                                answer_invite(i, stream),
                            )
                            .await;
                            match r {
                                Ok(Ok(newcomer)) => tracing::info!(%peer, %newcomer, "invite redeemed"),
                                Ok(Err(e)) => tracing::info!(%peer, "invite refused: {e}"),
                                Err(_) => tracing::info!(%peer, "invite exchange timed out"),
                            }
                        });
                    }
                }
            }
        });
    }

    /// This device's network id (not the user's author id).
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The node this network serves.
    pub fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    /// The node's events: entries added (also those replicated from peers),
    /// peers connecting and disconnecting, sync progress, blobs fetched.
    /// Same as [`Node::subscribe`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::NodeEvent> {
        self.inner.node.subscribe()
    }

    /// The sync engine sessions are handed to.
    pub fn engine(&self) -> &SyncEngine {
        &self.inner.engine
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &NetConfig {
        &self.inner.config
    }

    /// Addresses the node listens on now, each ending in `/p2p/<peer id>`
    /// so it can be given to [`Network::dial`] elsewhere.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let me = self.inner.peer_id;
        self.inner
            .state()
            .listen
            .iter()
            .map(|a| with_peer(a.clone(), me))
            .collect()
    }

    /// What AutoNAT has learned about this node's reachability so far
    /// ([`Reachability::Unknown`] until a probe completed).
    pub fn reachability(&self) -> Reachability {
        self.inner.state().reachability
    }

    /// This node's confirmed external addresses: those a peer dialed back
    /// (AutoNAT), and on a relay ([`NetConfig::relay_server`]) its listen
    /// addresses. Empty for a node behind a NAT.
    pub fn external_addrs(&self) -> Vec<Multiaddr> {
        self.inner.state().external.clone()
    }

    /// Dials `addr` and waits (up to 20 s) until the connection is up.
    /// Returns the peer's network id.
    ///
    /// Errors: [`Error::Io`] if the dial fails or times out.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        let (tx, rx) = oneshot::channel();
        // The last peer id names the target: in a relay circuit address
        // (`…/p2p/RELAY/p2p-circuit/p2p/TARGET`) the first one is the relay.
        let peer = addr
            .iter()
            .filter_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            })
            .last();
        if let Some(p) = peer
            && self.inner.state().connected.contains_key(&p)
        {
            return Ok(p);
        }
        self.send(Command::Dial {
            addr,
            peer,
            reply: Some(tx),
        })?;
        match tokio::time::timeout(DIAL_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(net_error("network stopped".into())),
            Err(_) => Err(net_error("dial timed out".into())),
        }
    }

    /// The peers connected now.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let st = self.inner.state();
        let mut out: Vec<PeerInfo> = st
            .connected
            .iter()
            .map(|(peer, p)| {
                let mut addrs: Vec<Multiaddr> = p.conns.values().map(|c| c.addr.clone()).collect();
                addrs.sort();
                addrs.dedup();
                PeerInfo {
                    peer: *peer,
                    addrs,
                    connected_since_ms: p.since_ms,
                    syncing: st.sessions.contains(peer),
                    relay: p.relay,
                    relayed: p.relayed(),
                }
            })
            .collect();
        out.sort_by_key(|p| p.peer.to_bytes());
        out
    }

    /// Per-peer sync status from the engine.
    pub fn sync_status(&self) -> Vec<PeerSyncStatus> {
        self.inner.engine.status()
    }

    /// The local blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// Returns blob `id`: from the local store, or else fetched from the
    /// connected peers one after the other (verified by hash, size-capped,
    /// cached, and announced as `BlobFetched`).
    ///
    /// Errors: [`Error::NotFound`] if no connected peer has it.
    pub async fn fetch_blob(&self, id: BlobId) -> Result<Vec<u8>> {
        if let Some(bytes) = self.inner.blobs.get(&id)? {
            return Ok(bytes);
        }
        let peers: Vec<PeerId> = self.inner.state().connected.keys().copied().collect();
        let max = self.inner.blobs.max_size();
        for peer in peers {
            let mut control = self.inner.control.clone();
            let stream = match control
                .open_stream(peer, StreamProtocol::new(BLOB_PROTOCOL))
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "cannot ask for blob: {e}");
                    continue;
                }
            };
            match tokio::time::timeout(blobs::FETCH_TIMEOUT, blobs::fetch(stream, &id, max)).await {
                Ok(Ok(Some(bytes))) => {
                    self.inner.blobs.put_verified(&id, &bytes)?;
                    engine::blob_fetched(&self.inner.node, id, bytes.len() as u64);
                    let keep = blobs::own_blob_ids(&self.inner.node).unwrap_or_default();
                    let mut keep = keep;
                    keep.insert(id);
                    let _ = self.inner.blobs.evict(&keep);
                    return Ok(bytes);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::info!(%peer, "blob fetch failed: {e}"),
                Err(_) => tracing::info!(%peer, "blob fetch timed out"),
            }
        }
        Err(Error::NotFound(format!(
            "blob {id} (no connected peer has it)"
        )))
    }

    /// Stores `bytes` as a blob (see [`BlobStore::add_bytes`]).
    pub fn add_blob(&self, bytes: &[u8], mime: &str) -> Result<BlobRef> {
        self.inner.blobs.add_bytes(bytes, mime)
    }

    /// Creates a one-time invite valid for `ttl` and returns its code.
    /// The code names this node's peer id and listen addresses (wildcard
    /// addresses are left out; a node listening on 0.0.0.0 should be given
    /// explicit addresses to be invitable from elsewhere).
    pub fn create_invite(&self, ttl: Duration) -> Result<String> {
        let mut token = [0u8; 16];
        getrandom::fill(&mut token)
            .map_err(|e| Error::Crypto(format!("the system random generator failed: {e}")))?;
        let expires = now_ms().saturating_add(ttl.as_millis() as u64);
        persist::store_invite(&self.inner.node, &token, expires)?;
        let addrs: Vec<Multiaddr> = self
            .inner
            .state()
            .listen
            .iter()
            .filter(|a| !swarm::is_unspecified(a) && !swarm::is_circuit(a))
            .cloned()
            .collect();
        Ok(InviteCode {
            peer: self.inner.peer_id,
            addrs,
            token,
            relay: self.inner.config.relay_server,
        }
        .encode())
    }

    /// Accepts an invite: dials the inviter, presents the token, follows
    /// the inviter once it accepted (it follows us back). If the inviter is
    /// a relay, also asks it for a reservation (to listen through it, so
    /// others can reach us via the relay), retrying with back-off for up to
    /// [`NetConfig::relay_reservation_timeout`]; the outcome is
    /// [`InviteAnswer::reservation`].
    ///
    /// Errors: [`Error::InvalidInput`] for a malformed, used or expired
    /// code; [`Error::Io`] if the inviter cannot be reached. A reservation
    /// that never succeeds is not an error (the invite itself was redeemed):
    /// it is reported as [`RelayReservation::Failed`].
    pub async fn accept_invite(&self, code: &str) -> Result<InviteAnswer> {
        let code = InviteCode::parse(code)?;
        let me = self.inner.node.whoami()?;
        let mut last = None;
        let mut connected = false;
        for addr in &code.addrs {
            match self.dial(with_peer(addr.clone(), code.peer)).await {
                Ok(_) => {
                    connected = true;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if !connected {
            return Err(last.unwrap_or_else(|| net_error("the invite lists no address".into())));
        }
        let mut control = self.inner.control.clone();
        let stream = control
            .open_stream(code.peer, StreamProtocol::new(INVITE_PROTOCOL))
            .await
            .map_err(|e| net_error(format!("inviter does not take invites: {e}")))?;
        let mut answer = tokio::time::timeout(
            invite::EXCHANGE_TIMEOUT,
            invite::present(stream, &code.token, &me),
        )
        .await
        .map_err(|_| net_error("the inviter did not answer".into()))??;
        let node = self.inner.node.clone();
        let inviter = answer.inviter;
        if inviter != me && !node.follows(me)?.contains(&inviter) {
            node.follow(inviter)?;
        }
        if code.relay || answer.relay {
            answer.reservation = self.reserve(&code.addrs, code.peer).await;
        }
        Ok(answer)
    }

    /// Remembers the relay `relay` (reachable at `addrs`), makes sure its
    /// reservation keeper runs, and waits until the relay granted a
    /// reservation or [`NetConfig::relay_reservation_timeout`] passes. The
    /// keeper goes on asking (with capped back-off) after that.
    async fn reserve(&self, addrs: &[Multiaddr], relay: PeerId) -> RelayReservation {
        if let Err(e) = persist::remember_relay(&self.inner.node, &relay, addrs) {
            tracing::warn!(%relay, "cannot remember the relay: {e}");
            return RelayReservation::Failed(ReservationError {
                attempts: 0,
                reason: format!("cannot remember the relay: {e}"),
            });
        }
        let mut status = self.inner.keep_relay(relay);
        let wait = self.inner.config.relay_reservation_timeout;
        let granted = tokio::time::timeout(wait, status.wait_for(|s| s.listening.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|s| s.listening.clone()));
        if let Some(listening) = granted {
            return RelayReservation::Listening(listening);
        }
        let s = status.borrow().clone();
        let reason = if s.reason.is_empty() {
            "the relay did not answer in time".to_string()
        } else {
            s.reason
        };
        tracing::warn!(%relay, attempts = s.attempts, "no relay reservation yet: {reason}");
        RelayReservation::Failed(ReservationError {
            attempts: s.attempts,
            reason,
        })
    }

    /// The relays this node keeps a reservation at (remembered in the
    /// store: those whose invite it accepted, at most eight), and whether
    /// each holds one now.
    ///
    /// Errors: [`Error::Storage`] if the store cannot be read.
    pub fn relays(&self) -> Result<Vec<RelayInfo>> {
        let known = persist::known_relays(&self.inner.node)?;
        let st = self.inner.state();
        Ok(known
            .into_iter()
            .map(|k| RelayInfo {
                listening: st
                    .relays
                    .get(&k.peer)
                    .and_then(|k| k.status.borrow().listening.clone()),
                peer: k.peer,
                addrs: k.addrs,
            })
            .collect())
    }

    /// Stops keeping a reservation at `relay` and forgets it: its circuit
    /// listener is closed and it is not asked again, now or after a
    /// restart. Returns whether it was remembered.
    ///
    /// Errors: [`Error::Storage`] if the store cannot be written.
    pub fn forget_relay(&self, relay: PeerId) -> Result<bool> {
        let was = persist::forget_relay(&self.inner.node, &relay)?;
        // The keeper sees the row gone once the listener has closed.
        let _ = self.send(Command::Unreserve(relay));
        Ok(was)
    }

    /// Publishes this identity's signed "where to reach me" record in the
    /// DHT now (see [`NetConfig::announce`] for the privacy trade-off).
    pub fn announce(&self) -> Result<()> {
        announce_once(&self.inner)
    }

    /// Looks `author`'s reachability record up in the DHT. Only records
    /// that pass [`records::validate_record`] are returned; the freshest
    /// one wins.
    pub async fn lookup(&self, author: AuthorId) -> Result<Option<ReachRecord>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::GetRecord(
            kad::RecordKey::new(&records::record_key(&author)),
            tx,
        ))?;
        let found = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| swarm::lookup_failed())?
            .map_err(|_| swarm::lookup_failed())?;
        let now = now_ms();
        Ok(found
            .iter()
            .filter_map(|r| records::validate_record(r.key.as_ref(), &r.value, now).ok())
            .max_by_key(|r| r.issued_at_ms))
    }

    /// Bytes (read, written) by this node's sync sessions so far, above
    /// the multiplexer. For benchmarks.
    #[doc(hidden)]
    pub fn sync_wire_bytes(&self) -> (u64, u64) {
        (
            self.inner.wire.read.load(Ordering::Relaxed),
            self.inner.wire.written.load(Ordering::Relaxed),
        )
    }

    /// Opens a raw stream of `protocol` to a connected peer. For tests of
    /// misbehaving peers; apps never need it.
    #[doc(hidden)]
    pub async fn open_raw_stream(&self, peer: PeerId, protocol: &'static str) -> Result<Stream> {
        let mut control = self.inner.control.clone();
        control
            .open_stream(peer, StreamProtocol::new(protocol))
            .await
            .map_err(|e| net_error(e.to_string()))
    }

    /// Stops gracefully: no new sessions; running sessions see their input
    /// end and get `shutdown_grace` to finish writing; then every
    /// connection is closed and the swarm task ends. Idempotent.
    pub async fn stop(&self) {
        if self.inner.shutdown.send_replace(true) {
            return;
        }
        // Ask the engine to end each session cleanly (it finishes the frame
        // it is writing); the Graceful wrapper is the fallback.
        let live: Vec<PeerId> = self.inner.state().sessions.iter().copied().collect();
        for peer in live {
            self.inner.engine.disconnect(&peer.to_string());
        }
        let deadline = Instant::now() + self.inner.config.shutdown_grace;
        loop {
            let running = {
                let s = self
                    .inner
                    .sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                s.values().any(|h| !h.is_finished())
            };
            if !running || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sessions: Vec<JoinHandle<()>> = {
            let mut s = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            s.drain().map(|(_, h)| h).collect()
        };
        for h in sessions {
            h.abort();
        }
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Stop(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        let tasks: Vec<JoinHandle<()>> = {
            let mut t = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            t.drain(..).collect()
        };
        for h in tasks {
            h.abort();
        }
        self.inner
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if self.inner.config.control_socket {
            control::remove_socket(self.inner.node.data_dir());
        }
    }

    /// Fires when [`Network::stop`] is called.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Whether [`Network::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping()
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.inner
            .commands
            .send(cmd)
            .map_err(|_| net_error("network stopped".into()))
    }
}

/// Inviter side of an invite exchange.
async fn answer_invite(inner: Arc<Inner>, mut stream: Stream) -> Result<AuthorId> {
    let (token, newcomer) = invite::read_request(&mut stream).await?;
    let outcome = redeem(&inner, &token, &newcomer);
    let reply = match &outcome {
        Ok(me) => Ok((*me, inner.config.relay_server)),
        Err(e) => Err(match e {
            Error::InvalidInput(m) => m.clone(),
            _ => "the inviter could not complete the invite".to_string(),
        }),
    };
    invite::write_answer(&mut stream, reply).await?;
    outcome.map(|_| newcomer)
}

/// Redeems the token, follows the newcomer and, on a relay, hosts its feed.
fn redeem(inner: &Inner, token: &[u8; 16], newcomer: &AuthorId) -> Result<AuthorId> {
    let node = &inner.node;
    let me = node.whoami()?;
    if *newcomer == me {
        return Err(Error::InvalidInput("cannot redeem your own invite".into()));
    }
    crate::identity::verifying_key(newcomer)
        .map_err(|_| Error::InvalidInput("the newcomer's author id is not a valid key".into()))?;
    persist::redeem_invite(node, token, newcomer)?;
    if !node.follows(me)?.contains(newcomer) {
        node.follow(*newcomer)?;
    }
    if inner.config.relay_server {
        inner.engine.host_feed(*newcomer)?;
    }
    Ok(me)
}

/// Redials remembered peers with exponential backoff while disconnected.
async fn redial_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(REDIAL_TICK) => {}
        }
        let Ok(known) = persist::known_peers(&inner.node, 32) else {
            continue;
        };
        let now = Instant::now();
        for k in known {
            if k.addrs.is_empty()
                || k.peer == inner.peer_id
                || k.banned_until_ms > now_ms()
                || inner.refuses(&k.peer)
            {
                continue;
            }
            let due = {
                let mut st = inner.state();
                if st.connected.contains_key(&k.peer) {
                    continue;
                }
                let r = st.redial.entry(k.peer).or_insert(Redial {
                    attempts: 0,
                    next_at: now,
                });
                if r.next_at > now {
                    false
                } else {
                    let delay =
                        Duration::from_secs(1u64 << r.attempts.min(6)).min(MAX_REDIAL_DELAY);
                    r.attempts += 1;
                    r.next_at = now + delay;
                    true
                }
            };
            if due {
                for addr in k.addrs.iter().take(3) {
                    let _ = inner.commands.send(Command::Dial {
                        addr: addr.clone(),
                        peer: Some(k.peer),
                        reply: None,
                    });
                }
            }
        }
    }
}

/// Keeps a reservation at `relay` for as long as the network runs and the
/// relay is remembered: asks for one (each stored address in turn), waits
/// while it is held, and asks again when it is lost, with back-off from
/// [`RESERVATION_FIRST_RETRY`] doubling to [`RESERVATION_MAX_RETRY`]
/// between rounds (shortened by a random quarter at most, so keepers of
/// relays lost together, e.g. when the network changes, spread out).
/// `wake` ends a pause early and restarts the back-off.
async fn keep_reservation(
    inner: Arc<Inner>,
    relay: PeerId,
    status: watch::Sender<RelayStatus>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut stop = inner.shutdown.subscribe();
    let mut pause = RESERVATION_FIRST_RETRY;
    let mut attempts = 0u32;
    loop {
        if inner.stopping() {
            return;
        }
        // Read each round: a later invite may have brought new addresses,
        // and `forget_relay` deletes the row.
        let addrs = match persist::relay_addrs(&inner.node, &relay) {
            Ok(Some(addrs)) => addrs,
            Ok(None) => {
                tracing::info!(%relay, "relay forgotten: no longer asking it for a reservation");
                break;
            }
            Err(e) => {
                tracing::warn!(%relay, "cannot read the relay's addresses: {e}");
                Vec::new()
            }
        };
        for addr in addrs {
            attempts = attempts.saturating_add(1);
            let circuit = with_peer(addr, relay).with(libp2p::multiaddr::Protocol::P2pCircuit);
            let outcome = tokio::select! {
                _ = stop.changed() => return,
                o = reserve_once(&inner, circuit, relay) => o,
            };
            match outcome {
                Ok((listening, lost)) => {
                    tracing::info!(%relay, %listening, attempts, "listening through the relay (reservation granted)");
                    if let Err(e) = persist::relay_reserved(&inner.node, &relay) {
                        tracing::debug!(%relay, "cannot record the reservation: {e}");
                    }
                    status.send_replace(RelayStatus {
                        listening: Some(listening),
                        attempts,
                        reason: String::new(),
                    });
                    let since = Instant::now();
                    let why = tokio::select! {
                        _ = stop.changed() => return,
                        why = lost => why.unwrap_or_else(|_| "network stopped".into()),
                    };
                    tracing::info!(%relay, "relay reservation lost ({why}); asking again");
                    attempts = 0;
                    status.send_replace(RelayStatus {
                        listening: None,
                        attempts,
                        reason: why,
                    });
                    if since.elapsed() >= RESERVATION_STABLE {
                        pause = RESERVATION_FIRST_RETRY;
                    }
                    // Pause before asking again: the relay may be
                    // restarting, or dropping us on purpose.
                    break;
                }
                Err(reason) => {
                    tracing::info!(%relay, attempts, "relay reservation failed: {reason}");
                    status.send_modify(|s| {
                        s.attempts = attempts;
                        s.reason = reason;
                    });
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(jittered(pause)) => {
                pause = (pause * 2).min(RESERVATION_MAX_RETRY);
            }
            _ = wake.notified() => pause = RESERVATION_FIRST_RETRY,
        }
    }
    // Unless a new keeper for the relay took over meanwhile.
    drop(status);
    let mut st = inner.state();
    if st
        .relays
        .get(&relay)
        .is_some_and(|k| k.status.has_changed().is_err())
    {
        st.relays.remove(&relay);
    }
}

/// Asks the relay for one reservation through `circuit`; the circuit
/// address and a receiver that fires when it is lost, or why it failed.
/// Gives up after [`NetConfig::relay_reservation_timeout`] (the swarm then
/// drops a late grant).
async fn reserve_once(
    inner: &Inner,
    circuit: Multiaddr,
    relay: PeerId,
) -> std::result::Result<(Multiaddr, oneshot::Receiver<String>), String> {
    let (granted, granted_rx) = oneshot::channel();
    let (lost, lost_rx) = oneshot::channel();
    inner
        .commands
        .send(Command::Reserve {
            addr: circuit,
            relay,
            granted,
            lost,
        })
        .map_err(|_| "network stopped".to_string())?;
    match tokio::time::timeout(inner.config.relay_reservation_timeout, granted_rx).await {
        Ok(Ok(Ok(listening))) => Ok((listening, lost_rx)),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err("network stopped".into()),
        Err(_) => Err("the relay did not answer in time".into()),
    }
}

/// `pause` shortened by a random amount of up to a quarter.
fn jittered(pause: Duration) -> Duration {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        return pause;
    }
    let fraction = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 4.0;
    pause.mul_f64(1.0 - fraction)
}

/// Publishes the reach record now and every six hours.
async fn announce_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        if let Err(e) = announce_once(&inner) {
            tracing::info!("could not announce in the DHT: {e}");
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(6 * 3600)) => {}
        }
    }
}

fn announce_once(inner: &Inner) -> Result<()> {
    let identity = inner.node.signing_identity()?;
    let addrs: Vec<Multiaddr> = inner
        .state()
        .listen
        .iter()
        .filter(|a| !swarm::is_unspecified(a))
        .cloned()
        .collect();
    let value = records::sign_record(&identity, inner.peer_id, &addrs, now_ms());
    let record = kad::Record::new(
        kad::RecordKey::new(&records::record_key(&identity.author_id())),
        value,
    );
    inner
        .commands
        .send(Command::PutRecord(record))
        .map_err(|_| net_error("network stopped".into()))
}

/// `addr` ending in `/p2p/<peer>` (added if missing).
fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    if addr
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
    {
        addr
    } else {
        addr.with(libp2p::multiaddr::Protocol::P2p(peer))
    }
}

/// A stream whose read side reports end-of-stream once the network is
/// stopping, so a session winds down on its own (finishing the writes it
/// has started) instead of being cut mid-frame.
struct Graceful<S> {
    inner: S,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    stopped: bool,
    wire: Arc<WireCounters>,
}

impl<S> Graceful<S> {
    fn new(inner: S, mut rx: watch::Receiver<bool>, wire: Arc<WireCounters>) -> Self {
        let stop = Box::pin(async move {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Self {
            inner,
            stop,
            stopped: false,
            wire,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Graceful<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if !self.stopped && self.stop.as_mut().poll(cx).is_ready() {
            self.stopped = true;
        }
        if self.stopped {
            return Poll::Ready(Ok(0));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.wire.read.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Graceful<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.wire.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
