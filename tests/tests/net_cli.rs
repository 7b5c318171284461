//! The network commands through real `starling` processes on 127.0.0.1:
//! `serve` (startup line, SIGTERM), the control socket (`peers`, `dial`,
//! `invite create/accept`, `sync status`), a `starling post` from another
//! process reaching the peer while both serve, blobs, and mDNS discovery
//! between two network namespaces.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use starling_tests::{TestNode, nonce, spawn_serve, terminate};

/// A running `starling serve`.
struct Serve {
    child: Child,
    startup: Value,
}

impl Serve {
    fn start(node: &TestNode, extra: &[&str]) -> Serve {
        Self::start_with(node.command(), extra)
    }

    fn start_with(mut cmd: Command, extra: &[&str]) -> Serve {
        cmd.args(["--json", "serve", "--no-mdns"]).args(extra);
        let (child, startup) = spawn_serve(cmd);
        Serve { child, startup }
    }

    fn addr(&self) -> String {
        self.startup["listen"][0]
            .as_str()
            .expect("listen address")
            .to_string()
    }

    /// SIGTERM, then the exit status (within 15 s).
    fn stop(mut self) -> Option<i32> {
        terminate(&mut self.child, Duration::from_secs(15))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_invite_live_post_blobs_and_graceful_stop() {
    let (a, a_id) = TestNode::with_identity("Ada");
    let (b, b_id) = TestNode::with_identity("Bob");
    // Without a running node, the node-only commands say so.
    let run = a.run(&["peers"]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(run.stdout.contains("no running node"), "{}", run.stdout);

    // A is a public relay: B's accept also asks it for a reservation.
    let sa = Serve::start(&a, &["--listen", "/ip4/127.0.0.1/tcp/0", "--relay"]);
    assert_eq!(sa.startup["event"], "listening");
    assert_eq!(sa.startup["author"], a_id.as_str());
    assert!(
        sa.startup["peer_id"]
            .as_str()
            .expect("peer id")
            .starts_with("12D3Koo")
    );
    assert!(
        sa.addr().starts_with("/ip4/127.0.0.1/tcp/"),
        "{}",
        sa.addr()
    );
    // The control socket is private to the owner.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path().join("control.sock"))
            .expect("control.sock")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let sb = Serve::start(&b, &["--listen", "/ip4/127.0.0.1/tcp/0"]);

    // Invite: created by A's running node, accepted by B's.
    let invite = a.ok(&["invite", "create"]);
    let code = invite["code"].as_str().expect("code").to_string();
    assert!(code.starts_with("stlinv1"));
    let accepted = b.ok(&["invite", "accept", &code]);
    assert_eq!(accepted["inviter"], a_id.as_str());
    assert_eq!(accepted["reservation"]["status"], "listening", "{accepted}");
    // Used once: a second accept is refused as bad input.
    assert_eq!(b.run(&["invite", "accept", &code]).code, Some(65));

    // B keeps its reservation at A (and would ask again after a restart)
    // until told to forget it.
    let relays = b.ok(&["relay", "list"]);
    let listed = relays["relays"].as_array().expect("relays");
    assert_eq!(listed.len(), 1, "{relays}");
    assert_eq!(listed[0]["peer"], sa.startup["peer_id"]);
    assert!(
        listed[0]["listening"]
            .as_str()
            .is_some_and(|c| c.contains("/p2p-circuit")),
        "{relays}"
    );
    assert_eq!(b.run(&["relay", "forget", "not-a-peer-id"]).code, Some(65));
    let a_peer = sa.startup["peer_id"].as_str().expect("peer id");
    assert_eq!(b.ok(&["relay", "forget", a_peer])["forgotten"], true);
    assert!(
        b.ok(&["relay", "list"])["relays"]
            .as_array()
            .expect("relays")
            .is_empty()
    );
    assert_eq!(b.ok(&["relay", "forget", a_peer])["forgotten"], false);

    let peers = a.ok(&["peers"]);
    assert_eq!(peers["peers"].as_array().expect("peers").len(), 1);
    assert_eq!(b.ok(&["dial", &sa.addr()])["peer"], sa.startup["peer_id"]);

    // Both follow each other now (published by the two nodes).
    wait_for(Duration::from_secs(10), "mutual follows", || {
        let f = a.ok(&["follows"]);
        f.to_string().contains(&b_id) && b.ok(&["follows"]).to_string().contains(&a_id)
    });

    // A post written by another process on A's data dir reaches B.
    let text = format!("hello from the CLI {}", nonce());
    a.post(&text);
    let start = Instant::now();
    wait_for(Duration::from_secs(5), "the post on B", || {
        TestNode::texts(&b.ok(&["feed", &a_id])).contains(&text)
    });
    eprintln!(
        "post reached B after {:?} (includes CLI start-up)",
        start.elapsed()
    );

    let status = b.ok(&["sync", "status"]);
    assert!(status["peers"].is_array(), "{status}");

    // Blobs: added on A, fetched by B's node on demand, verified.
    let file = a.path().join("picture.png");
    std::fs::write(&file, b"\x89PNG not really a picture").expect("write");
    let added = a.ok(&["blob", "add", file.to_str().expect("utf-8")]);
    let blob = added["id"].as_str().expect("id").to_string();
    assert_eq!(added["mime"], "image/png");
    let out = b.path().join("fetched.png");
    let got = b.ok(&["blob", "get", &blob, "--out", out.to_str().expect("utf-8")]);
    assert_eq!(got["size"], 25);
    assert_eq!(
        std::fs::read(&out).expect("read"),
        std::fs::read(&file).expect("read")
    );
    // An unknown blob is reported as such.
    let missing = "stlb1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsg3hhn";
    assert_ne!(b.run(&["blob", "get", missing]).code, Some(0));

    assert_eq!(sa.stop(), Some(0), "serve exits 0 on SIGTERM");
    assert_eq!(sb.stop(), Some(0));
    assert!(
        !a.path().join("control.sock").exists(),
        "socket removed on stop"
    );
}

#[test]
fn serve_on_a_fresh_data_dir_creates_an_identity() {
    let node = TestNode::new();
    let s = Serve::start(&node, &["--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert_eq!(s.startup["created_identity"], true);
    assert_eq!(
        s.startup["recovery_phrase"]
            .as_str()
            .expect("phrase")
            .split_whitespace()
            .count(),
        24
    );
    assert_eq!(
        s.startup["data_dir"].as_str().expect("data dir"),
        node.path().display().to_string()
    );
    assert_eq!(node.ok(&["whoami"])["author"], s.startup["author"]);
    assert_eq!(s.stop(), Some(0));
}

/// Runs `ip ARGS`; false if it failed.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two network namespaces joined by a veth pair (10.77.0.1 and .2, which
/// exist only inside them); removed on drop.
struct Namespaces {
    names: [String; 2],
}

impl Namespaces {
    fn create() -> Option<Namespaces> {
        let tag = &nonce()[..8];
        let names = [format!("stl-a-{tag}"), format!("stl-b-{tag}")];
        let (va, vb) = (format!("stlva{}", &tag[..4]), format!("stlvb{}", &tag[..4]));
        let ns = Namespaces { names };
        let [na, nb] = &ns.names;
        let ok = ip(&["netns", "add", na])
            && ip(&["netns", "add", nb])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", na])
            && ip(&["link", "set", &vb, "netns", nb])
            && ip(&["-n", na, "addr", "add", "10.77.0.1/24", "dev", &va])
            && ip(&["-n", nb, "addr", "add", "10.77.0.2/24", "dev", &vb])
            && ip(&["-n", na, "link", "set", &va, "up", "multicast", "on"])
            && ip(&["-n", nb, "link", "set", &vb, "up", "multicast", "on"])
            && ip(&["-n", na, "link", "set", "lo", "up"])
            && ip(&["-n", nb, "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            ip(&["netns", "del", n]);
        }
    }
}

#[test]
fn two_nodes_find_each_other_by_mdns() {
    // mDNS ignores the loopback interface, so the two nodes live in two
    // network namespaces joined by a veth pair (needs root; the traffic
    // never leaves them).
    let Some(ns) = Namespaces::create() else {
        eprintln!(
            "SKIPPED: cannot create network namespaces here (needs root and `ip netns`); \
             mDNS does not run on loopback"
        );
        return;
    };
    let (a, _) = TestNode::with_identity("A");
    let (b, _) = TestNode::with_identity("B");
    let in_ns = |node: &TestNode, name: &str| {
        let mut cmd = node.command_in_netns(name);
        cmd.stderr(Stdio::null());
        cmd
    };
    let mut ca = in_ns(&a, &ns.names[0]);
    ca.args(["--json", "serve", "--listen", "/ip4/10.77.0.1/tcp/0"]);
    let mut cb = in_ns(&b, &ns.names[1]);
    cb.args(["--json", "serve", "--listen", "/ip4/10.77.0.2/tcp/0"]);
    let (child, startup) = spawn_serve(ca);
    let sa = Serve { child, startup };
    let (child, startup) = spawn_serve(cb);
    let sb = Serve { child, startup };
    let b_peer = sb.startup["peer_id"].as_str().expect("peer").to_string();
    // Found and connected without any dial.
    // mDNS queries every 5 s; the generous bound only matters on a machine
    // loaded by parallel builds, where one run was seen to need over 30 s.
    wait_for(Duration::from_secs(90), "mDNS discovery", || {
        a.ok(&["peers"]).to_string().contains(&b_peer)
    });
    assert_eq!(sa.stop(), Some(0));
    assert_eq!(sb.stop(), Some(0));
}
