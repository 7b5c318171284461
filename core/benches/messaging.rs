//! Double Ratchet encrypt+decrypt of a 1 KiB message in an established
//! session, against bare ChaCha20-Poly1305 of 1 KiB in the same run.
//!
//! Target: the ratchet round trip reaches at least 25% of the bare AEAD's
//! throughput (both figures are printed by criterion).

#![allow(missing_docs, clippy::unwrap_used)]

use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use starling_core::messaging::bench_support::Pair;

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
criterion_main!(benches);
