//! Networking: peer-to-peer sync over libp2p (start/stop, dial, peers,
//! sync status, reachability, invites, relays) and blobs (attachments), on
//! the library runtime.
//!
//! The core's `Network` spawns its swarm and session tasks with
//! `tokio::spawn` and uses tokio timers and sockets, so every call into it
//! runs *on* the library's runtime ([`on_runtime`]); the exported futures
//! only await the `JoinHandle`, which any executor (Kotlin, Swift) can poll.

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use starling_core::BlobId;
use starling_core::net::blobs::BlobStore;
use starling_core::net::config::{DEFAULT_BLOB_CACHE_BYTES, DEFAULT_MAX_BLOB_SIZE};
use starling_core::net::invite::RelayReservation;
use starling_core::net::{
    Multiaddr, NetConfig, Network, PeerId, PeerInfo as CorePeerInfo,
    Reachability as CoreReachability, RelayInfo as CoreRelayInfo,
};
use starling_core::sync::PeerSyncStatus;

use crate::error::StarlingError;
use crate::node::StarlingNode;
use crate::runtime::{blocking, runtime};
use crate::types::BlobRef;

/// Networks started and not yet fully stopped (see `diagnostics`).
pub(crate) static LIVE_NETWORKS: AtomicU64 = AtomicU64::new(0);

/// Default lifetime of an invite: one day.
const DEFAULT_INVITE_TTL_SECS: u64 = 24 * 3600;

/// The running network of one node, if any.
#[derive(Default)]
pub(crate) struct NetSlot {
    net: Mutex<Option<Network>>,
    /// Serialises `startNetwork`/`stopNetwork` so two starts cannot race.
    starting: tokio::sync::Mutex<()>,
}

impl NetSlot {
    fn get(&self) -> Option<Network> {
        self.net.lock().map(|n| n.clone()).unwrap_or(None)
    }

    fn take(&self) -> Option<Network> {
        self.net.lock().map(|mut n| n.take()).unwrap_or(None)
    }

    fn set(&self, net: Network) {
        if let Ok(mut slot) = self.net.lock() {
            *slot = Some(net);
        }
    }

    /// Stops the network, if running, in the background (for `shutdown`
    /// and drop, which must not block).
    pub(crate) fn stop_in_background(&self) {
        if let Some(net) = self.take() {
            runtime().spawn(stop(net));
        }
    }
}

/// Stops `net` and counts it as gone.
async fn stop(net: Network) {
    net.stop().await;
    drop(net);
    LIVE_NETWORKS.fetch_sub(1, Ordering::SeqCst);
}

/// Runs `fut` on the library runtime (it needs tokio's reactor and timers)
/// and awaits it from any executor.
async fn on_runtime<T, F>(fut: F) -> Result<T, StarlingError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, StarlingError>> + Send + 'static,
{
    runtime().spawn(fut).await?
}

fn multiaddr(s: &str) -> Result<Multiaddr, StarlingError> {
    Multiaddr::from_str(s.trim()).map_err(|e| StarlingError::InvalidInput {
        detail: format!("not a multiaddr {s:?}: {e}"),
    })
}

fn parse_peer_id(s: &str) -> Result<PeerId, StarlingError> {
    PeerId::from_str(s.trim()).map_err(|e| StarlingError::InvalidInput {
        detail: format!("not a peer id {s:?}: {e}"),
    })
}

fn parse_blob_id(s: &str) -> Result<BlobId, StarlingError> {
    Ok(BlobId::from_str(s.trim())?)
}

/// How to run networking. Every field has a default, so
/// `NetworkConfig()` (Kotlin) / `NetworkConfig()` (Swift) is a sensible
/// phone configuration: listen on every interface over TCP and QUIC, find
/// peers on the local network with mDNS, redial known peers.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NetworkConfig {
    /// Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/0` (port 0: any free
    /// port). Empty (the default): every IPv4 interface, a random port,
    /// TCP and QUIC.
    #[uniffi(default = [])]
    pub listen_addresses: Vec<String>,
    /// Discover and be discovered by peers on the local network with mDNS
    /// (default on). Switch it off on untrusted networks: mDNS announces
    /// this device's network id and addresses to everyone on the LAN.
    #[uniffi(default = true)]
    pub mdns: bool,
    /// Peers to dial at start (multiaddrs ending in `/p2p/<peer id>`), e.g.
    /// a relay the user was invited to. Default none.
    #[uniffi(default = [])]
    pub bootstrap: Vec<String>,
    /// Redial the peers this node was connected to before, and ask the
    /// relays it was invited through for a reservation again, so that it
    /// stays reachable behind a NAT after a restart (default on).
    #[uniffi(default = true)]
    pub redial_known_peers: bool,
}

