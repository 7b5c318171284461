//! The exported async methods polled the way Kotlin and Swift poll them: by
//! an executor that is not tokio. Everything that needs tokio must run on the
//! library's own runtime, so this must not fail with "there is no reactor
//! running". (The Kotlin suite in bindings/kotlin tests the real bindings.)

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use starling_ffi::{
    AtRestKeyProvider, NetworkConfig, NodeConfig, StarlingError, StarlingNode, generate_at_rest_key,
};

/// A minimal non-tokio executor: parks the thread until woken.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

struct Keys(Vec<u8>);

impl AtRestKeyProvider for Keys {
    fn at_rest_key(&self) -> Result<Vec<u8>, StarlingError> {
        Ok(self.0.clone())
    }
}

fn open(dir: &std::path::Path) -> Arc<StarlingNode> {
    let keys = Arc::new(Keys(generate_at_rest_key().expect("key")));
    let config = NodeConfig {
        data_dir: dir.to_string_lossy().into_owned(),
    };
    block_on(StarlingNode::open(config, keys)).expect("open")
}

#[test]
fn async_methods_run_outside_tokio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(&dir.path().join("node"));
    let created = block_on(node.create_identity(Some("rust".into()))).expect("identity");
    assert!(created.author_id.starts_with("stl1"));
    let id = block_on(node.post("polled without tokio".into(), None)).expect("post");
    let page = block_on(node.timeline(10, None)).expect("timeline");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, id);
    assert_eq!(page.items[0].text.as_deref(), Some("polled without tokio"));
    assert_eq!(page.items[0].author_name.as_deref(), Some("rust"));
}

#[test]
fn core_errors_become_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(&dir.path().join("node"));
    assert!(matches!(
        block_on(node.timeline(10, None)),
        Err(StarlingError::NoIdentity { .. })
    ));
    block_on(node.create_identity(None)).expect("identity");
    assert!(matches!(
        block_on(node.react("stl1nope".into(), "x".into())),
        Err(StarlingError::InvalidId { .. })
    ));
    assert!(matches!(
        block_on(node.timeline(0, None)),
        Err(StarlingError::InvalidInput { .. })
    ));
    assert!(matches!(
        block_on(node.restore_identity("one two three".into())),
        Err(StarlingError::InvalidInput { .. })
    ));
    node.shutdown();
    assert!(matches!(
        block_on(node.post("late".into(), None)),
        Err(StarlingError::Closed { .. })
    ));
}

/// Networking needs tokio's reactor (sockets, timers): started, dialled,
/// queried and stopped from a non-tokio executor, it must run on the
/// library runtime and never fail with "there is no reactor running".
#[test]
fn networking_runs_outside_tokio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loopback = || NetworkConfig {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".into()],
        mdns: false,
        bootstrap: vec![],
        redial_known_peers: false,
    };
    let a = open(&dir.path().join("a"));
    let b = open(&dir.path().join("b"));
    block_on(a.create_identity(None)).expect("identity a");
    block_on(b.create_identity(None)).expect("identity b");
    block_on(a.start_network(loopback())).expect("start a");
    block_on(b.start_network(loopback())).expect("start b");
    let addr = b.listen_addresses().expect("addrs").remove(0);
    let peer = block_on(a.dial(addr)).expect("dial");
    assert_eq!(peer, b.peer_id().expect("peer id"));
    assert!(a.peers().expect("peers").iter().any(|p| p.peer_id == peer));
    let blob = block_on(b.add_blob(b"outside tokio".to_vec(), "text/plain".into())).expect("add");
    let bytes = block_on(a.fetch_blob(blob.id)).expect("fetch");
    assert_eq!(bytes, b"outside tokio");
    block_on(a.stop_network()).expect("stop a");
    block_on(b.stop_network()).expect("stop b");
    assert!(matches!(
        a.peers(),
        Err(StarlingError::NetworkNotRunning { .. })
    ));
    a.shutdown();
    assert!(matches!(
        block_on(a.dial("/ip4/127.0.0.1/tcp/1".into())),
        Err(StarlingError::Closed { .. })
    ));
}
