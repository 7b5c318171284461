//! NAT traversal between real `starling` processes, with the NATs modelled
//! by Linux network namespaces (needs root, `ip netns` and `iptables`;
//! skipped with a printed `SKIPPED: …` otherwise).
//!
//! Topology (one set of namespaces per test, named after the process id):
//!
//! ```text
//!   A 10.0.1.2 ── 10.0.1.1 [NAT A] 11.77.1.2 ──┐            ┌── 11.77.2.2 [NAT B] 10.0.2.1 ── 10.0.2.2 B
//!                                               └ 11.77.1.1 [R] 11.77.2.1 ┘
//!                                                  relay; routes between the two public links
//! ```
//!
//! Each NAT router masquerades its LAN behind its public address
//! (`iptables -t nat -A POSTROUTING -o WAN -j MASQUERADE`): outbound flows
//! get a conntrack mapping, unsolicited inbound ones reach nobody behind
//! it, and, like a home router's firewall, the router drops them silently
//! (`INPUT -i WAN -m conntrack --ctstate NEW,INVALID -j DROP`). R is the
//! only public node: a `starling serve --relay`.
//!
//! Why 11.77.0.0/16 for the "internet": libp2p's AutoNAT (v1) asks only
//! peers it sees at a *global* IP address to dial it back, and serves only
//! such peers (`only_global_ips`); with private (10/8) or documentation
//! ranges it would never probe. The namespaces have no link to the host's
//! network, so these addresses are never routed anywhere real, and the
//! nodes run with the shipped defaults rather than a test-only switch.
//!
//! What is proven:
//! * two peers behind two different NATs reach each other through the
//!   relay's circuit, DCUtR then punches a direct connection through both
//!   NATs (`starling peers` reports `"relayed": false`), and with the relay
//!   gone a new post still replicates over that direct connection;
//! * behind symmetric NATs (`MASQUERADE --random-fully`: a new public port
//!   per destination, so the address the relay observed is useless to the
//!   other peer) hole punching fails and the peers stay connected through
//!   the relay (`"relayed": true`) while B keeps receiving A's posts (over
//!   the circuit or from R, which hosts A's feed) — which also shows the
//!   `relayed` assertion above is not vacuous;
//! * AutoNAT: the NATed nodes learn they are private and have no confirmed
//!   direct external address, while the relay learns it is public.
//!
//! What it does not prove: the links have no latency or loss (netem is not
//! available everywhere), and a router that answers unsolicited SYNs with
//! a reset (Linux without the DROP rule) defeats TCP hole punching on such
//! fast links, because each side's SYN reaches the other NAT before that
//! side has sent its own; real NATs vary more than these two kinds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use starling_tests::{TestNode, nonce, spawn_serve, terminate};

/// How long to wait for anything network-related to settle.
const SETTLE: Duration = Duration::from_secs(20);

/// Runs `cmd ARGS` (inside namespace `ns` when given); true on success.
fn run(ns: Option<&str>, args: &[&str]) -> bool {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(args);
            c
        }
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "`{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("cannot run `{}`: {e}", args.join(" "));
            false
        }
    }
}

/// How a NAT router maps its LAN's flows to its public address.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NatKind {
    /// Linux's default: keeps the source port when it is free, so every
    /// destination sees the same public port (endpoint-independent mapping,
    /// like most home routers). Hole punching can work.
    PortPreserving,
    /// A fresh random public port per flow (`--random-fully`; like a
    /// symmetric carrier-grade NAT). Hole punching cannot work.
    Symmetric,
}

