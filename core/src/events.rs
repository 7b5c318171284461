//! Events a [`crate::Node`] reports to the app and to its own subsystems
//! (sync, net): new entries, peers coming and going, sync progress, blobs.
//!
//! Guarantees: `EntryAdded` is emitted only after the entry's transaction
//! committed (it is durably stored when you see the event), once per entry
//! and process; a slow subscriber never blocks the node — it sees
//! `RecvError::Lagged` instead and should re-read what it shows.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

use crate::identity::id::{AuthorId, BlobId, EntryId};

/// Something that happened in a node. Subscribe with
/// [`crate::Node::subscribe`]; new variants may be added.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// An entry was stored: published here, replicated from a peer, imported,
    /// or written by another process on the same data dir (e.g. the CLI's
    /// `starling post` while `starling serve` runs).
    EntryAdded {
        /// The entry.
        id: EntryId,
        /// Its feed.
        author: AuthorId,
        /// Its position in the feed.
        seq: u64,
        /// Whether the feed is the local user's own.
        own: bool,
    },
    /// A peer connection was established (emitted by the network layer).
    PeerConnected {
        /// The peer id (printable).
        peer: String,
    },
    /// A peer connection ended (emitted by the network layer).
    PeerDisconnected {
        /// The peer id (printable).
        peer: String,
    },
    /// Catch-up progress with one peer: entries received so far in the
    /// session and how many the peer still announced to send.
    SyncProgress {
        /// The peer id (printable).
        peer: String,
        /// Entries stored from this peer in this session.
        received: u64,
        /// Entries the peer announced and has not sent yet.
        remaining: u64,
    },
    /// A blob was fetched and verified (emitted by the network layer).
    BlobFetched {
        /// The blob.
        blob: BlobId,
        /// Its size in bytes.
        size: u64,
    },
    /// An end-to-end encrypted message arrived, was decrypted and stored
    /// (1:1 or group). The text is not in the event (events may be logged):
    /// read it from the conversation's history.
    MessageReceived {
        /// Its row id in the message history.
        message_id: i64,
        /// The conversation it belongs to.
        conversation: crate::messaging::Conversation,
        /// Who sent it (authenticated by the session or sender key).
        sender: AuthorId,
    },
}

/// How many events a subscriber may fall behind before it sees `Lagged`.
pub const EVENT_CAPACITY: usize = 4096;

/// Above this many remembered ids, the set is reset: ids only linger there
/// when a write failed after noting them (the watcher consumes the rest).
const LOCAL_IDS_CAP: usize = 100_000;

/// The node's event channel, plus the bookkeeping that lets the external
/// write watcher tell this process's writes from another process's.
pub(crate) struct EventBus {
    tx: broadcast::Sender<NodeEvent>,
    /// Entries written by this process, noted before their commit, that the
    /// watcher has not passed yet. Only kept while a watcher runs.
    local: Mutex<HashSet<EntryId>>,
    watchers: AtomicUsize,
}

impl EventBus {
    pub(crate) fn new() -> EventBus {
        let (tx, _) = broadcast::channel(EVENT_CAPACITY);
        EventBus {
            tx,
            local: Mutex::new(HashSet::new()),
            watchers: AtomicUsize::new(0),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.tx.subscribe()
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        // No subscriber is fine: nobody is listening.
        let _ = self.tx.send(event);
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashSet<EntryId>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes entries this process is about to commit, so the watcher skips
    /// them. Must be called inside the write transaction, before the commit.
    pub(crate) fn note_local(&self, ids: impl IntoIterator<Item = EntryId>) {
        if self.watchers.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut local = self.local();
        if local.len() > LOCAL_IDS_CAP {
            local.clear();
        }
        local.extend(ids);
    }

    /// Whether `id` was written by this process (and forgets it).
    pub(crate) fn take_local(&self, id: &EntryId) -> bool {
        self.local().remove(id)
    }

    pub(crate) fn watcher_started(&self) {
        self.watchers.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn watcher_stopped(&self) {
        if self.watchers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.local().clear();
        }
    }
}
