//! (1) Double Ratchet encrypt+decrypt of a 1 KiB message in an established
//! session, against bare ChaCha20-Poly1305 of 1 KiB in the same run.
//! Target: the ratchet round trip reaches at least 25% of the bare AEAD's
//! throughput. (2) DM delivery latency from A to B over a live sync session
//! on 127.0.0.1 TCP (200 messages at 20/s, p50 and p99), beside the bare
//! loopback TCP one-way latency of a 1 KiB frame.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use criterion::{Criterion, Throughput, criterion_group};
use starling_core::identity::InMemoryKeyProvider;
use starling_core::mailbox::{self, MailboxEvent};
use starling_core::messaging::bench_support::Pair;
use starling_core::sync::{SyncConfig, SyncEngine};
use starling_core::{AuthorId, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::compat::TokioAsyncReadCompatExt;

fn bench(c: &mut Criterion) {
    let msg = vec![0x42u8; 1024];
    let mut g = c.benchmark_group("messaging-1KiB");
    g.throughput(Throughput::Bytes(1024));
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    g.bench_function("bare-chacha20poly1305-seal+open", |b| {
        b.iter(|| {
            let n = Nonce::from([1u8; 12]);
            let ct = cipher.encrypt(&n, msg.as_slice()).unwrap();
            cipher.decrypt(&n, ct.as_slice()).unwrap()
        })
    });
    let mut pair = Pair::new().unwrap();
    g.bench_function("double-ratchet-encrypt+decrypt", |b| {
        b.iter(|| pair.round_trip(&msg).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);

/// Mean time per call of `f` over about a second.
fn per_call(mut f: impl FnMut()) -> Duration {
    for _ in 0..1000 {
        f();
    }
    let mut n = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    start.elapsed() / n
}

/// The ratio printed beside the criterion figures.
fn ratio_summary() {
    let msg = vec![0x42u8; 1024];
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let bare = per_call(|| {
        let n = Nonce::from([1u8; 12]);
        let ct = cipher.encrypt(&n, msg.as_slice()).unwrap();
        std::hint::black_box(cipher.decrypt(&n, ct.as_slice()).unwrap());
    });
    let mut pair = Pair::new().unwrap();
    let ratchet = per_call(|| {
        std::hint::black_box(pair.round_trip(&msg).unwrap());
    });
    println!(
        "\n1 KiB encrypt+decrypt: double ratchet {:.2} µs vs bare ChaCha20-Poly1305 {:.2} µs \
         = {:.1}% of bare throughput (target ≥ 25%)",
        ratchet.as_secs_f64() * 1e6,
        bare.as_secs_f64() * 1e6,
        100.0 * bare.as_secs_f64() / ratchet.as_secs_f64()
    );
}

fn node(dir: &std::path::Path) -> (Arc<Node>, AuthorId) {
    let keys = Arc::new(InMemoryKeyProvider::random().unwrap());
    let node = Arc::new(Node::open(dir, keys).unwrap());
    let (me, _) = node.create_identity(None).unwrap();
    (node, me)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One-way loopback TCP latency of a 1 KiB frame (half an echo round trip).
async fn bare_tcp_one_way() -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; 1024];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = vec![7u8; 1024];
    let mut samples = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        c.write_all(&buf).await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        samples.push(t.elapsed() / 2);
    }
    samples.sort();
    percentile(&samples, 0.5)
}

async fn dm_latency() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_id) = node(da.path());
    let (b, b_id) = node(db.path());
    a.follow(b_id).unwrap();
    b.follow(a_id).unwrap();
    mailbox::refresh_prekeys(&a).unwrap();
    mailbox::refresh_prekeys(&b).unwrap();
    let ea = SyncEngine::new(a.clone(), SyncConfig::default());
    let eb = SyncEngine::new(b.clone(), SyncConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let _ = eb
            .run_session("b".into(), "a".into(), s.compat(), false)
            .await;
    });
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let client = tokio::spawn(async move {
        let _ = ea
            .run_session("a".into(), "b".into(), s.compat(), true)
            .await;
    });
    // Wait for B's prekey bundle at A.
    let start = Instant::now();
    loop {
        let ok = a
            .with_messaging(|m| m.encrypt_dm(&b_id, None, "warm-up"))
            .unwrap()
            .is_ok();
        if ok {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no bundle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut acks = mailbox::subscribe(&b);
    a.flush_outbox().unwrap();
    wait_ack(&mut acks).await;
    let mut samples = Vec::with_capacity(200);
    let tick = Duration::from_millis(50);
    let begin = Instant::now();
    for i in 0..200u32 {
        let text = format!("message {i} {}", "x".repeat(100));
        let t = Instant::now();
        a.with_messaging(|m| m.encrypt_dm(&b_id, None, &text))
            .unwrap()
            .unwrap();
        a.flush_outbox().unwrap();
        wait_ack(&mut acks).await;
        samples.push(t.elapsed());
        let next = tick * (i + 1);
        if let Some(wait) = next.checked_sub(begin.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    samples.sort();
    let bare = bare_tcp_one_way().await;
    println!(
        "DM delivery A→B over a live sync session on 127.0.0.1 TCP (200 msgs at 20/s): \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; bare loopback TCP one-way 1 KiB: {:.3} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        bare.as_secs_f64() * 1e3
    );
    server.abort();
    client.abort();
}

/// Waits for B to have read a message (its mailbox acks it at once).
async fn wait_ack(rx: &mut tokio::sync::broadcast::Receiver<MailboxEvent>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Ok(MailboxEvent::Ack { origin: 0, .. })) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("mailbox events: {e}"),
            Err(_) => panic!("message not delivered within 10 s"),
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio_summary();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(dm_latency());
}
