//! Kademlia record exchange between live in-process nodes on 127.0.0.1.
//!
//! Proves that a signed reach record published with [`Network::announce`]
//! by one node is found with [`Network::lookup`] by another node that only
//! shares a DHT server with it (and names the publisher's peer id and
//! listen address); that looking up an author who never announced ends
//! with `Ok(None)` in bounded time; and that a DHT server refuses to store
//! what [`records::validate_record`] rejects (a record signed by someone
//! other than the author its key names, a tampered copy of a genuine
//! record, a value under a foreign key), while it does store a genuine
//! record sent over the same raw path.
//!
//! Node A is configured as a public node (`relay_server`), which is what
//! puts its Kademlia behaviour in server mode: on loopback nobody has a
//! confirmed external address, so plain nodes stay DHT clients and would
//! answer no DHT requests at all.
//!
//! The refusal checks speak the Kademlia wire protocol directly (through
//! [`Network::open_raw_stream`]): a node's own `lookup` validates what it
//! receives, so only a raw `GET_VALUE` shows what the server really stored.

mod net_util;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{AsyncReadExt, AsyncWriteExt};
use net_util::{Peer, bounded};
use starling_core::AuthorId;
use starling_core::identity::Identity;
use starling_core::net::records::{self, ReachRecord};
use starling_core::net::{NetConfig, Network, PeerId};

const LIMIT: Duration = Duration::from_secs(60);
/// How long announce + lookup may be retried while routing tables fill.
const CONVERGE: Duration = Duration::from_secs(20);
/// Bound on one lookup that is expected to find nothing.
const MISS_BOUND: Duration = Duration::from_secs(10);
/// Bound on one raw request/response exchange.
const RAW_BOUND: Duration = Duration::from_secs(5);
/// Kademlia protocol of Starling nodes (core/src/net/behaviour.rs).
const KAD_PROTOCOL: &str = "/starling/kad/1.0.0";
/// Kademlia message types (dht.proto).
const PUT_VALUE: u64 = 0;
const GET_VALUE: u64 = 1;

/// Loopback, no sync sessions (only the DHT is under test).
fn config() -> NetConfig {
    NetConfig {
        sync: false,
        redial_known_peers: false,
        ..NetConfig::loopback()
    }
}

/// A public node: its Kademlia runs in server mode.
fn server_config() -> NetConfig {
    NetConfig {
        relay_server: true,
        ..config()
    }
}

/// Three nodes: A (DHT server), B and C (clients) both connected to A only.
async fn three_nodes() -> (Peer, Peer, Peer) {
    let mut a = Peer::new("A");
    let mut b = Peer::new("B");
    let mut c = Peer::new("C");
    a.start(Some(server_config())).await;
    b.start(Some(config())).await;
    c.start(Some(config())).await;
    b.dial(&a).await;
    c.dial(&a).await;
    (a, b, c)
}

