//! Sync tests: real SQLite stores in temp dirs, nodes connected by
//! in-memory duplex pipes (the engine is transport-agnostic).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::frame::write_frame;
use super::messages::{Hello, Message, VERSION, hello_signed_bytes};
use super::*;
use crate::events::NodeEvent;
use crate::feed::Payload;
use crate::identity::at_rest::InMemoryKeyProvider;
use crate::identity::id::{AuthorId, EntryId};
use crate::node::{IncomingEntry, Node};
use crate::store::replication::{self, FeedState};
use crate::store::testutil::Author;

struct Peer {
    _dir: TempDir,
    node: Arc<Node>,
    engine: SyncEngine,
    name: String,
}

fn peer_with(name: &str, config: SyncConfig) -> Peer {
    let (dir, node) = crate::store::testutil::node();
    let node = Arc::new(node);
    Peer {
        _dir: dir,
        engine: SyncEngine::new(node.clone(), config),
        node,
        name: name.into(),
    }
}

fn peer(name: &str) -> Peer {
    peer_with(name, SyncConfig::default())
}

type Session = JoinHandle<Result<SessionSummary, SyncError>>;

fn session<S>(from: &Peer, to: &Peer, stream: S, initiator: bool) -> Session
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let engine = from.engine.clone();
    let (me, them) = (from.name.clone(), to.name.clone());
    tokio::spawn(async move { engine.run_session(me, them, stream, initiator).await })
}

fn connect(a: &Peer, b: &Peer) -> (Session, Session) {
    let (x, y) = tokio::io::duplex(64 * 1024);
    (
        session(a, b, x.compat(), true),
        session(b, a, y.compat(), false),
    )
}

