//! End-to-end encrypted messages over the envelope carrier, between
//! in-process `Network`s on 127.0.0.1 (real sockets, real SQLite files):
//! a relay carries a message between two nodes that are never online
//! together and drops it once acked; live delivery between connected
//! nodes; a group message reaching three members; the plaintext never
//! appears in any file of any data dir.

mod net_util;

use starling_core::events::NodeEvent;
use std::path::Path;
use std::time::{Duration, Instant};

use net_util::{Peer, bounded, eventually};
use starling_core::AuthorId;
use starling_core::mailbox;
use starling_core::messaging::{Conversation, GroupId};

const LIMIT: Duration = Duration::from_secs(90);
const CONVERGE: Duration = Duration::from_secs(20);

/// Entries of `author` held by `p`.
fn entries_of(p: &Peer, author: AuthorId) -> i64 {
    p.node
        .store()
        .read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM entries WHERE author = ?1",
                [author.as_bytes().as_slice()],
                |r| r.get(0),
            )?)
        })
        .unwrap_or(-1)
}

/// `p` holds everything `q` has published.
fn has_feed_of(p: &Peer, q: &Peer) -> bool {
    let theirs = entries_of(q, q.me);
    theirs > 0 && entries_of(p, q.me) == theirs
}

/// Texts `p` received (or sent) in `conv`.
fn texts(p: &Peer, conv: Conversation) -> Vec<String> {
    p.node
        .with_messaging(|m| m.messages(conv))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

fn carried(p: &Peer) -> mailbox::MailboxStats {
    mailbox::stats(&p.node).unwrap_or_default()
}

/// Fails if `needle` occurs in any file under `dir`.
fn assert_nowhere(dir: &Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            assert_nowhere(&path, needle);
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext found in {}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_carries_a_dm_between_nodes_never_online_together_and_drops_it_on_ack() {
    bounded(LIMIT, async {
        let secret = "the relay must never read this: 7f3a9c";
        let mut c = Peer::new("Relay");
        let mut a = Peer::new("A");
        let mut b = Peer::new("B");
        // The relay replicates both feeds (so it carries B's prekey bundle to
        // A); A follows B.
        c.node.follow(a.me).unwrap();
        c.node.follow(b.me).unwrap();
        a.node.follow(b.me).unwrap();
        c.start(None).await;

        // B comes online (publishing its prekey bundle), meets the relay,
        // goes offline.
        b.start(None).await;
        b.dial(&c).await;
        eventually(CONVERGE, "relay holds B's feed", || has_feed_of(&c, &b)).await;
        b.stop().await;

        // A comes online, learns B's bundle from the relay, sends, leaves.
        a.start(None).await;
        a.dial(&c).await;
        eventually(CONVERGE, "A holds B's bundle", || has_feed_of(&a, &b)).await;
        a.node
            .with_messaging(|m| m.encrypt_dm(&b.me, None, secret))
            .unwrap()
            .unwrap();
        a.node.flush_outbox().unwrap();
        eventually(CONVERGE, "relay carries the envelope", || {
            carried(&c).envelopes >= 1
        })
        .await;
        a.stop().await;

        // B returns: the relay delivers, B reads, B's ack drops it.
        b.start(None).await;
        b.dial(&c).await;
        eventually(CONVERGE, "B reads the message", || {
            texts(&b, Conversation::Direct(a.me)).contains(&secret.to_string())
        })
        .await;
        eventually(CONVERGE, "the ack drops the envelope on the relay", || {
            let s = carried(&c);
            s.envelopes == 0 && s.acks >= 1
        })
        .await;
        // A dropped envelope is not accepted again.
        assert_eq!(carried(&b).envelopes, 0);

        c.stop().await;
        b.stop().await;
        for p in [&a, &b, &c] {
            assert_nowhere(p.dir.path(), secret.as_bytes());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_nodes_get_messages_live_both_ways() {
    bounded(LIMIT, async {
        let mut a = Peer::new("A");
        let mut b = Peer::new("B");
        a.node.follow(b.me).unwrap();
        b.node.follow(a.me).unwrap();
        a.start(None).await;
        b.start(None).await;
        a.dial(&b).await;
        eventually(CONVERGE, "bundles exchanged", || {
            has_feed_of(&a, &b) && has_feed_of(&b, &a)
        })
        .await;
        let mut b_events = b.node.subscribe();
        for i in 0..5 {
            let text = format!("live {i}");
            let sent = Instant::now();
            a.node
                .with_messaging(|m| m.encrypt_dm(&b.me, None, &text))
                .unwrap()
                .unwrap();
            a.node.flush_outbox().unwrap();
            eventually(CONVERGE, "B gets it live", || {
                texts(&b, Conversation::Direct(a.me)).contains(&text)
            })
            .await;
            eprintln!("live DM {i} delivered in {:?}", sent.elapsed());
        }
        // Each one was announced to B's app, without its text.
        let mut announced = 0;
        while let Ok(event) = b_events.try_recv() {
            if let NodeEvent::MessageReceived {
                conversation,
                sender,
                ..
            } = event
            {
                assert_eq!(conversation, Conversation::Direct(a.me));
                assert_eq!(sender, a.me);
                announced += 1;
            }
        }
        assert_eq!(announced, 5, "one MessageReceived per message");
        b.node
            .with_messaging(|m| m.encrypt_dm(&a.me, None, "reply"))
            .unwrap()
            .unwrap();
        b.node.flush_outbox().unwrap();
        eventually(CONVERGE, "A gets the reply", || {
            texts(&a, Conversation::Direct(b.me)).contains(&"reply".to_string())
        })
        .await;
        // Acked both ways: nothing left to carry.
        eventually(CONVERGE, "mailboxes empty", || {
            carried(&a).envelopes == 0 && carried(&b).envelopes == 0
        })
        .await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_reaches_three_members_through_a_relay() {
    bounded(LIMIT, async {
        let mut r = Peer::new("Relay");
        let mut a = Peer::new("A");
        let mut members = vec![Peer::new("B"), Peer::new("C"), Peer::new("D")];
        let everyone: Vec<AuthorId> = std::iter::once(a.me)
            .chain(members.iter().map(|m| m.me))
            .collect();
        for id in &everyone {
            r.node.follow(*id).unwrap();
            for p in std::iter::once(&a).chain(members.iter()) {
                if p.me != *id {
                    p.node.follow(*id).unwrap();
                }
            }
        }
        r.start(None).await;
        a.start(None).await;
        a.dial(&r).await;
        for m in &mut members {
            m.start(None).await;
            m.dial(&r).await;
        }
        for m in &members {
            eventually(CONVERGE, "A holds the member's bundle", || {
                has_feed_of(&a, m)
            })
            .await;
            for o in &members {
                if o.me != m.me {
                    eventually(CONVERGE, "members hold each other's bundles", || {
                        has_feed_of(m, o)
                    })
                    .await;
                }
            }
        }
        let g: GroupId = a
            .node
            .with_messaging(|m| m.create_group("friends"))
            .unwrap()
            .unwrap();
        for (i, m) in members.iter().enumerate() {
            a.node
                .with_messaging(|x| x.add_member(&g, &m.me))
                .unwrap()
                .unwrap();
            a.node.flush_outbox().unwrap();
            // Wait until every member so far sees the new membership.
            for earlier in &members[..=i] {
                eventually(CONVERGE, "membership delivered", || {
                    earlier
                        .node
                        .with_messaging(|x| x.group_info(&g))
                        .ok()
                        .and_then(Result::ok)
                        .is_some_and(|info| info.members.len() == i + 2)
                })
                .await;
            }
        }
        a.node
            .with_messaging(|m| m.encrypt_group(&g, "hello group"))
            .unwrap()
            .unwrap();
        a.node.flush_outbox().unwrap();
        for m in &members {
            eventually(CONVERGE, "member reads the group message", || {
                texts(m, Conversation::Group(g)).contains(&"hello group".to_string())
            })
            .await;
        }
        for p in [&mut r, &mut a] {
            p.stop().await;
        }
        for m in &mut members {
            m.stop().await;
        }
        for p in std::iter::once(&r)
            .chain(std::iter::once(&a))
            .chain(members.iter())
        {
            assert_nowhere(p.dir.path(), b"hello group");
        }
    })
    .await;
}
