//! Network sync benchmarks (a bench binary: `cargo bench -p starling-core
//! --bench sync`). Each figure is printed beside a baseline measured in the
//! same run on the same machine:
//!
//! 1. replication of 100,000 entries by 1,000 authors from one node to a
//!    fresh one over loopback TCP, in entries/s, vs the single-core Ed25519
//!    batch-verification rate of the same entries (target: >= 50 %);
//! 2. live delivery latency, post on A -> `EntryAdded` on B, p50/p99 over
//!    1,000 posts at 100/s (targets 5 ms / 25 ms), vs the local
//!    publish -> event latency on A;
//! 3. bytes on the wire of a no-op sync of 1,000 current feeds (target
//!    <= 16 KB), vs the 40 KB a naive (author, seq) list would take;
//! 4. peak RSS growth of the receiving node during the 100k replication
//!    (target <= 16 MB). The receiver runs as a child process (this binary
//!    re-executed with `__receiver`) so its RSS is its own.
//!
//! `STARLING_BENCH_ENTRIES` / `STARLING_BENCH_AUTHORS` shrink the first
//! benchmark for quick runs; `STARLING_BENCH_RECEIVER_WRAPPER` runs the
//! receiver under a tool (e.g. `valgrind --tool=massif`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use starling_core::feed::{Entry, Payload, Post};
use starling_core::identity::{AtRestKey, Identity, InMemoryKeyProvider};
use starling_core::net::{Multiaddr, NetConfig, Network};
use starling_core::node::IncomingEntry;
use starling_core::{AuthorId, Node};

fn open(dir: &Path, key: &AtRestKey) -> Arc<Node> {
    Arc::new(Node::open(dir, Arc::new(InMemoryKeyProvider::new(key.clone()))).unwrap())
}

