//! The swarm task: the only code that touches the libp2p `Swarm`. It builds
//! the swarm (TCP + QUIC, Noise, Yamux, relay client transport), then runs
//! one loop that serves [`Command`]s from the [`crate::net::Network`] handle
//! and reacts to swarm events (connections, identify, mDNS, DHT, relay).
//!
//! Guarantees: a banned or backing-off peer is disconnected as soon as its
//! connection is established, before any Starling protocol runs; DHT records
//! are stored only after [`crate::net::records::validate_record`] accepted
//! them; on [`Command::Stop`] every connection is closed and the loop waits
//! (bounded) for the closes to finish before it returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::kad::{self, GetRecordOk, QueryResult, Quorum};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, mdns, noise, relay, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::net::behaviour::{Behaviour, BehaviourEvent};
use crate::net::config::NetConfig;
use crate::net::network::{ConnState, Inner, PeerState, Reachability, net_error};
use crate::net::{engine, persist, records};
use crate::store::now_ms;

/// Requests from the [`crate::net::Network`] handle to the swarm task.
pub(crate) enum Command {
    /// Dial an address; answer with the peer once connected.
    Dial {
        addr: Multiaddr,
        peer: Option<PeerId>,
        reply: Option<oneshot::Sender<Result<PeerId>>>,
    },
    /// Close every connection to a peer.
    Disconnect(PeerId),
    /// Listen through a relay (a `…/p2p/RELAY/p2p-circuit` address): a
    /// reservation. `granted` answers with the circuit address once the
    /// relay granted it, or why it failed; `lost` then fires with the reason
    /// when the circuit listener closes (the reservation was lost, the
    /// connection to the relay dropped). If nobody waits for `granted` any
    /// more when the relay grants, the listener is removed again.
    Reserve {
        addr: Multiaddr,
        relay: PeerId,
        granted: oneshot::Sender<std::result::Result<Multiaddr, String>>,
        lost: oneshot::Sender<String>,
    },
    /// Close every circuit listener through this relay (it was forgotten).
    Unreserve(PeerId),
    /// Publish a DHT record (already signed and validated).
    PutRecord(kad::Record),
    /// Look a DHT key up; answers with every record found.
    GetRecord(kad::RecordKey, oneshot::Sender<Vec<kad::Record>>),
    /// Close everything and end the loop.
    Stop(oneshot::Sender<()>),
}

/// Builds the swarm for `key` under `config`.
pub(crate) fn build(key: Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>> {
    let idle = config.idle_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| net_error(format!("tcp transport: {e}")))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| net_error(format!("relay client transport: {e}")))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, config)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| net_error(format!("behaviours: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// Pending DHT lookups.
type Lookups = HashMap<kad::QueryId, (Vec<kad::Record>, oneshot::Sender<Vec<kad::Record>>)>;

/// Requests waiting for the swarm: dials, DHT lookups, relay reservations.
#[derive(Default)]
struct Pending {
    dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId>>>,
    lookups: Lookups,
    reservations: HashMap<ListenerId, oneshot::Sender<std::result::Result<Multiaddr, String>>>,
    /// Circuit listeners asked for with [`Command::Reserve`]: their relay,
    /// and who to tell when they close.
    circuits: HashMap<ListenerId, (PeerId, oneshot::Sender<String>)>,
}

/// The swarm loop. Returns after [`Command::Stop`] or when every handle is
/// gone.
pub(crate) async fn run(
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    inner: Arc<Inner>,
) {
    let mut pending = Pending::default();
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Command::Stop(done)) => {
                    shut_down(&mut swarm).await;
                    let _ = done.send(());
                    return;
                }
                Some(cmd) => handle_command(&mut swarm, cmd, &mut pending),
            },
            event = swarm.select_next_some() => {
                handle_event(&mut swarm, event, &inner, &mut pending);
            }
        }
    }
    shut_down(&mut swarm).await;
}

/// How long the higher peer id of two that found each other on the LAN
/// waits for the lower one's dial before dialing itself.
const LAN_DIAL_GRACE: Duration = Duration::from_secs(3);