/// Ends both sides of a connection and returns their summaries.
async fn hang_up(a: &Peer, b: &Peer, s: (Session, Session)) -> (SessionSummary, SessionSummary) {
    a.engine.disconnect(&b.name);
    let ra = s.0.await.unwrap().unwrap();
    let rb = s.1.await.unwrap().unwrap();
    (ra, rb)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn held(node: &Node, author: &AuthorId) -> FeedState {
    node.store()
        .read(|c| replication::feed_state(c, author))
        .unwrap()
}

fn caught_up(p: &Peer, other: &Peer) -> bool {
    p.engine
        .status()
        .iter()
        .any(|s| s.peer == other.name && s.connected && s.caught_up && s.entries_behind == 0)
}

fn count(node: &Node, sql: &str, id: &[u8]) -> i64 {
    node.store()
        .read(|c| Ok(c.query_row(sql, [id], |r| r.get(0))?))
        .unwrap()
}

fn me(p: &Peer) -> AuthorId {
    p.node.whoami().unwrap()
}

/// A foreign feed of `n` posts, as ingest items.
fn feed(author: &mut Author, n: usize) -> Vec<IncomingEntry> {
    (0..n)
        .map(|i| author.post(&format!("post {i}")).1)
        .collect()
}

#[tokio::test]
async fn catch_up_both_ways_then_live_push() {
    let (a, b) = (peer("a"), peer("b"));
    for i in 0..3 {
        a.node.post(&format!("a{i}"), None).unwrap();
    }
    b.node.post("b0", None).unwrap();
    a.node.follow(me(&b)).unwrap();
    b.node.follow(me(&a)).unwrap();
    let s = connect(&a, &b);
    eventually("both caught up", || {
        held(&b.node, &me(&a)) == held(&a.node, &me(&a))
            && held(&a.node, &me(&b)) == held(&b.node, &me(&b))
    })
    .await;
    eventually("status", || caught_up(&a, &b) && caught_up(&b, &a)).await;
    let st = a.engine.status();
    assert_eq!(st[0].author, Some(me(&b)));
    // Live: a post on A appears on B without reconnecting.
    let id = a.node.post("live!", None).unwrap();
    eventually("live push", || {
        count(
            &b.node,
            "SELECT COUNT(*) FROM entries WHERE id = ?1",
            id.as_bytes(),
        ) == 1
    })
    .await;
    let t = b
        .node
        .timeline(crate::node::PageRequest::first(10))
        .unwrap();
    assert!(t.items.iter().any(|p| p.text.as_deref() == Some("live!")));
    let (sa, sb) = hang_up(&a, &b, s).await;
    assert_eq!(sa.duplicates_received + sb.duplicates_received, 0);
    assert_eq!(sa.entries_sent, sb.entries_received);
    assert_eq!(sb.entries_sent, sa.entries_received);
}

#[tokio::test]
async fn two_hop_scope_holds_and_blocked_feeds_are_never_stored() {
    let (s, n) = (peer("server"), peer("fresh"));
    let (mut fa, mut fb, mut fc, mut fx) = (
        Author::new(1),
        Author::new(2),
        Author::new(3),
        Author::new(4),
    );
    // fa -> fb -> fc (third hop from n); fa -> fx (n blocks fx).
    let mut batch = vec![
        fa.next(&Payload::Follow(fb.id())).1,
        fa.next(&Payload::Follow(fx.id())).1,
        fb.next(&Payload::Follow(fc.id())).1,
    ];
    batch.extend(feed(&mut fa, 3));
    batch.extend(feed(&mut fb, 3));
    batch.extend(feed(&mut fc, 3));
    batch.extend(feed(&mut fx, 3));
    s.node.ingest(batch).unwrap();
    n.node.follow(fa.id()).unwrap();
    n.node.block(fx.id()).unwrap();
    let conn = connect(&n, &s);
    eventually("two hops fetched", || {
        held(&n.node, &fa.id()).latest == 5 && held(&n.node, &fb.id()).latest == 4
    })
    .await;
    eventually("caught up", || caught_up(&n, &s)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held(&n.node, &fc.id()).latest, 0, "third hop fetched");
    assert_eq!(held(&n.node, &fx.id()).latest, 0, "blocked feed stored");
    let scope = n.engine.scope().unwrap();
    assert!(scope.contains(&fb.id()) && !scope.contains(&fc.id()) && !scope.contains(&fx.id()));
    hang_up(&n, &s, conn).await;
}

#[tokio::test]
async fn newest_entries_arrive_first_then_history_backfills_verified() {
    let (s, n) = (peer("server"), peer("fresh"));
    let mut fa = Author::new(7);
    s.node.ingest(feed(&mut fa, 120)).unwrap();
    n.node.follow(fa.id()).unwrap();
    let mut events = n.node.subscribe();
    let conn = connect(&n, &s);
    let mut seqs = Vec::new();
    while seqs.len() < 120 {
        let ev = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let NodeEvent::EntryAdded { author, seq, .. } = ev
            && author == fa.id()
        {
            seqs.push(seq);
        }
    }
    // The first batch holds the 50 newest, newest first; history follows.
    assert_eq!(seqs[..50], (71..=120).rev().collect::<Vec<u64>>()[..]);
    assert_eq!(seqs, (1..=120).rev().collect::<Vec<u64>>());
    let st = held(&n.node, &fa.id());
    assert_eq!((st.low, st.latest), (1, 120), "feed complete");
    // The chain verifies end to end.
    let entries = n
        .node
        .store()
        .read(|c| replication::entries_range(c, &fa.id(), 1, 120))
        .unwrap();
    for w in entries.windows(2) {
        let prev = crate::feed::Entry::decode(&w[0].1.entry_bytes).unwrap();
        let next = crate::feed::Entry::decode(&w[1].1.entry_bytes).unwrap();
        crate::feed::validate::check_successor(&prev, &prev.id(), &next).unwrap();
    }
    hang_up(&n, &s, conn).await;
}

#[tokio::test]
async fn resume_after_reconnect_sends_nothing_twice() {
    let (a, b) = (peer("a"), peer("b"));
    for i in 0..10 {
        a.node.post(&format!("a{i}"), None).unwrap();
    }
    b.node.follow(me(&a)).unwrap();
    let conn = connect(&a, &b);
    let total = held(&a.node, &me(&a)).latest;
    eventually("caught up", || held(&b.node, &me(&a)).latest == total).await;
    eventually("done", || caught_up(&b, &a)).await;
    let (sa, sb) = hang_up(&a, &b, conn).await;
    assert_eq!(sa.entries_sent, total);
    assert_eq!(sb.entries_received, total);
    assert_eq!(sb.duplicates_received, 0);

    a.node.post("while apart 1", None).unwrap();
    a.node.post("while apart 2", None).unwrap();
    let conn = connect(&a, &b);
    eventually("resumed", || held(&b.node, &me(&a)).latest == total + 2).await;
    eventually("done", || caught_up(&b, &a)).await;
    let (sa, sb) = hang_up(&a, &b, conn).await;
    assert_eq!(sa.entries_sent, 2, "only the two new entries are sent");
    assert_eq!((sb.entries_received, sb.duplicates_received), (2, 0));
}

#[tokio::test]
async fn deletes_propagate_and_deleted_payloads_are_never_served() {
    let (a, b, c) = (peer("a"), peer("b"), peer("c"));
    let target = a.node.post("regret this", None).unwrap();
    b.node.follow(me(&a)).unwrap();
    c.node.follow(me(&a)).unwrap();
    let payload_sql = "SELECT COUNT(*) FROM entries WHERE id = ?1 AND payload IS NOT NULL";
    let conn = connect(&a, &b);
    eventually("b has the post", || {
        count(&b.node, payload_sql, target.as_bytes()) == 1
    })
    .await;
    a.node.delete(target).unwrap();
    eventually("payload gone on b", || {
        count(&b.node, payload_sql, target.as_bytes()) == 0
            && held(&b.node, &me(&a)) == held(&a.node, &me(&a))
    })
    .await;
    hang_up(&a, &b, conn).await;
    // C syncs from B only: the entry comes without its payload.
    let conn = connect(&c, &b);
    eventually("c caught up", || {
        held(&c.node, &me(&a)) == held(&a.node, &me(&a))
    })
    .await;
    assert_eq!(
        count(
            &c.node,
            "SELECT COUNT(*) FROM entries WHERE id = ?1",
            target.as_bytes()
        ),
        1
    );
    assert_eq!(count(&c.node, payload_sql, target.as_bytes()), 0);
    assert!(
        c.node
            .search("regret", crate::node::PageRequest::first(5))
            .unwrap()
            .items
            .is_empty()
    );
    hang_up(&c, &b, conn).await;
}

#[tokio::test]
async fn fork_evidence_replicates() {
    let (s, n) = (peer("server"), peer("fresh"));
    let mut f = Author::new(9);
    let first = f.post("one").1;
    let e1 = crate::feed::Entry::decode(&first.entry_bytes).unwrap();
    let two = f.post("two").1;
    let payload = crate::store::testutil::post("other two").encode().unwrap();
    let fork = crate::feed::Entry::sign(&f.key, 2, Some(e1.id()), f.ts + 5, &payload);
    s.node.ingest(vec![first, two]).unwrap();
    let r = s
        .node
        .ingest(vec![IncomingEntry {
            entry_bytes: fork.encode(),
            payload: Some(payload),
        }])
        .unwrap();
    assert_eq!(r.forks, 1);
    n.node.follow(f.id()).unwrap();
    let conn = connect(&n, &s);
    eventually("fork evidence on n", || {
        count(
            &n.node,
            "SELECT COUNT(*) FROM forks WHERE author = ?1",
            f.id().as_bytes(),
        ) == 1
    })
    .await;
    assert!(n.node.profile(f.id()).unwrap().forked);
    hang_up(&n, &s, conn).await;
}

/// A hand-driven peer: completes the handshake as `evil`, then lets the
/// test write raw frames.
async fn evil_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    evil: &Author,
    me: &str,
    them: &str,
) {
    let mut hello = Hello {
        version: VERSION,
        author: evil.id(),
        nonce: [3; 16],
        max_frame: DEFAULT_MAX_FRAME as u32,
        signature: [0; 64],
    };
    use ed25519_dalek::Signer;
    hello.signature = evil
        .key
        .sign(&hello_signed_bytes(&hello, me, them))
        .to_bytes();
    write_frame(stream, &Message::Hello(hello).encode())
        .await
        .unwrap();
    let summary = Message::Summary {
        count: 0,
        digest: [0; 32],
    };
    write_frame(stream, &summary.encode()).await.unwrap();
}

