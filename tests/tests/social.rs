//! Two identities in two data dirs talk through exported feed files: follow,
//! post, export/import, timeline, search, reply + thread, react +
//! notifications, profiles, follow lists, and restoring from the recovery
//! phrase. Everything goes through the real `starling` binary with `--json`.

use serde_json::Value;
use starling_tests::{TestNode, nonce};

fn export_import(from: &TestNode, author: &str, to: &TestNode) -> Value {
    let file = from.path().join(format!("export-{}.bin", nonce()));
    let file = file.to_str().expect("utf-8 path");
    let exported = from.ok(&["export-feed", author, file]);
    assert!(exported["entries"].as_u64().expect("entries") >= 1);
    to.ok(&["import", file])
}

#[test]
fn init_whoami_and_profile() {
    let node = TestNode::new();
    let init = node.ok(&["init", "--name", "Ada"]);
    let me = init["author"].as_str().expect("author");
    assert!(me.starts_with("stl1"), "{me}");
    let words = init["recovery_phrase"].as_str().expect("phrase");
    assert_eq!(words.split_whitespace().count(), 24);

    let who = node.ok(&["whoami"]);
    assert_eq!(who["author"], me);
    assert_eq!(who["name"], "Ada");

    node.ok(&["profile", "--about", "first programmer"]);
    let p = node.ok(&["profile"]);
    assert_eq!(p["author"], me);
    assert_eq!(p["name"], "Ada", "setting about keeps the name");
    assert_eq!(p["about"], "first programmer");

    // The phrase is shown again on request, and restores the same identity
    // in a fresh data dir.
    let again = node.ok(&["recovery-phrase"]);
    assert_eq!(again["recovery_phrase"], words);
    let other = TestNode::new();
    let mut cmd = other.command();
    cmd.stdin(std::process::Stdio::piped());
    cmd.arg("--json").args(["init", "--restore"]);
    let mut child = cmd.spawn().expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("  {}\n", words.to_uppercase()).as_bytes())
            .expect("write phrase");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(restored["author"], me);
    assert_eq!(other.ok(&["whoami"])["author"], me);
}

#[test]
fn text_output_is_friendly() {
    let node = TestNode::new();
    let out = node.run_with(node.command(), &[]);
    assert_eq!(out.code, Some(2), "no command is a usage error");
    let mut cmd = node.command();
    cmd.args(["init", "--name", "Grace"]);
    let out = cmd.output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Created identity stl1"), "{text}");
    assert!(text.contains("WRITE IT DOWN"), "{text}");
    assert!(text.contains("24."), "numbered words: {text}");

    let mut cmd = node.command();
    cmd.args(["post", "hello from the shell"]);
    let out = cmd.output().expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Posted stle1"));

    let mut cmd = node.command();
    cmd.arg("timeline");
    let out = cmd.output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Grace (stl1"), "{text}");
    assert!(text.contains("  hello from the shell"), "{text}");
    assert!(text.contains("  id: stle1"), "{text}");
}

#[test]
fn two_identities_follow_post_exchange_and_talk() {
    let (ada, ada_id) = TestNode::with_identity("Ada");
    let (bob, bob_id) = TestNode::with_identity("Bob");
    let word = format!("analytical{}", nonce());

    let root = ada.post(&format!("The {word} engine weaves algebraic patterns"));
    assert!(root.starts_with("stle1"), "{root}");
    ada.post("a second post from Ada");

    // Bob follows Ada and receives her feed as a file.
    bob.ok(&["follow", &ada_id]);
    let report = export_import(&ada, &ada_id, &bob);
    assert!(report["accepted"].as_u64().expect("accepted") >= 2);
    assert_eq!(report["duplicates"], 0);
    // Importing the same file again changes nothing.
    let again = export_import(&ada, &ada_id, &bob);
    assert_eq!(again["accepted"], 0);
    assert!(again["duplicates"].as_u64().expect("duplicates") >= 2);

    let follows = bob.ok(&["follows"]);
    assert_eq!(follows["items"], serde_json::json!([ada_id]));
    let followers = bob.ok(&["followers", &ada_id]);
    assert_eq!(followers["items"], serde_json::json!([bob_id]));

    let timeline = bob.ok(&["timeline"]);
    let texts = TestNode::texts(&timeline);
    assert!(
        texts.iter().any(|t| t.contains(&word)),
        "Bob's timeline shows Ada's post: {timeline}"
    );
    let first = &timeline["items"][0];
    assert_eq!(first["text"], "a second post from Ada", "newest first");
    assert_eq!(first["author"], ada_id);
    assert_eq!(first["author_name"], "Ada");

    // Paging: one item per page, follow the cursor.
    let page1 = bob.ok(&["timeline", "--limit", "1"]);
    assert_eq!(page1["items"].as_array().expect("items").len(), 1);
    let cursor = page1["next"].as_str().expect("next cursor");
    let page2 = bob.ok(&["timeline", "--limit", "1", "--before", cursor]);
    assert_eq!(page2["items"].as_array().expect("items").len(), 1);
    assert_ne!(page1["items"][0]["id"], page2["items"][0]["id"]);

    // Search finds the post by a word.
    let found = bob.ok(&["search", &word]);
    assert_eq!(found["items"][0]["id"], root);
    assert_eq!(
        bob.ok(&["search", "nonexistentword"])["items"],
        serde_json::json!([])
    );

    // Bob replies and reacts; the thread shows root then reply.
    let reply = bob.ok(&["post", "Indeed it does", "--reply-to", &root])["id"]
        .as_str()
        .expect("id")
        .to_string();
    bob.ok(&["react", &root, "👍"]);
    let thread = bob.ok(&["thread", &root]);
    let ids: Vec<&str> = thread["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![root.as_str(), reply.as_str()]);
    assert_eq!(thread["items"][1]["reply_to"], root);
    assert_eq!(thread["items"][1]["root"], root);

    // Ada gets Bob's feed and sees the reply and the reaction.
    export_import(&bob, &bob_id, &ada);
    let notes = ada.ok(&["notifications"]);
    let items = notes["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .any(|n| n["kind"] == "reply" && n["entry"] == reply && n["from"] == bob_id),
        "{notes}"
    );
    assert!(
        items.iter().any(|n| n["kind"] == "reaction"
            && n["emoji"] == "👍"
            && n["subject"] == root
            && n["from"] == bob_id),
        "{notes}"
    );
    let feed = ada.ok(&["feed", &ada_id]);
    let post = feed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["id"] == root)
        .expect("root in Ada's feed");
    assert_eq!(post["reactions"][0]["emoji"], "👍");
    assert_eq!(post["reactions"][0]["count"], 1);

    // A profile of someone else, and a mention.
    let bob_profile = ada.ok(&["profile", &bob_id]);
    assert_eq!(bob_profile["name"], "Bob");
    bob.ok(&["post", &format!("thanks @{ada_id}")]);
    export_import(&bob, &bob_id, &ada);
    let notes = ada.ok(&["notifications"]);
    assert!(
        notes["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|n| n["kind"] == "mention"),
        "{notes}"
    );

    // Hide is local; unfollow and block publish entries.
    ada.ok(&["hide", &reply]);
    bob.ok(&["unfollow", &ada_id]);
    assert_eq!(bob.ok(&["follows"])["items"], serde_json::json!([]));
    bob.ok(&["block", &ada_id]);
    bob.ok(&["unblock", &ada_id]);
}
