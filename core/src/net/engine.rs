//! The one place the network layer meets the sync engine and the node's
//! event bus (both owned by the sync module, see docs/CONTRACT-draft.md
//! "Peer sync"). Everything else in `net` goes through these names, so the
//! engine can evolve without touching the swarm code.

use crate::Node;
use crate::events::NodeEvent;
use crate::identity::id::BlobId;

pub use crate::sync::{
    PeerSyncStatus, Penalty, SessionSummary, SyncConfig, SyncEngine, SyncError, WatchHandle,
};

/// Announces a new peer connection on the node's event bus.
pub(crate) fn peer_connected(node: &Node, peer: &str) {
    node.emit(NodeEvent::PeerConnected {
        peer: peer.to_string(),
    });
}

/// Announces the end of a peer's last connection.
pub(crate) fn peer_disconnected(node: &Node, peer: &str) {
    node.emit(NodeEvent::PeerDisconnected {
        peer: peer.to_string(),
    });
}

/// Announces a blob fetched from a peer and verified.
pub(crate) fn blob_fetched(node: &Node, blob: BlobId, size: u64) {
    node.emit(NodeEvent::BlobFetched { blob, size });
}
