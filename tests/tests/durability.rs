//! What is on disk: a deleted post's text is gone from every file of the
//! data dir, and a post is durable the moment `starling post` exits 0 —
//! checked on a byte-for-byte crash image of the data dir and by killing
//! `starling post` processes with SIGKILL at random moments.

use std::time::{Duration, Instant};

use starling_tests::{TestNode, copy_dir_files, files_containing, nonce};

#[test]
fn delete_removes_the_text_from_every_file() {
    let (node, me) = TestNode::with_identity("Ada");
    let secret = format!("zebra-secret-{}", nonce());
    let keep = format!("keeper-{}", nonce());
    node.post(&keep);
    let id = node.post(&format!("my {secret} text"));
    node.post("a later post");
    assert!(
        !files_containing(node.path(), secret.as_bytes()).is_empty(),
        "the text is stored before the delete"
    );

    node.ok(&["delete", &id]);

    let hits = files_containing(node.path(), secret.as_bytes());
    assert!(
        hits.is_empty(),
        "deleted text still on disk in {hits:?} (files: {:?})",
        std::fs::read_dir(node.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect::<Vec<_>>()
    );
    assert!(!files_containing(node.path(), keep.as_bytes()).is_empty());
    let feed = node.ok(&["feed", &me]);
    let deleted = feed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["id"] == id.as_str())
        .expect("the entry stays in the feed as deleted");
    assert_eq!(deleted["deleted"], true);
    assert_eq!(deleted["text"], serde_json::Value::Null);
    assert_eq!(
        node.ok(&["search", &secret])["items"],
        serde_json::json!([])
    );
}

/// The post is in a byte-for-byte copy of the data dir taken right after
/// `starling post` exits, while another connection keeps the database open
/// (as a running app would), so the write is still only in the WAL.
#[test]
fn a_post_survives_in_a_crash_image() {
    let (node, me) = TestNode::with_identity("Ada");
    // Hold the database open so that `post`'s exit does not checkpoint.
    let holder = rusqlite::Connection::open(node.db_path()).expect("open db");
    let _: i64 = holder
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .expect("read");

    let text = format!("durable-{}", nonce());
    node.post(&text);
    let image = tempfile::tempdir().expect("tempdir");
    copy_dir_files(node.path(), image.path());
    drop(holder);

    let mut cmd = node.command();
    cmd.env("STARLING_DATA_DIR", image.path());
    let out = node.run_with(cmd, &["feed", &me]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        TestNode::texts(&out.json()).contains(&text),
        "post missing from the crash image: {}",
        out.stdout
    );

    // Same without the extra connection: the image of a closed store.
    let text2 = format!("durable-closed-{}", nonce());
    node.post(&text2);
    let image2 = tempfile::tempdir().expect("tempdir");
    copy_dir_files(node.path(), image2.path());
    let mut cmd = node.command();
    cmd.env("STARLING_DATA_DIR", image2.path());
    let out = node.run_with(cmd, &["feed", &me]);
    let texts = TestNode::texts(&out.json());
    assert!(texts.contains(&text) && texts.contains(&text2), "{texts:?}");
}

/// A tiny xorshift generator seeded from the clock, for kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_during_posts_loses_nothing_that_was_acknowledged() {
    let (node, me) = TestNode::with_identity("Ada");
    let seed = u64::from_str_radix(&nonce()[..12], 16).unwrap_or(0x9e37_79b9) | 1;
    let mut rng = Rng(seed);
    eprintln!("kill-loop seed {seed}");

    // Calibrate: how long does one post take here?
    let t0 = Instant::now();
    node.post("calibration");
    let typical = t0.elapsed();

    let run = nonce();
    let mut acknowledged = Vec::new();
    let mut killed = 0;
    for i in 0..24 {
        let text = format!("kill-loop-{run}-{i}");
        let mut cmd = node.command();
        cmd.args(["--json", "post", &text]);
        let mut child = cmd.spawn().expect("spawn");
        // Anywhere from immediately to a bit after a typical post finishes.
        let span = typical.as_micros() as u64 * 3 / 2 + 1;
        std::thread::sleep(Duration::from_micros(rng.next() % span));
        let _ = child.kill(); // SIGKILL on Unix; fails harmlessly if it exited
        let out = child.wait_with_output().expect("wait");
        if out.status.success() {
            acknowledged.push(text);
        } else {
            killed += 1;
        }
    }
    eprintln!("{} posts acknowledged, {killed} killed", acknowledged.len());

    // The store still works and holds every acknowledged post.
    node.post("after the storm");
    let feed = node.ok(&["feed", &me, "--limit", "200"]);
    let texts = TestNode::texts(&feed);
    for t in &acknowledged {
        assert!(texts.contains(t), "acknowledged post {t} lost");
    }
    assert!(texts.contains(&"after the storm".to_string()));
    // The feed is still one valid hash chain: another node accepts all of it.
    let file = node.path().join("after-kill.feed");
    let file = file.to_str().expect("utf-8 path");
    let exported = node.ok(&["export-feed", &me, file]);
    let (other, _) = TestNode::with_identity("Checker");
    let report = other.ok(&["import", file]);
    assert_eq!(report["accepted"], exported["entries"], "{report}");
}