/// `publisher` announces and `seeker` looks its author up, both retried
/// until the record is found or [`CONVERGE`] passes (routing tables fill
/// only after identify has run on the new connections).
async fn announce_until_found(publisher: &Peer, seeker: &Peer) -> ReachRecord {
    let start = Instant::now();
    loop {
        publisher.net().announce().expect("announce");
        let left = CONVERGE.saturating_sub(start.elapsed());
        if let Ok(Ok(Some(rec))) =
            tokio::time::timeout(left, seeker.net().lookup(publisher.me)).await
        {
            return rec;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "the announced record was not found within {CONVERGE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Looks `author` up from `net` until found or [`CONVERGE`] passes.
async fn lookup_until_found(net: &Network, author: AuthorId) -> ReachRecord {
    let start = Instant::now();
    loop {
        let left = CONVERGE.saturating_sub(start.elapsed());
        if let Ok(Ok(Some(rec))) = tokio::time::timeout(left, net.lookup(author)).await {
            return rec;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "the record was not found within {CONVERGE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A lookup that must end, within [`MISS_BOUND`], with `Ok(None)`.
async fn assert_not_found(net: &Network, author: AuthorId, what: &str) {
    let r = tokio::time::timeout(MISS_BOUND, net.lookup(author))
        .await
        .unwrap_or_else(|_| panic!("lookup of {what} did not end within {MISS_BOUND:?}"));
    match r {
        Ok(None) => {}
        other => panic!("lookup of {what}: expected Ok(None), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_reach_record_is_found_by_another_node_and_unknown_authors_are_not() {
    bounded(LIMIT, async {
        let (mut a, mut b, mut c) = three_nodes().await;

        let rec = announce_until_found(&b, &c).await;
        assert_eq!(rec.author, b.me, "record of the wrong author");
        assert_eq!(rec.peer, b.net().peer_id(), "record names the wrong peer");
        // `listen_addrs` ends each address in `/p2p/<peer>`; records do not.
        let b_peer = b.net().peer_id();
        assert!(
            rec.addrs
                .iter()
                .any(|a| a.clone().with_p2p(b_peer).ok() == Some(b.addr())),
            "record {:?} lacks B's listen address {}",
            rec.addrs,
            b.addr()
        );
        let age = now_ms().saturating_sub(rec.issued_at_ms);
        assert!(age < CONVERGE.as_millis() as u64 + 5_000, "stale record");

        // A has it stored too (B's PUT went to the server, not only B's store).
        let stored = raw_get(c.net(), a.net().peer_id(), &records::record_key(&b.me)).await;
        assert!(stored.is_some(), "the DHT server does not hold B's record");

        // Someone who never announced: a clean miss, not an error or a hang.
        let stranger = Identity::generate().expect("identity").author_id();
        assert_not_found(c.net(), stranger, "an author who never announced").await;
        // C itself never announced either (and B can look that up as well).
        assert_not_found(b.net(), c.me, "C, who never announced").await;

        for p in [&mut a, &mut b, &mut c] {
            p.stop().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_server_stores_only_records_that_validate() {
    bounded(LIMIT, async {
        let (mut a, mut b, mut c) = three_nodes().await;
        let server = a.net().peer_id();
        let now = now_ms();
        let c_addrs = vec![c.addr()];

        // Control: a genuine record of a fresh author, sent over the raw
        // path, is stored and served (so the refusals below mean something).
        let w = Identity::generate().expect("identity");
        let w_key = records::record_key(&w.author_id());
        let w_value = records::sign_record(&w, c.net().peer_id(), &c_addrs, now);
        raw_put(c.net(), server, &w_key, &w_value).await;
        assert_eq!(
            raw_get(c.net(), server, &w_key).await.as_deref(),
            Some(w_value.as_slice()),
            "a genuine record sent raw was not stored"
        );
        // (Retried: B's routing table learns A once identify has run.)
        let found = lookup_until_found(b.net(), w.author_id()).await;
        assert_eq!(
            (found.author, found.peer),
            (w.author_id(), c.net().peer_id()),
            "B does not find the genuine record"
        );

        // Forged: signed by X, but stored under Z's key.
        let x = Identity::generate().expect("identity");
        let z = Identity::generate().expect("identity").author_id();
        let z_key = records::record_key(&z);
        let forged = records::sign_record(&x, c.net().peer_id(), &c_addrs, now);
        raw_put(c.net(), server, &z_key, &forged).await;
        assert_eq!(
            raw_get(c.net(), server, &z_key).await,
            None,
            "the server stored a record signed by another author"
        );
        assert_not_found(b.net(), z, "an author with only a forged record").await;

        // Tampered: a genuine record with its issue time changed by one
        // (the signature no longer matches) must not replace the genuine one.
        let mut tampered = w_value.clone();
        // version (1) + author (32) + the last byte of issued_at_ms (8).
        tampered[1 + 32 + 7] ^= 1;
        raw_put(c.net(), server, &w_key, &tampered).await;
        assert_eq!(
            raw_get(c.net(), server, &w_key).await.as_deref(),
            Some(w_value.as_slice()),
            "a tampered copy replaced the genuine record"
        );

        // Foreign key: the DHT cannot be used to park arbitrary data.
        let foreign = b"/other/key".to_vec();
        raw_put(c.net(), server, &foreign, b"some parked data").await;
        assert_eq!(
            raw_get(c.net(), server, &foreign).await,
            None,
            "the server stored a value under a foreign key"
        );

        for p in [&mut a, &mut b, &mut c] {
            p.stop().await;
        }
    })
    .await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

// --- A minimal Kademlia client (dht.proto, unsigned-varint framing). ---

/// Sends `PUT_VALUE key=value` to `server` and waits for its echo, which the
/// server sends after it has decided whether to store the record.
async fn raw_put(from: &Network, server: PeerId, key: &[u8], value: &[u8]) {
    let reply = raw_request(from, server, &kad_message(PUT_VALUE, key, Some(value))).await;
    assert_eq!(message_type(&reply), PUT_VALUE, "unexpected PUT reply");
}

/// Sends `GET_VALUE key` to `server`; the value of the record it holds, if any.
async fn raw_get(from: &Network, server: PeerId, key: &[u8]) -> Option<Vec<u8>> {
    let reply = raw_request(from, server, &kad_message(GET_VALUE, key, None)).await;
    assert_eq!(message_type(&reply), GET_VALUE, "unexpected GET reply");
    let record = field(&reply, 3)?;
    assert_eq!(
        field(record, 1),
        Some(key),
        "the server answered with a record under another key"
    );
    field(record, 2).map(<[u8]>::to_vec)
}

/// One request on a fresh Kademlia stream, bounded by [`RAW_BOUND`].
async fn raw_request(from: &Network, server: PeerId, msg: &[u8]) -> Vec<u8> {
    let exchange = async {
        let mut s = from
            .open_raw_stream(server, KAD_PROTOCOL)
            .await
            .expect("open a Kademlia stream to the server");
        let mut framed = Vec::new();
        varint(msg.len() as u64, &mut framed);
        framed.extend_from_slice(msg);
        s.write_all(&framed).await.expect("send request");
        s.flush().await.expect("flush request");
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.expect("read reply length");
            len |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            assert!(shift < 64, "bad varint");
        }
        let mut buf = vec![0u8; usize::try_from(len).expect("length")];
        s.read_exact(&mut buf).await.expect("read reply");
        buf
    };
    tokio::time::timeout(RAW_BOUND, exchange)
        .await
        .expect("the server did not answer a raw Kademlia request in time")
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn bytes_field(tag: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint((tag << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `Message { type, key, record: Record { key, value } }`.
fn kad_message(kind: u64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut m = Vec::new();
    varint(1 << 3, &mut m);
    varint(kind, &mut m);
    bytes_field(2, key, &mut m);
    if let Some(value) = value {
        let mut record = Vec::new();
        bytes_field(1, key, &mut record);
        bytes_field(2, value, &mut record);
        bytes_field(3, &record, &mut m);
    }
    m
}

/// Reads a varint at `*pos`, advancing it.
fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos).expect("truncated varint");
        *pos += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return n;
        }
        shift += 7;
        assert!(shift < 64, "bad varint");
    }
}

/// Every field of a protobuf message: (tag, varint value or bytes).
fn fields(buf: &[u8]) -> Vec<(u64, Result<u64, &[u8]>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let head = read_varint(buf, &mut pos);
        let (tag, wire) = (head >> 3, head & 7);
        match wire {
            0 => out.push((tag, Ok(read_varint(buf, &mut pos)))),
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)).expect("length");
                let end = pos.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.expect("truncated field");
                out.push((tag, Err(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            w => panic!("unexpected protobuf wire type {w}"),
        }
    }
    out
}

/// The first length-delimited field `tag`.
fn field(buf: &[u8], tag: u64) -> Option<&[u8]> {
    fields(buf)
        .into_iter()
        .find_map(|(t, v)| (t == tag).then_some(v.err()).flatten())
}

/// The message type (absent on the wire means 0, `PUT_VALUE`).
fn message_type(buf: &[u8]) -> u64 {
    fields(buf)
        .into_iter()
        .find_map(|(t, v)| (t == 1).then_some(v.ok()).flatten())
        .unwrap_or(PUT_VALUE)
}