fn handle_command(swarm: &mut Swarm<Behaviour>, cmd: Command, pending: &mut Pending) {
    match cmd {
        Command::Dial { addr, peer, reply } => {
            let opts = match peer {
                // Also the addresses the behaviours know now (mDNS, identify,
                // Kademlia): a remembered address goes stale when the peer
                // restarts on another port.
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .extend_addresses_through_behaviour()
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr).build(),
            };
            let id = opts.connection_id();
            match swarm.dial(opts) {
                Ok(()) => {
                    if let Some(reply) = reply {
                        pending.dials.insert(id, reply);
                    }
                }
                Err(e) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(net_error(format!("dial failed: {e}"))));
                    }
                }
            }
        }
        Command::Disconnect(peer) => {
            let _ = swarm.disconnect_peer_id(peer);
        }
        Command::Reserve {
            addr,
            relay,
            granted,
            lost,
        } => match swarm.listen_on(addr) {
            Ok(id) => {
                pending.reservations.insert(id, granted);
                pending.circuits.insert(id, (relay, lost));
            }
            Err(e) => {
                let _ = granted.send(Err(format!("cannot listen through the relay: {e}")));
            }
        },
        Command::Unreserve(relay) => {
            let ids: Vec<ListenerId> = pending
                .circuits
                .iter()
                .filter(|(_, (r, _))| *r == relay)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                // Its `ListenerClosed` event tells the keeper.
                swarm.remove_listener(id);
            }
        }
        Command::PutRecord(record) => {
            if let Err(e) = swarm.behaviour_mut().kad.put_record(record, Quorum::One) {
                tracing::warn!("could not store own DHT record: {e}");
            }
        }
        Command::GetRecord(key, reply) => {
            let id = swarm.behaviour_mut().kad.get_record(key);
            pending.lookups.insert(id, (Vec::new(), reply));
        }
        Command::Stop(done) => {
            let _ = done.send(());
        }
    }
}