/// Entries stored so far. Nothing is deleted during the benchmark, so the
/// highest rowid counts them in one index probe (a `COUNT(*)` every 20 ms
/// would scan the growing table and fill the page cache the RSS figure
/// measures).
fn entry_count(node: &Node) -> u64 {
    node.store()
        .read(|c| {
            Ok(
                c.query_row("SELECT IFNULL(MAX(rowid), 0) FROM entries", [], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        })
        .unwrap() as u64
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 1000 authors x 100 posts, signed; returns (authors, entries).
fn make_feeds(authors: usize, per_author: usize) -> (Vec<AuthorId>, Vec<(Entry, Vec<u8>)>) {
    let base = 1_700_000_000_000u64;
    let mut ids = Vec::new();
    let mut out = Vec::with_capacity(authors * per_author);
    for a in 0..authors {
        let id = Identity::generate().unwrap();
        ids.push(id.author_id());
        let mut prev = None;
        for s in 1..=per_author as u64 {
            let payload = Payload::Post(Post {
                text: format!("post {s} of author {a}: some words to make it realistic"),
                reply_to: None,
                root: None,
                mentions: vec![],
                attachments: vec![],
            })
            .encode()
            .unwrap();
            let e = Entry::sign(id.signing_key(), s, prev, base + s * 1000, &payload);
            prev = Some(e.id());
            out.push((e, payload));
        }
    }
    (ids, out)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Child mode: a fresh node that follows the authors listed in
/// `<dir>/authors`, dials `addr`, and reports when it holds `expect` entries.
fn receiver(dir: &str, addr: &str, expect: u64) {
    let dir = Path::new(dir);
    let key = AtRestKey::from_bytes([42; 32]);
    let node = open(&dir.join("recv"), &key);
    node.create_identity(None).unwrap();
    let authors = std::fs::read_to_string(dir.join("authors")).unwrap();
    for a in authors.lines() {
        node.follow(a.parse().unwrap()).unwrap();
    }
    let base_entries = entry_count(&node);
    let rt = rt();
    rt.block_on(async {
        let net = Network::start(node.clone(), NetConfig::loopback())
            .await
            .unwrap();
        let rss0 = vm_rss_kib();
        let start = Instant::now();
        net.dial(addr.parse::<Multiaddr>().unwrap()).await.unwrap();
        loop {
            let n = entry_count(&node) - base_entries;
            if n >= expect || start.elapsed() > Duration::from_secs(600) {
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "{{\"entries\":{n},\"secs\":{secs},\"rss_start_kib\":{rss0},\"hwm_kib\":{}}}",
                    vm_hwm_kib()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        net.stop().await;
    });
}

fn bench_replication() {
    let authors = env_usize("STARLING_BENCH_AUTHORS", 1000);
    let total = env_usize("STARLING_BENCH_ENTRIES", 100_000);
    let per = (total / authors).max(1);
    println!(
        "== replication: {} entries by {authors} authors over loopback TCP",
        authors * per
    );
    let dir = tempfile::tempdir().unwrap();
    let (ids, entries) = make_feeds(authors, per);

    // Baseline: raw single-core ed25519 batch verification of the same
    // entries as they arrive (encoded), in sync's batch size: parse each
    // key and signature, rebuild the signed bytes, `verify_batch`.
    let encoded: Vec<Vec<u8>> = entries.iter().map(|(e, _)| e.encode()).collect();
    let t = Instant::now();
    for chunk in encoded.chunks(1024) {
        let decoded: Vec<Entry> = chunk.iter().map(|b| Entry::decode(b).unwrap()).collect();
        let msgs: Vec<Vec<u8>> = decoded.iter().map(Entry::signed_bytes).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let sigs: Vec<Signature> = decoded
            .iter()
            .map(|e| Signature::from_bytes(&e.signature))
            .collect();
        let keys: Vec<VerifyingKey> = decoded
            .iter()
            .map(|e| VerifyingKey::from_bytes(e.author.as_bytes()).unwrap())
            .collect();
        ed25519_dalek::verify_batch(&refs, &sigs, &keys).unwrap();
    }
    let verify_rate = encoded.len() as f64 / t.elapsed().as_secs_f64();

    let key = AtRestKey::from_bytes([7; 32]);
    let sender = open(&dir.path().join("send"), &key);
    sender.create_identity(None).unwrap();
    for chunk in entries.chunks(per * 10) {
        let batch = chunk
            .iter()
            .map(|(e, p)| IncomingEntry {
                entry_bytes: e.encode(),
                payload: Some(p.clone()),
            })
            .collect();
        sender.ingest(batch).unwrap();
    }
    let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
    std::fs::write(dir.path().join("authors"), list.join("\n")).unwrap();
    let rt = rt();
    let net = rt.block_on(async {
        // The sender hosts these feeds (it is their relay).
        let net = Network::start(sender.clone(), NetConfig::loopback())
            .await
            .unwrap();
        for a in &ids {
            net.engine().host_feed(*a).unwrap();
        }
        net
    });
    let addr = net.listen_addrs()[0].to_string();
    // STARLING_BENCH_RECEIVER_WRAPPER runs the receiver under a tool, e.g.
    // "valgrind --tool=massif" to see where its memory goes.
    let exe = std::env::current_exe().unwrap();
    let wrapper = std::env::var("STARLING_BENCH_RECEIVER_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = command
        .args([
            "__receiver",
            dir.path().to_str().unwrap(),
            &addr,
            &(authors * per).to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    rt.block_on(net.stop());
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = match serde_json::from_str(line.trim()) {
        Ok(v) => v,
        Err(_) => {
            println!("receiver failed: {line}");
            return;
        }
    };
    let n = v["entries"].as_f64().unwrap_or(0.0);
    let secs = v["secs"].as_f64().unwrap_or(f64::INFINITY);
    let rate = n / secs;
    println!(
        "replicated {n} entries in {secs:.2} s = {rate:.0} entries/s; \
         baseline single-core batch verify {verify_rate:.0} entries/s -> {:.0} % (target >= 50 %)",
        100.0 * rate / verify_rate
    );
    let growth_mib = (v["hwm_kib"].as_f64().unwrap_or(0.0)
        - v["rss_start_kib"].as_f64().unwrap_or(0.0))
        / 1024.0;
    println!(
        "== receiver peak RSS growth during replication: {growth_mib:.1} MiB (target <= 16 MiB); \
         baseline RSS at start {:.1} MiB",
        v["rss_start_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn bench_latency() {
    println!("== live delivery latency: 1000 posts at 100/s, A -> B");
    let dir = tempfile::tempdir().unwrap();
    let ka = AtRestKey::from_bytes([1; 32]);
    let kb = AtRestKey::from_bytes([2; 32]);
    let a = open(&dir.path().join("a"), &ka);
    let b = open(&dir.path().join("b"), &kb);
    let (ida, _) = a.create_identity(None).unwrap();
    let (idb, _) = b.create_identity(None).unwrap();
    a.follow(idb).unwrap();
    b.follow(ida).unwrap();
    let rt = rt();
    rt.block_on(async {
        let na = Network::start(a.clone(), NetConfig::loopback()).await.unwrap();
        let nb = Network::start(b.clone(), NetConfig::loopback()).await.unwrap();
        nb.dial(na.listen_addrs()[0].clone()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut events_b = b.subscribe();
        let mut events_a = a.subscribe();
        let mut remote = Vec::new();
        let mut local = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for i in 0..1000 {
            tick.tick().await;
            let t = Instant::now();
            let id = a.post(&format!("latency probe {i}"), None).unwrap();
            // Local baseline: the event on A itself.
            loop {
                match events_a.recv().await {
                    Ok(starling_core::events::NodeEvent::EntryAdded { id: got, .. }) if got == id => {
                        local.push(t.elapsed());
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let deadline = tokio::time::sleep(Duration::from_secs(5));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => { remote.push(Duration::from_secs(5)); break; }
                    ev = events_b.recv() => match ev {
                        Ok(starling_core::events::NodeEvent::EntryAdded { id: got, .. }) if got == id => {
                            remote.push(t.elapsed());
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => {}
                    }
                }
            }
        }
        remote.sort();
        local.sort();
        println!(
            "post on A -> event on B: p50 {:.2} ms, p99 {:.2} ms (targets 5 / 25 ms); \
             baseline publish -> local event on A: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&remote, 0.5).as_secs_f64() * 1e3,
            percentile(&remote, 0.99).as_secs_f64() * 1e3,
            percentile(&local, 0.5).as_secs_f64() * 1e3,
            percentile(&local, 0.99).as_secs_f64() * 1e3,
        );
        nb.stop().await;
        na.stop().await;
    });
}

fn bench_noop_bytes() {
    println!("== no-op sync of 1000 current feeds: bytes on the wire");
    let dir = tempfile::tempdir().unwrap();
    let (ids, entries) = make_feeds(1000, 3);
    let ka = AtRestKey::from_bytes([3; 32]);
    let kb = AtRestKey::from_bytes([4; 32]);
    let a = open(&dir.path().join("a"), &ka);
    let b = open(&dir.path().join("b"), &kb);
    a.create_identity(None).unwrap();
    b.create_identity(None).unwrap();
    for n in [&a, &b] {
        let batch = entries
            .iter()
            .map(|(e, p)| IncomingEntry {
                entry_bytes: e.encode(),
                payload: Some(p.clone()),
            })
            .collect();
        n.ingest(batch).unwrap();
    }
    let rt = rt();
    rt.block_on(async {
        let na = Network::start(a.clone(), NetConfig::loopback())
            .await
            .unwrap();
        let nb = Network::start(b.clone(), NetConfig::loopback())
            .await
            .unwrap();
        for id in &ids {
            na.engine().host_feed(*id).unwrap();
            nb.engine().host_feed(*id).unwrap();
        }
        nb.dial(na.listen_addrs()[0].clone()).await.unwrap();
        // Let the session settle: stop when no byte moved for 500 ms.
        let mut last = (0, 0);
        let mut quiet = 0;
        while quiet < 10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = na.sync_wire_bytes();
            if now == last {
                quiet += 1
            } else {
                quiet = 0;
                last = now;
            }
        }
        let (r, w) = na.sync_wire_bytes();
        println!(
            "no-op sync: {} bytes total ({r} in, {w} out) (target <= 16384); \
             baseline naive (author, seq) list both ways: {} bytes",
            r + w,
            2 * 1000 * 40
        );
        nb.stop().await;
        na.stop().await;
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__receiver") {
        receiver(&args[2], &args[3], args[4].parse().unwrap());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    bench_replication();
    bench_latency();
    bench_noop_bytes();
}