impl NetworkConfig {
    fn to_core(&self) -> Result<NetConfig, StarlingError> {
        let mut c = NetConfig {
            mdns: self.mdns,
            redial_known_peers: self.redial_known_peers,
            // Phones have no CLI talking to them over a socket.
            control_socket: false,
            ..NetConfig::default()
        };
        if !self.listen_addresses.is_empty() {
            c.listen = self
                .listen_addresses
                .iter()
                .map(|a| multiaddr(a))
                .collect::<Result<_, _>>()?;
        }
        c.bootstrap = self
            .bootstrap
            .iter()
            .map(|a| multiaddr(a))
            .collect::<Result<_, _>>()?;
        Ok(c)
    }
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerInfo {
    /// Its network id (`12D3Koo…`): a per-device id, not an author id.
    pub peer_id: String,
    /// Addresses of the open connections.
    pub addresses: Vec<String>,
    /// Connected since, in milliseconds since the Unix epoch.
    pub connected_since_ms: u64,
    /// Whether a sync session with it is running now.
    pub syncing: bool,
    /// Whether it offers relay service.
    pub relay: bool,
    /// Whether every open connection to it goes through a relay; false once
    /// a direct connection exists (for example after hole punching). A
    /// relayed connection is limited by the relay in time and bytes.
    pub relayed: bool,
}

impl From<CorePeerInfo> for PeerInfo {
    fn from(p: CorePeerInfo) -> Self {
        PeerInfo {
            peer_id: p.peer.to_string(),
            addresses: p.addrs.iter().map(ToString::to_string).collect(),
            connected_since_ms: p.connected_since_ms,
            syncing: p.syncing,
            relay: p.relay,
            relayed: p.relayed,
        }
    }
}

/// Whether peers can dial this node directly, as far as the network has
/// found out (AutoNAT: peers at public addresses are asked to dial it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Reachability {
    /// Not found out yet: no probe has completed, or no peer could be asked
    /// (only peers seen at a public IP address are asked, and only after
    /// about 15 s). Always the case on a LAN or loopback alone.
    Unknown,
    /// A peer dialed this node back at an address it listens on; that
    /// address is now one of `externalAddresses()`.
    Public,
    /// Peers could not dial this node back: it is behind a NAT or a
    /// firewall and is reached through relays (and hole punching).
    Private,
}

impl From<CoreReachability> for Reachability {
    fn from(r: CoreReachability) -> Self {
        match r {
            CoreReachability::Unknown => Reachability::Unknown,
            CoreReachability::Public => Reachability::Public,
            CoreReachability::Private => Reachability::Private,
        }
    }
}

/// A relay this node keeps a reservation at, so that peers can reach this
/// node through the relay while it is behind a NAT. A relay is remembered
/// when the node accepts its invite.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RelayInfo {
    /// The relay's network id (`12D3Koo…`); pass it to `forgetRelay`.
    pub peer_id: String,
    /// Where this node reaches the relay.
    pub addresses: Vec<String>,
    /// The address peers reach this node at through the relay while it
    /// holds a reservation; null while asking for one.
    pub circuit_address: Option<String>,
}

impl From<CoreRelayInfo> for RelayInfo {
    fn from(r: CoreRelayInfo) -> Self {
        RelayInfo {
            peer_id: r.peer.to_string(),
            addresses: r.addrs.iter().map(ToString::to_string).collect(),
            circuit_address: r.listening.map(|a| a.to_string()),
        }
    }
}

