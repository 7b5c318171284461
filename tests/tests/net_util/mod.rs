//! Helpers shared by the `net_*` integration tests: in-process nodes on
//! 127.0.0.1 with real sockets, and bounded waiting.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_core::identity::{AtRestKey, InMemoryKeyProvider};
use starling_core::net::{Multiaddr, NetConfig, Network};
use starling_core::node::PageRequest;
use starling_core::{AuthorId, EntryId, Node};

/// One in-process node: a data dir, its store and (while online) its network.
pub struct Peer {
    pub dir: tempfile::TempDir,
    pub key: AtRestKey,
    pub node: Arc<Node>,
    pub net: Option<Network>,
    pub me: AuthorId,
}

impl Peer {
    /// A fresh identity named `name` (offline).
    pub fn new(name: &str) -> Peer {
        let dir = tempfile::Builder::new()
            .prefix("starling-net-")
            .tempdir()
            .expect("tempdir");
        let key = AtRestKey::random().expect("key");
        let node = open(dir.path(), &key);
        let (me, _) = node.create_identity(Some(name)).expect("identity");
        Peer {
            dir,
            key,
            node,
            net: None,
            me,
        }
    }

    /// Goes online on 127.0.0.1 with `config` (loopback defaults if None).
    pub async fn start(&mut self, config: Option<NetConfig>) -> Network {
        let config = config.unwrap_or_else(NetConfig::loopback);
        let net = Network::start(self.node.clone(), config)
            .await
            .expect("network start");
        self.net = Some(net.clone());
        net
    }

    /// Goes offline (gracefully) and reopens the store, as after a restart.
    pub async fn stop(&mut self) {
        if let Some(net) = self.net.take() {
            net.stop().await;
        }
    }

    /// Reopens the node from disk (a process restart).
    pub fn reopen(&mut self) {
        assert!(self.net.is_none(), "stop first");
        self.node = open(self.dir.path(), &self.key);
    }

    pub fn net(&self) -> &Network {
        self.net.as_ref().expect("online")
    }

    /// A dialable address of this node.
    pub fn addr(&self) -> Multiaddr {
        self.net()
            .listen_addrs()
            .into_iter()
            .next()
            .expect("listening")
    }

    /// Connects to `other`.
    pub async fn dial(&self, other: &Peer) {
        self.net().dial(other.addr()).await.expect("dial");
    }

    pub fn post(&self, text: &str) -> EntryId {
        self.node.post(text, None).expect("post")
    }

    /// Texts of `author`'s posts in this store (newest first).
    pub fn texts_of(&self, author: AuthorId) -> Vec<String> {
        self.node
            .feed(author, PageRequest::first(200))
            .expect("feed")
            .items
            .into_iter()
            .filter_map(|p| p.text)
            .collect()
    }

    /// Whether this store holds any entry of `author`.
    pub fn holds_feed(&self, author: AuthorId) -> bool {
        let n: i64 = self
            .node
            .store()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM entries WHERE author = ?1",
                    [author.as_bytes().as_slice()],
                    |r| r.get(0),
                )?)
            })
            .expect("count");
        n > 0
    }
}

fn open(dir: &Path, key: &AtRestKey) -> Arc<Node> {
    Arc::new(Node::open(dir, Arc::new(InMemoryKeyProvider::new(key.clone()))).expect("open node"))
}

/// Polls `cond` every 25 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `f` with an overall time limit (so a hang fails instead of stalling CI).
pub async fn bounded<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .expect("test exceeded its time limit")
}
