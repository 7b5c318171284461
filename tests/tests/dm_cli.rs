//! The messaging commands through real `starling` processes: `dm send`
//! queues offline and a running `starling serve` on the same data dir
//! delivers it to another serving node on 127.0.0.1; `dm list/show`,
//! `group …`, `safety-number` (`--json` shapes), and the errors (bad ids,
//! no bundle, a changed key refusing to send until accepted).

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use starling_tests::{TestNode, spawn_serve, terminate};

/// A running `starling serve`.
struct Serve {
    child: Child,
    startup: Value,
}

impl Serve {
    fn start(node: &TestNode) -> Serve {
        let mut cmd = node.command();
        cmd.args([
            "--json",
            "serve",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ]);
        let (child, startup) = spawn_serve(cmd);
        Serve { child, startup }
    }

    fn addr(&self) -> String {
        self.startup["listen"][0]
            .as_str()
            .expect("listen address")
            .to_string()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn texts(doc: &Value) -> Vec<String> {
    doc["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn dm_send_queues_offline_and_serve_delivers_it() {
    let (a, a_id) = TestNode::with_identity("Ada");
    let (b, b_id) = TestNode::with_identity("Bob");
    a.ok(&["follow", &b_id]);
    b.ok(&["follow", &a_id]);
    let sa = Serve::start(&a);
    let sb = Serve::start(&b);
    b.ok(&["dial", &sa.addr()]);

    // Until B's prekey bundle reached A, sending is refused as bad input.
    let limit = Duration::from_secs(60);
    let mut sent = None;
    wait_for(limit, "A can encrypt to B", || {
        let run = a.run(&["dm", "send", &b_id, "hello over the carrier"]);
        if run.code == Some(0) {
            sent = Some(run.json());
            true
        } else {
            assert_eq!(run.code, Some(65), "{}", run.stdout);
            false
        }
    });
    let sent = sent.expect("sent");
    assert_eq!(sent["sent"], true);
    assert_eq!(sent["to"], b_id.as_str());
    assert!(sent["envelope_bytes"].as_u64().expect("bytes") >= 73 + 256);

    // A's serve picks the queued envelope up; B's serve receives it.
    wait_for(limit, "B's serve received the message", || {
        texts(&b.ok(&["dm", "show", &a_id])).contains(&"hello over the carrier".to_string())
    });
    let show = b.ok(&["dm", "show", &a_id]);
    assert_eq!(show["peer"], a_id.as_str());
    assert_eq!(show["trust"], "unverified");
    let m = &show["messages"][0];
    assert_eq!(m["sender"], a_id.as_str());
    assert_eq!(m["outgoing"], false);
    assert!(m["at_ms"].as_u64().is_some() && m["id"].as_i64().is_some());

    // A reply goes back the same way.
    b.ok(&["dm", "send", &a_id, "hi Ada"]);
    wait_for(limit, "A received the reply", || {
        texts(&a.ok(&["dm", "show", &b_id])).contains(&"hi Ada".to_string())
    });
    let list = a.ok(&["dm", "list"]);
    let conv = &list["conversations"][0];
    assert_eq!(conv["kind"], "direct");
    assert_eq!(conv["id"], b_id.as_str());
    assert_eq!(conv["messages"], 2);

    // Both see the same safety number; verifying is recorded.
    let na = a.ok(&["safety-number", &b_id]);
    let nb = b.ok(&["safety-number", &a_id]);
    assert_eq!(na["safety_number"], nb["safety_number"]);
    assert_eq!(na["safety_number"].as_str().expect("number").len(), 60);
    let v = a.ok(&["safety-number", &b_id, "--verify"]);
    assert_eq!(v["trust"], "verified");
    drop(sb);
    drop(sa);
}

#[test]
fn groups_and_errors() {
    let (a, _a_id) = TestNode::with_identity("Ada");
    let (_b, b_id) = TestNode::with_identity("Bob");
    // Bad ids are refused before anything is opened.
    for args in [
        vec!["dm", "send", "stl1nope", "x"],
        vec!["dm", "show", "nope"],
        vec!["safety-number", "nope"],
        vec!["group", "show", "abcd"],
    ] {
        let run = a.run(&args);
        assert_eq!(run.code, Some(65), "{args:?}: {}", run.stdout);
        assert_eq!(run.json()["error"]["kind"], "bad_input");
    }
    // A valid id without any bundle: a clear refusal.
    let run = a.run(&["dm", "send", &b_id, "x"]);
    assert_eq!(run.code, Some(65));
    assert!(
        run.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("no prekey bundle"),
        "{}",
        run.stdout
    );
    let run = a.run(&["safety-number", &b_id]);
    assert_eq!(run.code, Some(65));
    // Usage errors.
    assert_eq!(a.run(&["dm", "send", &b_id]).code, Some(2));

    // Groups.
    let created = a.ok(&["group", "create", "friends"]);
    let g = created["group"].as_str().expect("group").to_string();
    assert_eq!(g.len(), 64);
    assert_eq!(created["name"], "friends");
    let sent = a.ok(&["group", "send", &g, "note to self"]);
    assert_eq!(sent["envelopes"], 1);
    let show = a.ok(&["group", "show", &g]);
    assert_eq!(show["name"], "friends");
    assert_eq!(show["is_member"], true);
    assert_eq!(show["members"].as_array().expect("members").len(), 1);
    assert_eq!(texts(&show), vec!["note to self".to_string()]);
    // Adding someone whose bundle is unknown is refused, nothing changes.
    let run = a.run(&["group", "add", &g, &b_id]);
    assert_eq!(run.code, Some(65), "{}", run.stdout);
    let unknown = "00".repeat(32);
    assert_eq!(a.run(&["group", "show", &unknown]).code, Some(65));
    let list = a.ok(&["dm", "list"]);
    assert_eq!(list["conversations"][0]["kind"], "group");
    assert_eq!(list["conversations"][0]["name"], "friends");
}

#[test]
fn a_changed_key_refuses_sending_until_accepted() {
    let (a, a_id) = TestNode::with_identity("Ada");
    let (b, b_id) = TestNode::with_identity("Bob");
    a.ok(&["follow", &b_id]);
    b.ok(&["follow", &a_id]);
    let sa = Serve::start(&a);
    let sb = Serve::start(&b);
    b.ok(&["dial", &sa.addr()]);
    wait_for(Duration::from_secs(60), "A can encrypt to B", || {
        a.run(&["dm", "send", &b_id, "first"]).code == Some(0)
    });
    drop(sb);
    drop(sa);
    // Simulate a key change as the messaging layer records one.
    {
        let conn = rusqlite::Connection::open(a.db_path()).expect("db");
        let n = conn
            .execute("UPDATE msg_contacts SET trust = 2", [])
            .expect("update");
        assert_eq!(n, 1);
    }
    let run = a.run(&["dm", "send", &b_id, "second"]);
    assert_eq!(run.code, Some(65), "{}", run.stdout);
    let msg = run.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(
        msg.contains("identity key") && msg.contains("changed"),
        "{msg}"
    );
    assert!(run.stderr.contains("safety-number"), "{}", run.stderr);
    assert_eq!(a.ok(&["safety-number", &b_id])["trust"], "changed");
    assert_eq!(
        a.ok(&["safety-number", &b_id, "--accept"])["trust"],
        "unverified"
    );
    a.ok(&["dm", "send", &b_id, "second"]);
}