#[tokio::test]
async fn bad_peers_get_typed_errors_store_nothing_and_honest_sessions_go_on() {
    let (n, honest) = (peer("victim"), peer("honest"));
    let (mut fa, mut fb) = (Author::new(11), Author::new(12));
    honest.node.ingest(feed(&mut fb, 30)).unwrap();
    n.node.follow(fa.id()).unwrap();
    n.node.follow(fb.id()).unwrap();
    let good = connect(&n, &honest);
    let fa_id = fa.id();

    // 1. Oversized frame header.
    let (x, y) = tokio::io::duplex(64 * 1024);
    let evil = peer("evil1");
    let victim = session(&n, &evil, x.compat(), false);
    let mut y = y.compat();
    futures::AsyncWriteExt::write_all(&mut y, &(64 * 1024 * 1024u32).to_be_bytes())
        .await
        .unwrap();
    let err = victim.await.unwrap().unwrap_err();
    assert!(matches!(err, SyncError::Oversized { .. }), "{err:?}");
    assert_eq!(err.penalty(), Penalty::Disconnect);

    // 2. Malformed frame (unknown message type) after a valid handshake.
    let bad_author = Author::new(66);
    let (x, y) = tokio::io::duplex(64 * 1024);
    let victim = session(&n, &peer("evil2"), x.compat(), false);
    let mut y = y.compat();
    evil_handshake(&mut y, &bad_author, "evil2", "victim").await;
    write_frame(&mut y, &[0x42, 1, 2, 3]).await.unwrap();
    let err = victim.await.unwrap().unwrap_err();
    assert!(matches!(err, SyncError::Malformed(_)), "{err:?}");

    // 3. A forged entry (bad signature) of a feed the victim wants.
    let (x, y) = tokio::io::duplex(64 * 1024);
    let victim = session(&n, &peer("evil3"), x.compat(), false);
    let mut y = y.compat();
    evil_handshake(&mut y, &bad_author, "evil3", "victim").await;
    let good_one = fa.post("real").1;
    let mut forged = fa.post("forged").1;
    forged.entry_bytes[170] ^= 1;
    let msg = Message::Entries(vec![good_one, forged]);
    write_frame(&mut y, &msg.encode()).await.unwrap();
    let err = victim.await.unwrap().unwrap_err();
    assert!(matches!(err, SyncError::InvalidEntries(_)), "{err:?}");
    assert_eq!(err.penalty(), Penalty::Ban);
    assert_eq!(
        held(&n.node, &fa_id).latest,
        0,
        "part of a rejected batch stored"
    );

    // 4. A Hello signed for another connection is refused.
    let (x, y) = tokio::io::duplex(64 * 1024);
    let victim = session(&n, &peer("evil4"), x.compat(), false);
    let mut y = y.compat();
    evil_handshake(&mut y, &bad_author, "someone-else", "victim").await;
    let err = victim.await.unwrap().unwrap_err();
    assert!(matches!(err, SyncError::BadHello(_)), "{err:?}");

    // Misbehaving peers are backed off.
    let (x, _y) = tokio::io::duplex(1024);
    let again = n
        .engine
        .run_session("victim".into(), "evil3".into(), x.compat(), false)
        .await;
    assert!(matches!(again, Err(SyncError::BackedOff { .. })));

    // Meanwhile the honest session completed.
    eventually("honest catch-up", || held(&n.node, &fb.id()).latest == 30).await;
    hang_up(&n, &honest, good).await;
}