/// Sync with one peer, as of now (current or last session).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// The peer's network id (`12D3Koo…`).
    pub peer_id: String,
    /// Whether a sync session with it is running.
    pub connected: bool,
    /// The peer's user (`stl1…`), once it proved it in the session.
    pub author_id: Option<String>,
    /// Feeds asked from the peer that are not waiting for announced entries.
    pub feeds_in_sync: u64,
    /// Entries the peer announced and has not sent yet.
    pub entries_behind: u64,
    /// New entries stored from the peer.
    pub entries_received: u64,
    /// Entries sent to the peer.
    pub entries_sent: u64,
    /// The peer sent everything this node asked for.
    pub caught_up: bool,
}

impl From<PeerSyncStatus> for SyncStatus {
    fn from(s: PeerSyncStatus) -> Self {
        SyncStatus {
            peer_id: s.peer,
            connected: s.connected,
            author_id: s.author.map(|a| a.to_string()),
            feeds_in_sync: s.feeds_in_sync,
            entries_behind: s.entries_behind,
            entries_received: s.entries_received,
            entries_sent: s.entries_sent,
            caught_up: s.caught_up,
        }
    }
}

/// What accepting an invite did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct InviteAccepted {
    /// The inviter's author id (`stl1…`); you now follow each other.
    pub inviter_id: String,
    /// Whether the inviter is a relay that hosts your feed (your node then
    /// also listens through it).
    pub relay: bool,
    /// When the inviter is a relay: the circuit address your node now
    /// listens at through it; null if the relay refused a reservation
    /// (see `relayReservationError`) or the inviter is not a relay.
    pub relay_circuit: Option<String>,
    /// Why the relay did not grant a reservation after several attempts
    /// (your node is then not reachable through it); null otherwise. The
    /// invite itself succeeded either way.
    pub relay_reservation_error: Option<String>,
}

impl StarlingNode {
    /// The running network, after checking the node is open: `Closed`
    /// first, then `NetworkNotRunning`.
    fn net(&self) -> Result<Network, StarlingError> {
        self.node()?;
        self.network
            .get()
            .ok_or_else(StarlingError::network_not_running)
    }

    /// The blob store: the running network's, or the same directory
    /// opened with the default limits.
    fn blob_store(&self) -> Result<BlobStore, StarlingError> {
        let node = self.node()?;
        match self.network.get() {
            Some(net) => Ok(net.blobs().clone()),
            None => Ok(BlobStore::open(
                node.data_dir(),
                DEFAULT_MAX_BLOB_SIZE,
                DEFAULT_BLOB_CACHE_BYTES,
            )?),
        }
    }
}

#[uniffi::export]
impl StarlingNode {
    // ----- networking ---------------------------------------------------

    /// Starts networking: listens on `config.listenAddresses`, finds peers
    /// (mDNS, known peers, bootstrap) and syncs the feeds you follow with
    /// them, in the background, until `stopNetwork()` or `shutdown()`.
    /// Publishes this identity's prekey bundle if none is current (so others
    /// can message you). Returns once the listeners are up (at most 5 s).
    ///
    /// Throws `NetworkRunning` if it is running already, `InvalidInput` for
    /// a malformed address, `Network` if no address could be listened on,
    /// `Locked` if the at-rest key is unavailable (the device's network key
    /// is sealed with it), `Closed`.
    pub async fn start_network(&self, config: NetworkConfig) -> Result<(), StarlingError> {
        let core_config = config.to_core()?;
        let _starting = self.network.starting.lock().await;
        let node = self.node()?;
        if self.network.get().is_some() {
            return Err(StarlingError::NetworkRunning {
                detail: "stop it first to restart with another configuration".into(),
            });
        }
        let net = on_runtime(async move {
            Network::start(node, core_config)
                .await
                .map_err(StarlingError::from_net)
        })
        .await?;
        LIVE_NETWORKS.fetch_add(1, Ordering::SeqCst);
        tracing::info!(peer = %net.peer_id(), "network started");
        if self.is_shut_down() {
            // Shut down while starting: do not leave it running.
            on_runtime(async move {
                stop(net).await;
                Ok(())
            })
            .await?;
            return Err(StarlingError::closed());
        }
        self.network.set(net);
        Ok(())
    }

    /// Stops networking: running sync sessions finish what they are
    /// writing (up to 5 s), then every connection is closed. Returns when
    /// it has stopped. Does nothing if it is not running.
    pub async fn stop_network(&self) -> Result<(), StarlingError> {
        let _starting = self.network.starting.lock().await;
        if let Some(net) = self.network.take() {
            on_runtime(async move {
                stop(net).await;
                Ok(())
            })
            .await?;
            tracing::info!("network stopped");
        }
        Ok(())
    }

