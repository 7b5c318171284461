//! Relay reservations are kept alive: in-process nodes on 127.0.0.1.
//!
//! Proves that a node which accepted a relay's invite asks that relay for a
//! reservation again, without a new invite, (a) after the node itself
//! restarts (the relay is remembered in its store) and (b) after the relay
//! restarts (same data dir, same port), so a third node reaches it through
//! the relay circuit in both cases; and that a forgotten relay is not
//! asked again.
//!
//! What it does not prove: no NAT is involved (see `net_nat.rs`), and the
//! longer back-off steps (up to a minute) are not waited for.

mod net_util;

use std::time::Duration;

use net_util::{Peer, bounded, eventually};
use starling_core::net::invite::RelayReservation;
use starling_core::net::{Multiaddr, NetConfig};

const LIMIT: Duration = Duration::from_secs(50);
const CONVERGE: Duration = Duration::from_secs(20);

fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p.tag() == "p2p-circuit")
}

fn relay_config() -> NetConfig {
    NetConfig {
        relay_server: true,
        ..NetConfig::loopback()
    }
}

/// B accepts R's invite and listens through R.
async fn accept_relay_invite(r: &Peer, b: &Peer) {
    let invite = r
        .net()
        .create_invite(Duration::from_secs(600))
        .expect("invite");
    let answer = b.net().accept_invite(&invite).await.expect("accept");
    assert!(
        matches!(answer.reservation, RelayReservation::Listening(_)),
        "R granted a reservation: {:?}",
        answer.reservation
    );
    let relays = b.net().relays().expect("relays");
    assert_eq!(relays.len(), 1, "B remembers R: {relays:?}");
    assert_eq!(relays[0].peer, r.net().peer_id());
}

/// C, which knows only R's address and B's peer id, reaches B through R.
async fn reach_through_relay(r: &Peer, b: &Peer, c: &Peer) {
    let circuit: Multiaddr = format!("{}/p2p-circuit/p2p/{}", r.addr(), b.net().peer_id())
        .parse()
        .expect("circuit address");
    let reached = c.net().dial(circuit).await.expect("dial through the relay");
    assert_eq!(reached, b.net().peer_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reserves_at_its_relay_again_without_a_new_invite() {
    bounded(LIMIT, async {
        let mut r = Peer::new("R");
        let mut b = Peer::new("B");
        let mut c = Peer::new("C");
        r.start(Some(relay_config())).await;
        b.start(None).await;
        accept_relay_invite(&r, &b).await;

        // A process restart: network down, store reopened, network up
        // (on another port).
        b.stop().await;
        b.reopen();
        b.start(None).await;
        eventually(CONVERGE, "restarted B listens through R again", || {
            b.net().listen_addrs().iter().any(is_circuit)
        })
        .await;
        let relays = b.net().relays().unwrap();
        assert!(
            relays[0].listening.as_ref().is_some_and(is_circuit),
            "B reports the reservation: {relays:?}"
        );

        c.start(None).await;
        reach_through_relay(&r, &b, &c).await;

        // Forgetting the relay closes the reservation for good.
        assert!(b.net().forget_relay(r.net().peer_id()).expect("forget"));
        assert!(b.net().relays().expect("relays").is_empty());
        eventually(CONVERGE, "B no longer listens through R", || {
            !b.net().listen_addrs().iter().any(is_circuit)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !b.net().listen_addrs().iter().any(is_circuit),
            "a forgotten relay is not asked again"
        );

        c.stop().await;
        b.stop().await;
        r.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reserves_again_after_its_relay_restarts() {
    bounded(LIMIT, async {
        let mut r = Peer::new("R");
        let mut b = Peer::new("B");
        let mut c = Peer::new("C");
        r.start(Some(relay_config())).await;
        let port_addr = r.addr();
        b.start(None).await;
        accept_relay_invite(&r, &b).await;
        assert!(b.net().listen_addrs().iter().any(is_circuit));

        r.stop().await;
        eventually(CONVERGE, "B notices the reservation is gone", || {
            !b.net().listen_addrs().iter().any(is_circuit)
        })
        .await;

        // The relay comes back: same data dir (same peer id), same port.
        r.reopen();
        let tcp: Multiaddr = port_addr.iter().filter(|p| p.tag() != "p2p").collect();
        r.start(Some(NetConfig {
            listen: vec![tcp],
            ..relay_config()
        }))
        .await;
        assert_eq!(r.addr(), port_addr, "R is back where it was");
        eventually(CONVERGE, "B listens through the restarted R", || {
            b.net().listen_addrs().iter().any(is_circuit)
        })
        .await;

        c.start(None).await;
        reach_through_relay(&r, &b, &c).await;

        c.stop().await;
        b.stop().await;
        r.stop().await;
    })
    .await;
}
