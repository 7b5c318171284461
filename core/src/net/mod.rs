//! The network layer: runs a [`crate::Node`] on a libp2p swarm so it
//! replicates with peers.
//!
//! * [`Network`] — the async handle: start, stop, dial, peers, blobs,
//!   invites, DHT announce/lookup.
//! * [`NetConfig`] — listen addresses, mDNS, relay server, limits.
//! * transports: TCP and QUIC, Noise, Yamux; behaviours: identify, ping,
//!   mDNS, Kademlia (signed, validated records only — [`records`]), relay
//!   v2 (client always, server with `relay_server`), DCUtR, AutoNAT,
//!   connection and memory limits ([`behaviour`]).
//! * NAT traversal: a node behind a NAT listens through a relay
//!   ([`invite::RelayReservation`]), peers reach it over the relay's
//!   circuit, and DCUtR then punches a direct connection, which replaces the
//!   relayed one ([`PeerInfo::relayed`]); AutoNAT's verdict is
//!   [`Network::reachability`].
//! * protocols: `/starling/sync/1` (sessions of the sync engine),
//!   `/starling/blob/1` ([`blobs`]), `/starling/invite/1` ([`invite`]).
//! * [`control`] — the Unix socket through which CLI commands reach a
//!   running node.
//!
//! Identity: the libp2p PeerId comes from a separate per-device network key
//! (sealed at rest like the identity), not from the user's author key, so
//! the PeerId seen on the LAN, in the DHT or by a relay does not reveal who
//! the user is; the author id is proven only inside sync sessions, to the
//! peers one syncs with (see docs/PRIVACY.md, "Network").

pub(crate) mod behaviour;
pub mod blobs;
pub mod config;
pub mod control;
pub mod engine;
pub mod invite;
pub mod network;
pub(crate) mod persist;
pub mod records;
pub(crate) mod swarm;

pub use config::NetConfig;
pub use libp2p::{Multiaddr, PeerId};
pub use network::{Network, PeerInfo, Reachability, RelayInfo, SYNC_PROTOCOL};