fn handle_event(
    swarm: &mut Swarm<Behaviour>,
    event: SwarmEvent<BehaviourEvent>,
    inner: &Arc<Inner>,
    pending: &mut Pending,
) {
    match event {
        SwarmEvent::NewListenAddr {
            listener_id,
            address,
        } => {
            tracing::info!(%address, "listening");
            if let Some(reply) = pending.reservations.remove(&listener_id)
                && reply.send(Ok(address.clone())).is_err()
            {
                // The keeper gave up on this attempt (timed out) and will
                // ask again: an untracked reservation would never be
                // renewed after a loss, so drop it.
                swarm.remove_listener(listener_id);
                return;
            }
            // A node run as a public relay is reachable where it listens
            // (that is what its operator says by enabling the role). The
            // relay server only serves reservations, and Kademlia only
            // answers, once the swarm has an external address; AutoNAT
            // never confirms one on a LAN or loopback, so take them here.
            if inner.config.relay_server && !is_circuit(&address) && !is_unspecified(&address) {
                swarm.add_external_address(address.clone());
                // `add_external_address` emits no swarm event.
                let mut st = inner.state();
                if !st.external.contains(&address) {
                    st.external.push(address.clone());
                }
            }
            inner.state().listen.push(address);
        }
        SwarmEvent::ExpiredListenAddr { address, .. } => {
            inner.state().listen.retain(|a| a != &address);
        }
        SwarmEvent::ListenerClosed {
            listener_id,
            addresses,
            reason,
        } => {
            let why = match reason {
                Ok(()) => "the listener closed".to_string(),
                Err(e) => e.to_string(),
            };
            let circuit = pending.circuits.remove(&listener_id);
            if let Some(reply) = pending.reservations.remove(&listener_id) {
                let _ = reply.send(Err(why));
            } else if let Some((relay, lost)) = circuit {
                tracing::warn!(%relay, ?addresses, "relay reservation lost: {why}");
                let _ = lost.send(why);
            }
            inner.state().listen.retain(|a| !addresses.contains(a));
        }
        SwarmEvent::ExternalAddrConfirmed { address } => {
            tracing::info!(%address, "external address confirmed");
            let mut st = inner.state();
            if !st.external.contains(&address) {
                st.external.push(address);
            }
        }
        SwarmEvent::ExternalAddrExpired { address } => {
            inner.state().external.retain(|a| a != &address);
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            num_established,
            ..
        } => {
            if let Some(reply) = pending.dials.remove(&connection_id) {
                let _ = reply.send(Ok(peer_id));
            }
            if inner.refuses(&peer_id) {
                tracing::debug!(%peer_id, "refusing a banned or backing-off peer");
                let _ = swarm.disconnect_peer_id(peer_id);
                return;
            }
            let remote = endpoint.get_remote_address().clone();
            let relayed = endpoint.is_relayed();
            // An inbound relayed connection's remote address is only
            // `/p2p/<peer>`; the circuit it came through says more.
            let shown = match &endpoint {
                ConnectedPoint::Listener { local_addr, .. } if relayed => local_addr.clone(),
                _ => remote.clone(),
            };
            let first = num_established.get() == 1;
            let superseded: Vec<ConnectionId> = {
                let mut st = inner.state();
                st.redial.remove(&peer_id);
                let entry = st.connected.entry(peer_id).or_insert_with(|| PeerState {
                    conns: HashMap::new(),
                    since_ms: now_ms(),
                    relay: false,
                });
                entry.conns.insert(
                    connection_id,
                    ConnState {
                        addr: shown,
                        relayed,
                    },
                );
                // A direct connection (DCUtR's hole punch, or a dial that
                // got through) replaces the relayed ones: circuits are
                // limited by the relay (2 min, 128 KiB by default), and
                // libp2p-stream picks a random connection per stream, so
                // sync sessions would keep landing on the circuit.
                if relayed {
                    Vec::new()
                } else {
                    entry
                        .conns
                        .iter()
                        .filter(|(_, c)| c.relayed)
                        .map(|(id, _)| *id)
                        .collect()
                }
            };
            if !relayed {
                tracing::info!(%peer_id, %remote, "direct connection");
            }
            for id in superseded {
                tracing::info!(%peer_id, "closing the relayed connection: a direct one is up");
                swarm.close_connection(id);
            }
            if endpoint.is_dialer() && !is_circuit(&remote) {
                let node = inner.node.clone();
                let _ = persist::remember_peer(&node, &peer_id, &[remote]);
            }
            if first {
                tracing::info!(%peer_id, "peer connected");
                engine::peer_connected(&inner.node, &peer_id.to_string());
                inner.on_connected(peer_id);
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            connection_id,
            num_established,
            cause,
            ..
        } => {
            if num_established == 0 {
                tracing::info!(%peer_id, ?cause, "peer disconnected");
                let was = inner.state().connected.remove(&peer_id).is_some();
                if was {
                    engine::peer_disconnected(&inner.node, &peer_id.to_string());
                }
            } else {
                if let Some(p) = inner.state().connected.get_mut(&peer_id) {
                    p.conns.remove(&connection_id);
                }
                inner.ensure_session(peer_id);
            }
        }
        SwarmEvent::OutgoingConnectionError {
            connection_id,
            peer_id,
            error,
        } => {
            tracing::debug!(?peer_id, "dial failed: {error}");
            if let Some(reply) = pending.dials.remove(&connection_id) {
                let _ = reply.send(Err(net_error(format!("dial failed: {error}"))));
            }
        }
        SwarmEvent::Behaviour(ev) => handle_behaviour(swarm, ev, inner, &mut pending.lookups),
        _ => {}
    }
}

fn handle_behaviour(
    swarm: &mut Swarm<Behaviour>,
    event: BehaviourEvent,
    inner: &Arc<Inner>,
    lookups: &mut Lookups,
) {
    match event {
        BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
            let relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
            if let Some(p) = inner.state().connected.get_mut(&peer_id) {
                p.relay = relay;
            }
            let addrs: Vec<Multiaddr> = info
                .listen_addrs
                .iter()
                .filter(|a| !is_circuit(a) && !is_unspecified(a))
                .take(8)
                .cloned()
                .collect();
            // Only DHT servers belong in the routing table: a client-mode
            // peer refuses requests, and handing it out as a closer peer
            // wastes the asker's dials.
            if info
                .protocols
                .contains(&crate::net::behaviour::KAD_PROTOCOL)
            {
                for a in &addrs {
                    swarm.behaviour_mut().kad.add_address(&peer_id, a.clone());
                }
            }
            if !addrs.is_empty() {
                let _ = persist::remember_peer(&inner.node, &peer_id, &addrs);
            }
        }
        BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
            let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
            for (peer, addr) in found {
                by_peer.entry(peer).or_default().push(addr);
            }
            for (peer, addrs) in by_peer {
                if swarm.is_connected(&peer) || inner.refuses(&peer) {
                    continue;
                }
                tracing::info!(%peer, "discovered on the LAN");
                // Both sides discover each other at the same moment. Dialing
                // at once from both, with TCP port reuse, makes one TCP
                // simultaneous open in which both sides start the Noise
                // handshake as initiator, and both fail (seen in about half
                // of simultaneous starts). So the lower peer id dials now;
                // the higher one only if no connection exists a little later.
                if inner.peer_id < peer {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = swarm.dial(opts);
                } else {
                    let commands = inner.commands.clone();
                    // Ends by itself; after shutdown the send just fails.
                    tokio::spawn(async move {
                        tokio::time::sleep(LAN_DIAL_GRACE).await;
                        for addr in addrs {
                            let _ = commands.send(Command::Dial {
                                addr,
                                peer: Some(peer),
                                reply: None,
                            });
                        }
                    });
                }
            }
        }
        BehaviourEvent::Kad(kad::Event::InboundRequest {
            request:
                kad::InboundRequest::PutRecord {
                    source,
                    record: Some(record),
                    ..
                },
        }) => match records::validate_record(record.key.as_ref(), &record.value, now_ms()) {
            Ok(_) => {
                use libp2p::kad::store::RecordStore;
                if let Err(e) = swarm.behaviour_mut().kad.store_mut().put(record) {
                    tracing::debug!("DHT store full: {e}");
                }
            }
            Err(e) => tracing::debug!(%source, "refused a DHT record: {e}"),
        },
        BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result: QueryResult::GetRecord(r),
            step,
            ..
        }) => {
            if let Some((found, _)) = lookups.get_mut(&id)
                && let Ok(GetRecordOk::FoundRecord(peer_record)) = r
            {
                found.push(peer_record.record);
            }
            if step.last
                && let Some((found, reply)) = lookups.remove(&id)
            {
                let _ = reply.send(found);
            }
        }
        BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
            relay_peer_id,
            ..
        }) => {
            tracing::info!(%relay_peer_id, "relay reservation accepted");
        }
        BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
            tracing::info!(?old, ?new, "AutoNAT: reachability changed");
            inner.state().reachability = match new {
                autonat::NatStatus::Public(_) => Reachability::Public,
                autonat::NatStatus::Private => Reachability::Private,
                autonat::NatStatus::Unknown => Reachability::Unknown,
            };
        }
        BehaviourEvent::Autonat(ev) => tracing::debug!(?ev, "autonat"),
        BehaviourEvent::Dcutr(dcutr::Event {
            remote_peer_id,
            result,
        }) => match result {
            Ok(_) => tracing::info!(%remote_peer_id, "DCUtR: hole punched, direct connection"),
            Err(e) => tracing::info!(%remote_peer_id, "DCUtR: hole punching failed: {e}"),
        },
        _ => {}
    }
}

/// Closes every connection and listener, waiting at most two seconds for
/// the closes to complete (Yamux sends its GoAway, TCP its FIN).
async fn shut_down(swarm: &mut Swarm<Behaviour>) {
    let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
    for p in peers {
        let _ = swarm.disconnect_peer_id(p);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while swarm.connected_peers().next().is_some() && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), swarm.select_next_some()).await;
    }
}

/// Whether an address goes through a relay.
pub(crate) fn is_circuit(a: &Multiaddr) -> bool {
    a.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

/// Whether an address is a wildcard (0.0.0.0 / ::), useless to a dialer.
pub(crate) fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// An `Error` for a failed DHT lookup.
pub(crate) fn lookup_failed() -> Error {
    net_error("DHT lookup failed".to_string())
}