#[tokio::test]
async fn a_flooding_peer_is_cut_off() {
    let mut config = SyncConfig::default();
    config.limits.entries_burst = 10;
    config.limits.entries_per_sec = 1;
    let n = peer_with("small", config);
    let s = peer("big");
    let mut fa = Author::new(21);
    s.node.ingest(feed(&mut fa, 40)).unwrap();
    // The peer announces the feed in its clock (it hosts it).
    s.engine.host_feed(fa.id()).unwrap();
    n.node.follow(fa.id()).unwrap();
    let (on_n, on_s) = connect(&n, &s);
    // A requested catch-up (planned, backed by the peer's clock) is not a
    // flood, however tight the limit.
    eventually("catch-up despite the limit", || {
        held(&n.node, &fa.id()).latest == 40
    })
    .await;
    // 40 unrequested (live) entries at once are.
    s.node.ingest(feed(&mut fa, 40)).unwrap();
    let err = on_n.await.unwrap().unwrap_err();
    assert!(matches!(err, SyncError::Flood(_)), "{err:?}");
    let _ = on_s.await;
    // Batches are atomic: whole batches or nothing.
    assert_eq!(held(&n.node, &fa.id()).latest, 40);
}

/// Counts the bytes crossing a stream in both directions.
struct Counting<S> {
    inner: S,
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.read.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
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

/// Connects `a` and `b` through a byte counter; returns total bytes.
async fn measured_session(a: &Peer, b: &Peer, wait: impl Fn() -> bool) -> (u64, u64) {
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (read, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let counted = Counting {
        inner: x.compat(),
        read: read.clone(),
        written: written.clone(),
    };
    let s = (
        session(a, b, counted, true),
        session(b, a, y.compat(), false),
    );
    eventually("session settled", || {
        caught_up(a, b) && caught_up(b, a) && wait()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    hang_up(a, b, s).await;
    (
        written.load(Ordering::Relaxed),
        read.load(Ordering::Relaxed),
    )
}

#[tokio::test]
async fn a_no_op_sync_of_1000_current_feeds_costs_under_16_kb() {
    let (a, b) = (peer("a"), peer("b"));
    let mut authors: Vec<Author> = (0..1000u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            seed[31] = 0x5a;
            Author {
                key: ed25519_dalek::SigningKey::from_bytes(&seed),
                last: None,
                ts: crate::store::now_ms() - 3_600_000,
            }
        })
        .collect();
    let batch: Vec<IncomingEntry> = authors
        .iter_mut()
        .flat_map(|au| {
            let mut v = feed(au, 1);
            v.extend(feed(au, 1));
            v
        })
        .collect();
    for p in [&a, &b] {
        p.node.ingest(batch.clone()).unwrap();
        p.node
            .store()
            .write(|tx| {
                for au in &authors {
                    replication::host_feed(tx, &au.id(), 0)?;
                }
                Ok(())
            })
            .unwrap();
    }
    a.node.follow(me(&b)).unwrap();
    b.node.follow(me(&a)).unwrap();
    // First session: A and B exchange their own feeds.
    let first = connect(&a, &b);
    eventually("own feeds exchanged", || {
        held(&b.node, &me(&a)) == held(&a.node, &me(&a))
            && held(&a.node, &me(&b)) == held(&b.node, &me(&b))
    })
    .await;
    hang_up(&a, &b, first).await;
    assert_eq!(a.engine.scope().unwrap().len(), 1002);

    // No-op: identical scopes and clocks, the digests match.
    let (out, inn) = measured_session(&a, &b, || true).await;
    eprintln!("no-op sync of 1002 feeds: {out} bytes out, {inn} bytes in");
    assert!(out + inn <= 16 * 1024, "{out} + {inn} bytes");

    // Nearly no-op: one feed differs, so full compact clocks are exchanged.
    let id = a.node.post("one more", None).unwrap();
    let (out, inn) = measured_session(&a, &b, || {
        count(
            &b.node,
            "SELECT COUNT(*) FROM entries WHERE id = ?1",
            id.as_bytes(),
        ) == 1
    })
    .await;
    eprintln!("clock sync of 1002 feeds, one new entry: {out} bytes out, {inn} bytes in");
    assert!(out <= 16 * 1024 && inn <= 16 * 1024, "{out} / {inn} bytes");
}

#[tokio::test]
async fn a_no_op_sync_of_1000_current_feeds_with_differing_scopes_costs_under_16_kb() {
    // As in reality: both hold the same 1,000 current feeds, and each also
    // has its own feed, which the other does not replicate. The Summaries
    // differ; the bucket digests narrow the difference to two buckets.
    let (a, b) = (peer("a"), peer("b"));
    let mut authors: Vec<Author> = (0..1000u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            seed[31] = 0x5b;
            Author {
                key: ed25519_dalek::SigningKey::from_bytes(&seed),
                last: None,
                ts: crate::store::now_ms() - 3_600_000,
            }
        })
        .collect();
    let batch: Vec<IncomingEntry> = authors.iter_mut().flat_map(|au| feed(au, 3)).collect();
    for p in [&a, &b] {
        p.node.ingest(batch.clone()).unwrap();
        p.node
            .store()
            .write(|tx| {
                for au in &authors {
                    replication::host_feed(tx, &au.id(), 0)?;
                }
                Ok(())
            })
            .unwrap();
        p.node.post("my own feed", None).unwrap();
    }
    let (sa, sb) = (a.engine.scope().unwrap(), b.engine.scope().unwrap());
    assert_eq!((sa.len(), sb.len()), (1001, 1001));
    assert_ne!(sa, sb);
    let (out, inn) = measured_session(&a, &b, || true).await;
    eprintln!("no-op sync of 1001 feeds, differing scopes: {out} bytes out, {inn} bytes in");
    assert!(out + inn <= 16 * 1024, "{out} + {inn} bytes");
    // Nothing was sent: neither asked for the other's own feed.
    assert_eq!(held(&a.node, &me(&b)).latest, 0);
    for au in &authors {
        assert_eq!(held(&b.node, &au.id()), held(&a.node, &au.id()));
    }

    // One feed changes on one side: still only its bucket is announced,
    // and the entry arrives.
    let extra = feed(&mut authors[7], 1);
    a.node.ingest(extra.clone()).unwrap();
    let (out, inn) = measured_session(&a, &b, || held(&b.node, &authors[7].id()).latest == 4).await;
    eprintln!("1001 feeds, differing scopes, one new entry: {out} bytes out, {inn} bytes in");
    assert!(out + inn <= 16 * 1024, "{out} + {inn} bytes");
}

#[tokio::test]
async fn external_writes_become_events_and_are_pushed_live() {
    let keys = Arc::new(InMemoryKeyProvider::random().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::open(dir.path(), keys.clone()).unwrap());
    node.create_identity(None).unwrap();
    let a = Peer {
        engine: SyncEngine::new(node.clone(), SyncConfig::default()),
        node,
        name: "serve".into(),
        _dir: dir,
    };
    let b = peer("phone");
    b.node.follow(me(&a)).unwrap();
    let _watch = a.engine.watch_external_writes().unwrap();
    let conn = connect(&a, &b);
    eventually("caught up", || caught_up(&b, &a)).await;
    let mut events = a.node.subscribe();
    // In-process writes are reported once, not again by the watcher.
    let local = a.node.post("in process", None).unwrap();
    // "The CLI": another Node (own connections) on the same data dir.
    let cli = Node::open(a.node.data_dir(), keys).unwrap();
    let started = Instant::now();
    let external = cli.post("from the cli", None).unwrap();
    let mut seen: Vec<EntryId> = Vec::new();
    while !seen.contains(&external) {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let NodeEvent::EntryAdded { id, own, .. } = ev {
            assert!(own);
            seen.push(id);
        }
    }
    eprintln!("external write reported after {:?}", started.elapsed());
    eventually("pushed to the phone", || {
        count(
            &b.node,
            "SELECT COUNT(*) FROM entries WHERE id = ?1",
            external.as_bytes(),
        ) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(NodeEvent::EntryAdded { id, .. }) = events.try_recv() {
        seen.push(id);
    }
    assert_eq!(seen.iter().filter(|i| **i == local).count(), 1, "{seen:?}");
    assert_eq!(seen.iter().filter(|i| **i == external).count(), 1);
    hang_up(&a, &b, conn).await;
}

#[tokio::test]
async fn store_rules_for_heads_and_backfill() {
    let (_d, node) = crate::store::testutil::node();
    let mut fa = Author::new(31);
    let all = feed(&mut fa, 6);
    // Strict ingest never accepts a head.
    assert!(matches!(
        node.ingest(vec![all[4].clone()]),
        Err(crate::Error::BatchRejected { .. })
    ));
    // Sync accepts 5 as a tentative head, then 4 and 3 backwards.
    let out = node
        .ingest_from_peer(&[all[4].clone(), all[3].clone(), all[2].clone()])
        .unwrap();
    assert_eq!(out.report.accepted, 3);
    let st = held(&node, &fa.id());
    assert_eq!((st.low, st.latest), (3, 5));
    // Forward appends keep the old rules; backfill works in strict mode.
    assert_eq!(
        node.ingest(vec![all[5].clone(), all[1].clone()])
            .unwrap()
            .accepted,
        2
    );
    // An entry below the suffix that does not chain is refused.
    let mut other = Author::new(31);
    other.ts += 7;
    let unrelated = other.post("not the real first").1;
    assert!(matches!(
        node.ingest(vec![unrelated.clone()]),
        Err(crate::Error::BatchRejected { .. })
    ));
    // ...and skipped (not stored) in sync mode.
    let out = node.ingest_from_peer(&[unrelated]).unwrap();
    assert_eq!((out.report.accepted, out.skipped.len()), (0, 1));
    assert_eq!(node.ingest(vec![all[0].clone()]).unwrap().accepted, 1);
    let st = held(&node, &fa.id());
    assert_eq!((st.low, st.latest), (1, 6));
    // A fork inside the held range is still detected.
    let e3 = crate::feed::Entry::decode(&all[2].entry_bytes).unwrap();
    let payload = crate::store::testutil::post("x").encode().unwrap();
    let fork = crate::feed::Entry::sign(&fa.key, 4, Some(e3.id()), fa.ts, &payload);
    let r = node
        .ingest(vec![IncomingEntry {
            entry_bytes: fork.encode(),
            payload: None,
        }])
        .unwrap();
    assert_eq!(r.forks, 1);
}
