//! Multi-node replication over real sockets on 127.0.0.1, in-process
//! `Network`s: a small social graph, the 2-hop scope, blocks, live push,
//! deletes, partition and heal, and a relay that carries a feed between two
//! nodes that are never online together.

mod net_util;

use std::time::Duration;

use net_util::{Peer, bounded, eventually};
use starling_core::events::NodeEvent;
use starling_core::net::NetConfig;

const LIMIT: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_graph_replicates_within_two_hops_and_never_stores_blocked_feeds() {
    bounded(LIMIT, async {
        let mut a = Peer::new("A");
        let mut b = Peer::new("B");
        let mut c = Peer::new("C");
        let mut d = Peer::new("D");
        let mut x = Peer::new("X");
        // A → B → C → D is the follow chain; B also follows X, whom A blocks.
        a.node.follow(b.me).unwrap();
        b.node.follow(c.me).unwrap();
        c.node.follow(d.me).unwrap();
        b.node.follow(x.me).unwrap();
        a.node.block(x.me).unwrap();
        for (p, t) in [
            (&a, "from A"),
            (&b, "from B"),
            (&c, "from C"),
            (&d, "from D"),
            (&x, "from X"),
        ] {
            p.post(t);
        }
        for p in [&mut a, &mut b, &mut c, &mut d, &mut x] {
            p.start(None).await;
        }
        // Everyone meets everyone: scope, not connectivity, decides.
        b.dial(&a).await;
        c.dial(&a).await;
        d.dial(&a).await;
        x.dial(&a).await;
        c.dial(&b).await;
        x.dial(&b).await;
        d.dial(&c).await;

        eventually(CONVERGE, "A has B's and C's posts", || {
            a.texts_of(b.me) == ["from B"] && a.texts_of(c.me) == ["from C"]
        })
        .await;
        eventually(CONVERGE, "B has X's post", || {
            b.texts_of(x.me) == ["from X"]
        })
        .await;
        // Give stray transfers time to happen, then check what must not.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !a.holds_feed(d.me),
            "the third hop (D) must not be fetched by A"
        );
        assert!(
            !a.holds_feed(x.me),
            "a blocked feed (X) must never be stored"
        );
        for p in [&mut a, &mut b, &mut c, &mut d, &mut x] {
            p.stop().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_posts_reach_a_connected_peer_quickly_and_deletes_follow() {
    bounded(LIMIT, async {
        let mut a = Peer::new("A");
        let mut b = Peer::new("B");
        a.node.follow(b.me).unwrap();
        b.node.follow(a.me).unwrap();
        a.start(None).await;
        b.start(None).await;
        let mut events = b.net().subscribe();
        b.dial(&a).await;
        let a_peer = a.net().peer_id().to_string();
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(NodeEvent::PeerConnected { peer }) = events.recv().await
                    && peer == a_peer
                {
                    return;
                }
            }
        })
        .await;
        assert!(connected.is_ok(), "PeerConnected event on B");
        // Wait for the session to be up (profiles exchanged).
        eventually(CONVERGE, "initial sync", || b.holds_feed(a.me)).await;

        let started = std::time::Instant::now();
        let id = a.post("live!");
        eventually(Duration::from_secs(2), "live post on B", || {
            b.texts_of(a.me).contains(&"live!".to_string())
        })
        .await;
        eprintln!("live push took {:?}", started.elapsed());

        a.node.delete(id).unwrap();
        eventually(Duration::from_secs(5), "delete on B", || {
            !b.texts_of(a.me).contains(&"live!".to_string())
        })
        .await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_converges_after_restart() {
    bounded(LIMIT, async {
        let mut a = Peer::new("A");
        let mut b = Peer::new("B");
        let mut c = Peer::new("C");
        for (p, q) in [(&a, &b), (&a, &c), (&b, &a), (&b, &c), (&c, &a), (&c, &b)] {
            p.node.follow(q.me).unwrap();
        }
        a.start(None).await;
        b.start(None).await;
        c.start(None).await;
        b.dial(&a).await;
        c.dial(&a).await;
        c.dial(&b).await;
        eventually(CONVERGE, "initial convergence", || {
            c.holds_feed(a.me) && c.holds_feed(b.me) && a.holds_feed(c.me)
        })
        .await;

        // Partition: C goes away; A and B keep writing.
        c.stop().await;
        c.reopen();
        a.post("while C was away (A)");
        b.post("while C was away (B)");
        c.post("C wrote offline");

        // Heal: C comes back and redials the peers it knows.
        c.start(None).await;
        eventually(CONVERGE, "C caught up and A/B got C's post", || {
            c.texts_of(a.me)
                .contains(&"while C was away (A)".to_string())
                && c.texts_of(b.me)
                    .contains(&"while C was away (B)".to_string())
                && a.texts_of(c.me).contains(&"C wrote offline".to_string())
                && b.texts_of(c.me).contains(&"C wrote offline".to_string())
        })
        .await;
        for p in [&mut a, &mut b, &mut c] {
            p.stop().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_carries_a_feed_between_nodes_never_online_together() {
    bounded(LIMIT, async {
        let mut r = Peer::new("Relay");
        let mut a = Peer::new("A");
        let mut b = Peer::new("B");
        r.start(Some(NetConfig {
            relay_server: true,
            ..NetConfig::loopback()
        }))
        .await;

        // A joins through R's invite: R now hosts A's feed.
        a.start(None).await;
        let code = r.net().create_invite(Duration::from_secs(600)).unwrap();
        let answer = a.net().accept_invite(&code).await.unwrap();
        assert_eq!(answer.inviter, r.me);
        assert!(answer.relay);
        // The code is single use.
        assert!(a.net().accept_invite(&code).await.is_err());
        a.post("A was here");
        eventually(CONVERGE, "R holds A's post", || {
            r.texts_of(a.me).contains(&"A was here".to_string())
        })
        .await;
        // R follows A (invite), A follows R.
        assert!(r.node.follows(r.me).unwrap().contains(&a.me));
        eventually(CONVERGE, "A follows R", || {
            a.node.follows(a.me).unwrap().contains(&r.me)
        })
        .await;
        a.stop().await;

        // B, who follows A, comes online later and only meets R.
        b.node.follow(a.me).unwrap();
        b.start(None).await;
        b.dial(&r).await;
        eventually(CONVERGE, "B got A's post through R", || {
            b.texts_of(a.me).contains(&"A was here".to_string())
        })
        .await;
        b.stop().await;
        r.stop().await;
    })
    .await;
}
