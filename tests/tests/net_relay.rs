//! Relay v2 circuits between live in-process nodes on 127.0.0.1.
//!
//! Proves that a node run as a public relay (`relay_server`) grants a
//! reservation to a node that accepted its invite, that the invitee then
//! listens through the relay (a `/p2p-circuit` address), and that a third
//! node which never had the invitee's own address reaches it through that
//! circuit with [`Network::dial`], getting the invitee's peer id back.
//!
//! Also: a reservation the "relay" refuses is retried with back-off and,
//! when it never succeeds, reported in the invite's answer (the invite
//! itself still succeeds).
//!
//! What it does not prove: there is no NAT here, so it does not show that
//! the circuit crosses one, nor that DCUtR then punches a direct hole
//! (every node can reach every other directly on loopback).

mod net_util;

use std::time::Duration;

use net_util::{Peer, bounded, eventually};
use starling_core::net::invite::{InviteCode, RelayReservation};
use starling_core::net::{Multiaddr, NetConfig};

const LIMIT: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(20);

fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p.tag() == "p2p-circuit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_reached_through_its_relay_by_a_peer_that_never_had_its_address() {
    bounded(LIMIT, async {
        let mut r = Peer::new("R");
        let mut b = Peer::new("B");
        let mut c = Peer::new("C");
        r.start(Some(NetConfig {
            relay_server: true,
            ..NetConfig::loopback()
        }))
        .await;
        b.start(None).await;
        c.start(None).await;

        let invite = r.net().create_invite(Duration::from_secs(600)).unwrap();
        let answer = b.net().accept_invite(&invite).await.unwrap();
        assert!(answer.relay, "R says it is a relay");
        match &answer.reservation {
            RelayReservation::Listening(circuit) => assert!(is_circuit(circuit), "{circuit}"),
            other => panic!("R granted a reservation: {other:?}"),
        }
        eventually(CONVERGE, "B listens through R (a reservation)", || {
            b.net().listen_addrs().iter().any(is_circuit)
        })
        .await;
        assert!(
            r.net().peers().iter().any(|p| p.peer == b.net().peer_id()),
            "B is connected to R"
        );

        // C knows only R's address and B's peer id.
        let circuit: Multiaddr = format!("{}/p2p-circuit/p2p/{}", r.addr(), b.net().peer_id())
            .parse()
            .unwrap();
        assert!(
            !c.net().peers().iter().any(|p| p.peer == b.net().peer_id()),
            "C was not connected to B before"
        );
        let reached = c.net().dial(circuit).await.expect("dial through the relay");
        assert_eq!(reached, b.net().peer_id());
        eventually(CONVERGE, "C lists B as a peer", || {
            c.net().peers().iter().any(|p| p.peer == b.net().peer_id())
        })
        .await;
        // The relay itself is not the one C reached.
        assert_ne!(reached, r.net().peer_id());

        c.stop().await;
        b.stop().await;
        r.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_relay_reservation_is_retried_then_reported() {
    bounded(LIMIT, async {
        // X is no relay, but its invite code claims to be one (as a code
        // from a relay that since stopped relaying would): B asks X for a
        // reservation, which X refuses every time.
        let mut x = Peer::new("X");
        let mut b = Peer::new("B");
        x.start(None).await;
        let bound = Duration::from_secs(2);
        b.start(Some(NetConfig {
            relay_reservation_timeout: bound,
            ..NetConfig::loopback()
        }))
        .await;
        let mut code =
            InviteCode::parse(&x.net().create_invite(Duration::from_secs(600)).unwrap()).unwrap();
        assert!(!code.relay);
        code.relay = true;

        let started = std::time::Instant::now();
        let answer = b.net().accept_invite(&code.encode()).await.unwrap();
        let took = started.elapsed();
        assert_eq!(answer.inviter, x.me, "the invite itself succeeded");
        assert!(!answer.relay, "X says it is no relay");
        let RelayReservation::Failed(e) = &answer.reservation else {
            panic!("the reservation cannot succeed: {:?}", answer.reservation);
        };
        eprintln!("reported: {e}");
        assert!(e.attempts >= 3, "retried: {e:?}");
        assert!(!e.reason.is_empty());
        assert!(
            took >= bound / 2 && took < bound + Duration::from_secs(5),
            "gave up after about the bound, not at once nor much later: {took:?}"
        );
        assert!(
            !b.net().listen_addrs().iter().any(is_circuit),
            "B does not claim to listen through X"
        );
        eventually(CONVERGE, "B follows X", || {
            b.node.follows(b.me).unwrap().contains(&x.me)
        })
        .await;

        b.stop().await;
        x.stop().await;
    })
    .await;
}