    /// True while networking runs (between `startNetwork` and
    /// `stopNetwork`/`shutdown`).
    pub fn is_network_running(&self) -> bool {
        !self.is_shut_down() && self.network.get().is_some()
    }

    /// This device's network id (`12D3Koo…`). It is not your author id and
    /// does not reveal it. Throws `NetworkNotRunning`, `Closed`.
    pub fn peer_id(&self) -> Result<String, StarlingError> {
        Ok(self.net()?.peer_id().to_string())
    }

    /// The addresses networking listens on now, each ending in
    /// `/p2p/<peer id>` so another device can `dial` it.
    /// Throws `NetworkNotRunning`, `Closed`.
    pub fn listen_addresses(&self) -> Result<Vec<String>, StarlingError> {
        Ok(self
            .net()?
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Connects to the peer at `multiaddr` (e.g.
    /// `/ip4/192.168.1.20/tcp/4001/p2p/12D3Koo…`) and returns its network
    /// id; syncing with it starts by itself. Waits at most 20 s.
    ///
    /// Throws `InvalidInput` for a malformed address, `Network` if the peer
    /// cannot be reached, `NetworkNotRunning`, `Closed`.
    pub async fn dial(&self, multiaddr: String) -> Result<String, StarlingError> {
        let addr = self::multiaddr(&multiaddr)?;
        let net = self.net()?;
        on_runtime(async move {
            net.dial(addr)
                .await
                .map(|p| p.to_string())
                .map_err(StarlingError::from_net)
        })
        .await
    }

    /// The peers connected now. Throws `NetworkNotRunning`, `Closed`.
    pub fn peers(&self) -> Result<Vec<PeerInfo>, StarlingError> {
        Ok(self.net()?.peers().into_iter().map(Into::into).collect())
    }

    /// Sync status per peer (current or last session).
    /// Throws `NetworkNotRunning`, `Closed`.
    pub fn sync_status(&self) -> Result<Vec<SyncStatus>, StarlingError> {
        Ok(self
            .net()?
            .sync_status()
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Whether peers can dial this node directly, as far as the network has
    /// found out; `Unknown` until a peer at a public address was asked.
    /// Throws `NetworkNotRunning`, `Closed`.
    pub fn reachability(&self) -> Result<Reachability, StarlingError> {
        Ok(self.net()?.reachability().into())
    }

    /// The addresses peers were confirmed to reach this node at: those a
    /// peer dialed it back at. Empty behind a NAT, and until a peer at a
    /// public address was asked. Throws `NetworkNotRunning`, `Closed`.
    pub fn external_addresses(&self) -> Result<Vec<String>, StarlingError> {
        Ok(self
            .net()?
            .external_addrs()
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// The relays this node keeps a reservation at (those whose invite it
    /// accepted, at most eight, most recently used first), and whether each
    /// holds one now. They are asked again after a restart.
    ///
    /// Throws `Storage`, `NetworkNotRunning`, `Closed`.
    pub async fn relays(&self) -> Result<Vec<RelayInfo>, StarlingError> {
        let net = self.net()?;
        blocking(move || {
            Ok(net
                .relays()
                .map_err(StarlingError::from_net)?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Stops keeping a reservation at the relay `peerId` and forgets it:
    /// this node is no longer reachable through it, and does not ask it
    /// again, now or after a restart. Returns whether it was remembered
    /// (false for a peer that is not one of `relays()`).
    ///
    /// Throws `InvalidInput` for a malformed peer id, `Storage`,
    /// `NetworkNotRunning`, `Closed`.
    pub async fn forget_relay(&self, peer_id: String) -> Result<bool, StarlingError> {
        let relay = parse_peer_id(&peer_id)?;
        let net = self.net()?;
        blocking(move || net.forget_relay(relay).map_err(StarlingError::from_net)).await
    }

    /// Creates a one-time invite code, valid for `ttlSeconds` (default one
    /// day), to give to a new contact (QR code, message). It names this
    /// device's network id and listen addresses (wildcard addresses are
    /// left out). Whoever accepts it follows you and you follow them back.
    /// Throws `NetworkNotRunning`, `Closed`.
    #[uniffi::method(default(ttl_seconds = 86400))]
    pub async fn create_invite(&self, ttl_seconds: u64) -> Result<String, StarlingError> {
        let net = self.net()?;
        let ttl = Duration::from_secs(if ttl_seconds == 0 {
            DEFAULT_INVITE_TTL_SECS
        } else {
            ttl_seconds
        });
        blocking(move || net.create_invite(ttl).map_err(StarlingError::from_net)).await
    }

    /// Accepts an invite code from `createInvite` on another device:
    /// connects to the inviter, presents the code, and follows the inviter
    /// (who follows you back).
    ///
    /// Throws `InvalidInput` for a malformed, used or expired code,
    /// `Network` if the inviter cannot be reached, `NoIdentity`,
    /// `NetworkNotRunning`, `Closed`.
    pub async fn accept_invite(&self, code: String) -> Result<InviteAccepted, StarlingError> {
        let net = self.net()?;
        on_runtime(async move {
            let answer = net
                .accept_invite(code.trim())
                .await
                .map_err(StarlingError::from_net)?;
            let (relay_circuit, relay_reservation_error) = match &answer.reservation {
                RelayReservation::NotRequested => (None, None),
                RelayReservation::Listening(circuit) => (Some(circuit.to_string()), None),
                RelayReservation::Failed(e) => (None, Some(e.to_string())),
            };
            Ok(InviteAccepted {
                inviter_id: answer.inviter.to_string(),
                relay: answer.relay,
                relay_circuit,
                relay_reservation_error,
            })
        })
        .await
    }

    // ----- blobs --------------------------------------------------------

    /// Stores `bytes` as a blob (an attachment: image, video…) and returns
    /// its reference (`stlb1…` id = content hash, size, MIME type). Peers
    /// can fetch it from this node while networking runs. Works without
    /// networking too. Default MIME type `application/octet-stream`.
    ///
    /// Throws `InvalidInput` if it is larger than the blob limit (16 MiB),
    /// `Storage`, `Closed`.
    #[uniffi::method(default(mime = "application/octet-stream"))]
    pub async fn add_blob(&self, bytes: Vec<u8>, mime: String) -> Result<BlobRef, StarlingError> {
        let store = self.blob_store()?;
        blocking(move || Ok(store.add_bytes(&bytes, &mime)?.into())).await
    }

    /// Stores the file at `path` as a blob, like `addBlob`; the MIME type
    /// is guessed from the file name unless given.
    /// Throws `NotFound`/`Storage` if the file cannot be read.
    #[uniffi::method(default(mime = None))]
    pub async fn add_blob_from_path(
        &self,
        path: String,
        mime: Option<String>,
    ) -> Result<BlobRef, StarlingError> {
        let store = self.blob_store()?;
        blocking(move || Ok(store.add_path(Path::new(&path), mime.as_deref())?.into())).await
    }

    /// Whether the blob `blobId` is stored on this device.
    pub async fn has_blob(&self, blob_id: String) -> Result<bool, StarlingError> {
        let id = parse_blob_id(&blob_id)?;
        let store = self.blob_store()?;
        blocking(move || Ok(store.has(&id))).await
    }

    /// The bytes of blob `blobId`: from this device, or else fetched from
    /// the connected peers (verified against its hash, cached, announced as
    /// a `BlobFetched` event).
    ///
    /// Throws `InvalidId`, `NotFound` if neither this device nor a
    /// connected peer has it (without networking: if it is not stored
    /// here), `Closed`.
    pub async fn fetch_blob(&self, blob_id: String) -> Result<Vec<u8>, StarlingError> {
        let id = parse_blob_id(&blob_id)?;
        self.node()?;
        match self.network.get() {
            Some(net) => {
                on_runtime(async move { net.fetch_blob(id).await.map_err(StarlingError::from_net) })
                    .await
            }
            None => {
                let store = self.blob_store()?;
                blocking(move || {
                    store.get(&id)?.ok_or_else(|| StarlingError::NotFound {
                        detail: format!("blob {id} is not stored here (networking is off)"),
                    })
                })
                .await
            }
        }
    }
}