/// The namespaces of one test; deleted on drop (also when the test fails).
struct Topology {
    /// Namespace of the relay (the public "internet" router).
    r: String,
    /// Namespaces of the peers behind NAT A and NAT B.
    a: String,
    b: String,
    all: Vec<String>,
    /// One end of each veth pair (deleting it deletes both ends).
    links: Vec<String>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        // A veth end left in the host namespace by a half-finished setup
        // would outlive the namespaces; the others go with them.
        for l in &self.links {
            let _ = Command::new("ip")
                .args(["link", "del", l])
                .stderr(Stdio::null())
                .status();
        }
        for n in &self.all {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Topology {
    /// Builds the topology, or None (after printing why) if namespaces or
    /// iptables are unavailable.
    fn create(test: u8, nat: NatKind) -> Option<Topology> {
        // Unique per process and per test, and short enough for interface
        // names (at most 15 bytes).
        let tag = format!("{:x}{test}", std::process::id() % 0x10_0000);
        let ns = |what: &str| format!("stl-nat-{tag}-{what}");
        let mut topo = Topology {
            r: ns("r"),
            a: ns("a"),
            b: ns("b"),
            all: Vec::new(),
            links: Vec::new(),
        };
        let (na, nb) = (ns("nata"), ns("natb"));
        for n in [&topo.r, &topo.a, &topo.b, &na, &nb] {
            if !run(None, &["ip", "netns", "add", n]) {
                return None;
            }
            topo.all.push(n.clone());
        }
        let v = |what: &str| format!("sn{tag}{what}");
        topo.links = ["ra", "rb", "al", "bl"].iter().map(|w| v(w)).collect();
        let mut ok = true;
        let mut step = |ns: Option<&str>, args: &[&str]| {
            ok = ok && run(ns, args);
        };
        for n in &topo.all {
            step(Some(n), &["ip", "link", "set", "lo", "up"]);
        }
        // veth pairs: (end, its namespace, address) on both sides.
        let links = [
            (
                v("ra"),
                &topo.r,
                "11.77.1.1/24",
                v("ar"),
                &na,
                "11.77.1.2/24",
            ),
            (
                v("rb"),
                &topo.r,
                "11.77.2.1/24",
                v("br"),
                &nb,
                "11.77.2.2/24",
            ),
            (v("al"), &na, "10.0.1.1/24", v("a"), &topo.a, "10.0.1.2/24"),
            (v("bl"), &nb, "10.0.2.1/24", v("b"), &topo.b, "10.0.2.2/24"),
        ];
        for (x, xns, xaddr, y, yns, yaddr) in &links {
            step(
                None,
                &["ip", "link", "add", x, "type", "veth", "peer", "name", y],
            );
            step(None, &["ip", "link", "set", x, "netns", xns]);
            step(None, &["ip", "link", "set", y, "netns", yns]);
            step(Some(xns), &["ip", "addr", "add", xaddr, "dev", x]);
            step(Some(yns), &["ip", "addr", "add", yaddr, "dev", y]);
            step(Some(xns), &["ip", "link", "set", x, "up"]);
            step(Some(yns), &["ip", "link", "set", y, "up"]);
        }
        // R routes between the two public links; each NAT's default route
        // is R, each peer's default route its NAT.
        for n in [&topo.r, &na, &nb] {
            step(Some(n), &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        }
        step(
            Some(&na),
            &["ip", "route", "add", "default", "via", "11.77.1.1"],
        );
        step(
            Some(&nb),
            &["ip", "route", "add", "default", "via", "11.77.2.1"],
        );
        step(
            Some(&topo.a),
            &["ip", "route", "add", "default", "via", "10.0.1.1"],
        );
        step(
            Some(&topo.b),
            &["ip", "route", "add", "default", "via", "10.0.2.1"],
        );
        if !ok {
            return None;
        }
        for (router, wan) in [(&na, v("ar")), (&nb, v("br"))] {
            let mut rule = vec![
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                &wan,
                "-j",
                "MASQUERADE",
            ];
            if nat == NatKind::Symmetric {
                rule.push("--random-fully");
            }
            // Like a home router's firewall: unsolicited packets to the
            // router itself are dropped silently. (Without this the kernel
            // answers a SYN with a reset, which kills the other side's
            // hole-punching dial whenever its SYN arrives first — on these
            // sub-millisecond links it always does.)
            let firewall = [
                "iptables",
                "-A",
                "INPUT",
                "-i",
                &wan,
                "-m",
                "conntrack",
                "--ctstate",
                "NEW,INVALID",
                "-j",
                "DROP",
            ];
            if !run(Some(router), &rule) || !run(Some(router), &firewall) {
                return None;
            }
        }
        Some(topo)
    }
}

/// A `starling serve` running inside a namespace; killed on drop. Its
/// diagnostics (RUST_LOG) go to `serve.log` in its data dir and are printed
/// when the test fails.
struct Serve {
    child: Child,
    startup: Value,
    log: PathBuf,
    name: &'static str,
}

impl Serve {
    fn start(name: &'static str, node: &TestNode, ns: &str, extra: &[&str]) -> Serve {
        let log = node.path().join("serve.log");
        let mut cmd = node.command_in_netns(ns);
        cmd.env(
            "RUST_LOG",
            "starling_core::net=debug,libp2p_dcutr=debug,libp2p_autonat=debug,libp2p_relay=debug",
        );
        cmd.args(["--json", "serve", "--no-mdns"]).args(extra);
        cmd.stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let (child, startup) = spawn_serve(cmd);
        Serve {
            child,
            startup,
            log,
            name,
        }
    }

    fn peer_id(&self) -> String {
        self.startup["peer_id"]
            .as_str()
            .expect("peer id")
            .to_string()
    }

    /// SIGTERM; waits (bounded) for the exit.
    fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            eprintln!(
                "---- {} serve.log (last {} lines) ----",
                self.name,
                tail.len()
            );
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

/// Polls `cond` every 50 ms until it holds; fails after `limit`.
fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The running node's view of `peer` (`starling peers`), if connected.
fn peer_entry(node: &TestNode, peer: &str) -> Option<Value> {
    let peers = node.ok(&["peers"]);
    peers["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer"] == peer)
        .cloned()
}

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

const NO_NAMESPACES: &str = "cannot build NATs with network namespaces here \
     (needs root, `ip netns`, veth and `iptables` with the nat table)";

/// R (relay), A and B (each behind its own NAT), each having accepted an
/// invite of R so it follows R and listens through it. Returns the nodes,
/// the serve processes and B's circuit address (to be dialed through R).
struct World {
    // Fields drop in order: the processes (printing their logs if the test
    // failed) before the data dirs that hold those logs.
    sr: Serve,
    sa: Serve,
    sb: Serve,
    r: TestNode,
    a: TestNode,
    b: TestNode,
    a_id: String,
    b_circuit: String,
}

fn world(topo: &Topology) -> World {
    let (r, _) = TestNode::with_identity("R");
    let (a, a_id) = TestNode::with_identity("A");
    let (b, _) = TestNode::with_identity("B");
    let sr = Serve::start(
        "R",
        &r,
        &topo.r,
        &[
            "--relay",
            "--listen",
            "/ip4/11.77.1.1/tcp/0",
            "--listen",
            "/ip4/11.77.1.1/udp/0/quic-v1",
        ],
    );
    // A and B listen everywhere (TCP and QUIC), as a phone would.
    let sa = Serve::start("A", &a, &topo.a, &[]);
    let sb = Serve::start("B", &b, &topo.b, &[]);
    let mut circuits = Vec::new();
    for who in [&a, &b] {
        let code = r.ok(&["invite", "create"])["code"]
            .as_str()
            .expect("code")
            .to_string();
        let accepted = who.ok(&["invite", "accept", &code]);
        assert_eq!(accepted["relay"], true, "{accepted}");
        assert_eq!(
            accepted["reservation"]["status"], "listening",
            "the relay granted a reservation: {accepted}"
        );
        circuits.push(
            accepted["reservation"]["circuit"]
                .as_str()
                .expect("circuit")
                .to_string(),
        );
    }
    // The circuit address the relay granted ends in B's own peer id.
    let b_circuit = circuits[1].clone();
    assert!(
        b_circuit.contains("/p2p-circuit/") && b_circuit.ends_with(&sb.peer_id()),
        "{b_circuit}"
    );
    World {
        sr,
        sa,
        sb,
        r,
        a,
        b,
        a_id,
        b_circuit,
    }
}

#[test]
fn peers_behind_two_nats_punch_a_hole_and_sync_directly() {
    let Some(topo) = Topology::create(0, NatKind::PortPreserving) else {
        return skip(NO_NAMESPACES);
    };
    let started = Instant::now();
    let mut w = world(&topo);
    let (a_peer, b_peer) = (w.sa.peer_id(), w.sb.peer_id());
    // B follows A; A's posts are what must cross.
    w.b.ok(&["follow", &w.a_id]);
    assert!(peer_entry(&w.a, &b_peer).is_none(), "not connected yet");

    // A knows only R's address and B's peer id: the circuit.
    assert_eq!(w.a.ok(&["dial", &w.b_circuit])["peer"], b_peer.as_str());
    // DCUtR upgrades it to a direct connection through both NATs; the
    // relayed one is then closed.
    eventually(SETTLE, "a direct A–B connection on both sides", || {
        let direct = |node: &TestNode, peer: &str| {
            peer_entry(node, peer).is_some_and(|p| p["relayed"] == false)
        };
        direct(&w.a, &b_peer) && direct(&w.b, &a_peer)
    });
    let entry = peer_entry(&w.a, &b_peer).expect("B connected");
    let addrs = entry["addrs"].to_string();
    assert!(
        addrs.contains("11.77.2.2") && !addrs.contains("p2p-circuit"),
        "A reaches B at NAT B's public address, not through R: {entry}"
    );
    eprintln!("direct after {:?} (from start): {entry}", started.elapsed());

    // With the relay gone, a new post of A still reaches B: over the hole.
    w.sr.stop();
    let text = format!("through the hole {}", nonce());
    w.a.post(&text);
    eventually(SETTLE, "A's post at B", || {
        TestNode::texts(&w.b.ok(&["feed", &w.a_id])).contains(&text)
    });
    let entry = peer_entry(&w.b, &a_peer).expect("A still connected to B");
    assert_eq!(entry["relayed"], false, "{entry}");
    eprintln!("whole test took {:?}", started.elapsed());
}

#[test]
fn behind_symmetric_nats_peers_stay_relayed() {
    let Some(topo) = Topology::create(1, NatKind::Symmetric) else {
        return skip(NO_NAMESPACES);
    };
    let w = world(&topo);
    let (a_peer, b_peer) = (w.sa.peer_id(), w.sb.peer_id());
    w.b.ok(&["follow", &w.a_id]);
    assert_eq!(w.a.ok(&["dial", &w.b_circuit])["peer"], b_peer.as_str());
    let relayed =
        |node: &TestNode, peer: &str| peer_entry(node, peer).is_some_and(|p| p["relayed"] == true);
    eventually(SETTLE, "B lists A as a relayed peer", || {
        relayed(&w.b, &a_peer)
    });
    let entry = peer_entry(&w.a, &b_peer).expect("B connected");
    assert!(
        entry["addrs"].to_string().contains("/p2p-circuit"),
        "A reaches B through R: {entry}"
    );
    // Where the NATs keep ports, the hole is punched well within a second
    // of the circuit dial (the test above); here it cannot be, and the
    // peers keep talking through the relay.
    let text = format!("through the relay {}", nonce());
    w.a.post(&text);
    eventually(SETTLE, "A's post at B", || {
        TestNode::texts(&w.b.ok(&["feed", &w.a_id])).contains(&text)
    });
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(relayed(&w.a, &b_peer), "no hole through symmetric NATs");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn autonat_tells_a_nated_node_it_is_private_and_the_relay_it_is_public() {
    let Some(topo) = Topology::create(2, NatKind::PortPreserving) else {
        return skip(NO_NAMESPACES);
    };
    let started = Instant::now();
    let w = world(&topo);
    // AutoNAT probes 15 s after start; a dial-back into a NAT that drops
    // unsolicited packets fails only after the 10 s TCP connection timeout
    // and the 5 s QUIC handshake timeout.
    let limit = Duration::from_secs(50);
    eventually(limit, "R: public; A and B: private", || {
        [(&w.r, "public"), (&w.a, "private"), (&w.b, "private")]
            .iter()
            .all(|(node, want)| node.ok(&["status"])["reachability"] == *want)
    });
    eprintln!("AutoNAT settled after {:?}", started.elapsed());
    // The relay's public address is confirmed; the NATed nodes have no
    // direct external address (only their relay circuits).
    let r = w.r.ok(&["status"]);
    assert!(r["external"].to_string().contains("/ip4/11.77.1.1/"), "{r}");
    for node in [&w.a, &w.b] {
        let s = node.ok(&["status"]);
        let direct: Vec<&Value> = s["external"]
            .as_array()
            .expect("external")
            .iter()
            .filter(|a| !a.as_str().unwrap_or_default().contains("/p2p-circuit"))
            .collect();
        assert!(direct.is_empty(), "no confirmed direct address: {s}");
    }
}
