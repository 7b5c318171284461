//! A peer that sends garbage on `/starling/sync/1` is disconnected and kept
//! away, while an honest peer's sync with the same node completes; blob
//! fetches verify what peers send.

mod net_util;

use std::time::Duration;

use futures::AsyncWriteExt;
use net_util::{Peer, bounded, eventually};
use starling_core::net::{NetConfig, SYNC_PROTOCOL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_bad_frames_is_rejected_while_honest_sync_completes() {
    bounded(Duration::from_secs(60), async {
        let mut honest_node = Peer::new("H");
        let mut good = Peer::new("G");
        let mut evil = Peer::new("E");
        honest_node.node.follow(good.me).unwrap();
        good.post("honest words");
        honest_node.start(None).await;
        good.start(None).await;
        // The attacker runs no sync of its own: it speaks raw bytes. Sessions
        // are opened by the peer with the lower PeerId, so pick an attacker
        // that is allowed to open one.
        let h = honest_node.net().peer_id();
        loop {
            evil.start(Some(NetConfig {
                sync: false,
                ..NetConfig::loopback()
            }))
            .await;
            if evil.net().peer_id().to_bytes() < h.to_bytes() {
                break;
            }
            evil.stop().await;
            evil = Peer::new("E");
        }
        evil.dial(&honest_node).await;
        let mut s = evil.net().open_raw_stream(h, SYNC_PROTOCOL).await.unwrap();
        // A frame header announcing an absurd length, then junk.
        let _ = s.write_all(&[0xff; 64]).await;
        let _ = s.flush().await;
        // Meanwhile the honest peer syncs.
        good.dial(&honest_node).await;
        eventually(Duration::from_secs(15), "honest sync", || {
            honest_node.texts_of(good.me) == ["honest words"]
        })
        .await;
        let e = evil.net().peer_id();
        eventually(
            Duration::from_secs(10),
            "the bad peer is disconnected",
            || !honest_node.net().peers().iter().any(|p| p.peer == e),
        )
        .await;
        // And it cannot come straight back.
        let _ = evil.net().dial(honest_node.addr()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !honest_node.net().peers().iter().any(|p| p.peer == e),
            "a penalised peer is refused during its back-off"
        );
        assert!(
            honest_node
                .net()
                .peers()
                .iter()
                .any(|p| p.peer == good.net().peer_id())
        );
        for p in [&mut honest_node, &mut good, &mut evil] {
            p.stop().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_fetched_on_demand_and_verified() {
    bounded(Duration::from_secs(60), async {
        let mut a = Peer::new("A");
        let mut b = Peer::new("B");
        a.start(None).await;
        b.start(None).await;
        b.dial(&a).await;
        let r = a.net().add_blob(b"attachment bytes", "text/plain").unwrap();
        let got = b.net().fetch_blob(r.id).await.unwrap();
        assert_eq!(got, b"attachment bytes");
        assert!(b.net().blobs().has(&r.id));
        // Nobody has this one.
        let unknown = starling_core::BlobId::from_bytes([7; 32]);
        assert!(b.net().fetch_blob(unknown).await.is_err());
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_forged_entries_is_banned_while_honest_sync_completes() {
    bounded(Duration::from_secs(60), async {
        let mut h = Peer::new("H");
        let mut good = Peer::new("G");
        let mut evil = Peer::new("E");
        h.node.follow(good.me).unwrap();
        h.node.follow(evil.me).unwrap();
        good.post("honest words");
        let forged = evil.post("forged words");
        // Corrupt the signature of the stored entry: the evil node's honest
        // engine now serves an entry its author never signed.
        evil.node
            .store()
            .with_writer(|c| {
                let mut bytes: Vec<u8> = c.query_row(
                    "SELECT encoded FROM entries WHERE id = ?1",
                    [forged.as_bytes().as_slice()],
                    |r| r.get(0),
                )?;
                let last = bytes.len() - 1;
                bytes[last] ^= 0x01;
                c.execute(
                    "UPDATE entries SET encoded = ?2 WHERE id = ?1",
                    (forged.as_bytes().as_slice(), bytes),
                )?;
                Ok(())
            })
            .unwrap();
        h.start(None).await;
        good.start(None).await;
        evil.start(None).await;
        evil.dial(&h).await;
        good.dial(&h).await;
        eventually(Duration::from_secs(15), "honest sync", || {
            h.texts_of(good.me) == ["honest words"]
        })
        .await;
        let e = evil.net().peer_id();
        eventually(
            Duration::from_secs(10),
            "the forger is disconnected",
            || !h.net().peers().iter().any(|p| p.peer == e),
        )
        .await;
        assert!(
            !h.texts_of(evil.me).contains(&"forged words".to_string()),
            "a forged entry is never stored"
        );
        for p in [&mut h, &mut good, &mut evil] {
            p.stop().await;
        }
    })
    .await;
}
