//! [`NetConfig`]: everything an app or `starling serve` can tune about the
//! network layer, with defaults that are safe on a phone and on a public
//! server alike (connection and memory limits on, mDNS on, relay server off).

use std::time::Duration;

use libp2p::Multiaddr;

/// Default cap on one blob (attachment): 16 MiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 16 * 1024 * 1024;
/// Default cap on the local blob cache: 256 MiB (own blobs never count
/// towards eviction; see [`crate::net::blobs`]).
pub const DEFAULT_BLOB_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Configuration of a [`crate::net::Network`].
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on. Default: every IPv4 interface, a random
    /// port, over TCP and QUIC (`/ip4/0.0.0.0/tcp/0`,
    /// `/ip4/0.0.0.0/udp/0/quic-v1`).
    pub listen: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS (default on). Switch it
    /// off on untrusted networks: mDNS announces this device's (network)
    /// peer id and addresses to everybody on the LAN.
    pub mdns: bool,
    /// Act as a relay v2 server (and host the feeds of users it invited).
    /// Meant for public, always-on nodes. Default off; every node is a
    /// relay client regardless.
    pub relay_server: bool,
    /// Peers to dial at start (and to use as DHT bootstrap nodes).
    pub bootstrap: Vec<Multiaddr>,
    /// Redial the peers this node was connected to before (their last known
    /// addresses are kept in the store), and ask the remembered relays for
    /// a reservation again at start (see [`crate::net::Network::relays`]).
    /// Default on; off suits a short-lived network that only runs one
    /// command (a relay whose invite is accepted on it is still asked).
    pub redial_known_peers: bool,
    /// Publish a signed "where to reach me" record for this identity in the
    /// DHT. Default off: it links the author id to this device's network id
    /// for anyone who looks it up (see docs/PRIVACY.md).
    pub announce: bool,
    /// Serve the control socket `<data_dir>/control.sock` for the CLI.
    pub control_socket: bool,
    /// Most established connections in total (default 128).
    pub max_connections: u32,
    /// Most established connections to one peer (default 2).
    pub max_connections_per_peer: u32,
    /// Most connections being set up at once, each way (default 32).
    pub max_pending: u32,
    /// Refuse new connections once the process uses this fraction of the
    /// machine's memory (default 0.8).
    pub max_memory_fraction: f64,
    /// Largest blob fetched or served (default [`DEFAULT_MAX_BLOB_SIZE`]).
    pub max_blob_size: u64,
    /// Cap of the blob cache in bytes (default [`DEFAULT_BLOB_CACHE_BYTES`]).
    pub blob_cache_bytes: u64,
    /// Close connections idle (no stream open) for this long (default 60 s).
    pub idle_timeout: Duration,
    /// How long `stop` waits for sessions to finish their writes (5 s).
    pub shutdown_grace: Duration,
    /// Run sync sessions with connected peers (default on). Off only for
    /// tools and tests that use the other protocols alone.
    pub sync: bool,
    /// How long [`crate::net::Network::accept_invite`] keeps asking a relay
    /// inviter for a reservation (retrying with back-off from 250 ms to
    /// 4 s) before it reports
    /// [`crate::net::invite::RelayReservation::Failed`] (default 20 s).
    pub relay_reservation_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            mdns: true,
            relay_server: false,
            bootstrap: Vec::new(),
            redial_known_peers: true,
            announce: false,
            control_socket: true,
            max_connections: 128,
            max_connections_per_peer: 2,
            max_pending: 32,
            max_memory_fraction: 0.8,
            max_blob_size: DEFAULT_MAX_BLOB_SIZE,
            blob_cache_bytes: DEFAULT_BLOB_CACHE_BYTES,
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            sync: true,
            relay_reservation_timeout: Duration::from_secs(20),
        }
    }
}

impl NetConfig {
    /// A configuration for tests and local experiments: listen on
    /// 127.0.0.1 only (TCP, random port), no mDNS, no control socket.
    pub fn loopback() -> Self {
        Self {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            mdns: false,
            control_socket: false,
            ..Self::default()
        }
    }
}
