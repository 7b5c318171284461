//! The composed libp2p [`NetworkBehaviour`](libp2p::swarm::NetworkBehaviour)
//! of a Starling node, and how each part is configured.
//!
//! Guarantees: connection counts and process memory are capped before any
//! protocol runs (the limit behaviours come first, so they veto a
//! connection before others allocate for it); the DHT stores nothing on its
//! own — every inbound record is handed to [`crate::net::records`] for
//! validation first; the relay server exists only when configured.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, identify, kad, mdns,
    memory_connection_limits, ping, relay,
};

use crate::net::config::NetConfig;

/// Kademlia protocol name: a private DHT of Starling nodes, not the public
/// IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/starling/kad/1.0.0");
/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/starling/1";

/// All behaviours of a node (derive generates the event enum `BehaviourEvent`).
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection count limits.
    pub limits: connection_limits::Behaviour,
    /// Refuses connections when process memory is high.
    pub memory: memory_connection_limits::Behaviour,
    /// Exchanges listen addresses and supported protocols.
    pub identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub ping: ping::Behaviour,
    /// LAN discovery (optional).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// DHT for signed reachability records.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Relay v2 server (public nodes only).
    pub relay_server: Toggle<relay::Behaviour>,
    /// Relay v2 client (always).
    pub relay_client: relay::client::Behaviour,
    /// Hole punching through relayed connections.
    pub dcutr: dcutr::Behaviour,
    /// Learns whether this node is publicly reachable.
    pub autonat: autonat::Behaviour,
    /// Raw streams for `/starling/sync/1`, `/starling/blob/1`, `/starling/invite/1`.
    pub stream: libp2p_stream::Behaviour,
}

impl Behaviour {
    /// Builds the behaviours for `key` under `config`.
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &NetConfig,
    ) -> std::io::Result<Self> {
        let peer_id = key.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_pending))
            .with_max_pending_outgoing(Some(config.max_pending));
        let mdns = if config.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config {
                    // Quicker than the default so LAN peers meet promptly.
                    query_interval: Duration::from_secs(5),
                    ..mdns::Config::default()
                },
                peer_id,
            )?)
        } else {
            None
        };
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        // Inbound PUTs come to us as events; only validated records are stored.
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        kad_config.set_max_packet_size(16 * 1024);
        kad_config.set_record_ttl(Some(crate::net::records::MAX_RECORD_AGE));
        kad_config.set_publication_interval(Some(Duration::from_secs(12 * 3600)));
        let store_config = kad::store::MemoryStoreConfig {
            max_records: 4096,
            max_value_bytes: crate::net::records::MAX_RECORD_LEN,
            max_providers_per_key: 0,
            max_provided_keys: 0,
        };
        let kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::with_config(peer_id, store_config),
            kad_config,
        );
        let relay_server = config
            .relay_server
            .then(|| relay::Behaviour::new(peer_id, relay::Config::default()));
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            memory: memory_connection_limits::Behaviour::with_max_percentage(
                config.max_memory_fraction,
            ),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                    // Say nothing about the software beyond the protocol.
                    .with_agent_version("starling".into())
                    .with_push_listen_addr_updates(true),
            ),
            ping: ping::Behaviour::default(),
            mdns: mdns.into(),
            kad,
            relay_server: relay_server.into(),
            relay_client,
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}
