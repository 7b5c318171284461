//! Node events pushed to the app: a listener the app implements, a
//! [`Subscription`] handle that stops it, and the event types. The Kotlin
//! and Swift layers turn this into a `Flow` / `AsyncStream`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, broadcast};

use crate::error::StarlingError;
use crate::runtime::runtime;

/// Event subscriptions whose delivery task is running (see `diagnostics`).
pub(crate) static LIVE_SUBSCRIPTIONS: AtomicU64 = AtomicU64::new(0);

/// Something that happened in the node. More kinds may arrive with later
/// releases: handle unknown cases with a default branch (`else ->` /
/// `default:`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum NodeEvent {
    /// An entry was stored: published here (`own` = true) or received from a
    /// peer or an import. Refresh the views that show it.
    EntryAdded {
        /// The entry's id (`stle1…`).
        id: String,
        /// Its author (`stl1…`).
        author: String,
        /// Its position in the author's feed (1, 2, …).
        seq: u64,
        /// True if this node published it.
        own: bool,
    },
    /// The listener fell behind and `count` events were dropped. Reload the
    /// views you keep up to date from events.
    EventsMissed {
        /// How many events were lost.
        count: u64,
    },
    // Kinds added after the first release go below, in order.
    /// A peer connection was established (networking running).
    PeerConnected {
        /// The peer's network id (`12D3Koo…`).
        peer_id: String,
    },
    /// A peer connection ended.
    PeerDisconnected {
        /// The peer's network id (`12D3Koo…`).
        peer_id: String,
    },
    /// Catch-up progress with one peer: entries stored from it so far in
    /// the session and how many it announced and has not sent yet.
    SyncProgress {
        /// The peer's network id (`12D3Koo…`).
        peer_id: String,
        /// Entries stored from this peer in this session.
        received: u64,
        /// Entries the peer announced and has not sent yet.
        remaining: u64,
    },
    /// A blob was fetched from a peer and verified (see `fetchBlob`).
    BlobFetched {
        /// The blob id (`stlb1…`).
        blob_id: String,
        /// Its size in bytes.
        size: u64,
    },
    /// An end-to-end encrypted message arrived and was stored. The text is
    /// not in the event: read the conversation's messages.
    MessageReceived {
        /// Its id in the message history.
        message_id: i64,
        /// The conversation it belongs to.
        conversation: crate::messaging::Conversation,
        /// Who sent it (`stl1…`).
        sender_id: String,
    },
}

/// Receives node events; implement it and pass it to
/// `StarlingNode.subscribe` (or use the `events()` Flow / AsyncStream
/// helpers, which do that for you).
///
/// Events are delivered one at a time, in order, on a library background
/// thread: do not block for long; hand work to your own scope or queue.
#[uniffi::export(foreign)]
pub trait NodeEventListener: Send + Sync {
    /// Called for each event. Throwing does not stop the subscription; the
    /// error is logged.
    fn on_event(&self, event: NodeEvent) -> Result<(), StarlingError>;
}

struct SubState {
    cancelled: AtomicBool,
    wake: Notify,
}

impl SubState {
    fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            // notify_one stores a permit if the task is not waiting yet.
            self.wake.notify_one();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A running event subscription. Events flow to its listener until
/// `cancel()` is called, the object is released (Kotlin
/// `close()`, Swift deinit) or the node shuts down.
#[derive(uniffi::Object)]
pub struct Subscription {
    state: Arc<SubState>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("active", &self.is_active())
            .finish()
    }
}

#[uniffi::export]
impl Subscription {
    /// Stops delivery: no new `onEvent` call starts after this returns (one
    /// already running finishes). The listener is released shortly after.
    /// Idempotent.
    pub fn cancel(&self) {
        self.state.cancel();
    }

    /// False once cancelled or once the node shut down.
    pub fn is_active(&self) -> bool {
        !self.state.is_cancelled()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.state.cancel();
    }
}

/// The subscriptions of one node, cancelled when it shuts down.
#[derive(Default)]
pub(crate) struct SubscriptionSet(Mutex<Vec<Weak<SubState>>>);

impl SubscriptionSet {
    fn add(&self, s: &Arc<SubState>) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|w| w.strong_count() > 0);
            v.push(Arc::downgrade(s));
        }
    }

    pub(crate) fn cancel_all(&self) {
        let subs = match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return,
        };
        for s in subs.iter().filter_map(Weak::upgrade) {
            s.cancel();
        }
    }
}

/// Decrements the live count however the delivery task ends.
struct LiveGuard;

impl Drop for LiveGuard {
    fn drop(&mut self) {
        LIVE_SUBSCRIPTIONS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The app-facing form of a core event; `None` for kinds this release does
/// not expose (the core may add some).
pub(crate) fn from_core(event: starling_core::events::NodeEvent) -> Option<NodeEvent> {
    use starling_core::events::NodeEvent as E;
    match event {
        E::EntryAdded {
            id,
            author,
            seq,
            own,
        } => Some(NodeEvent::EntryAdded {
            id: id.to_string(),
            author: author.to_string(),
            seq,
            own,
        }),
        E::PeerConnected { peer } => Some(NodeEvent::PeerConnected { peer_id: peer }),
        E::PeerDisconnected { peer } => Some(NodeEvent::PeerDisconnected { peer_id: peer }),
        E::SyncProgress {
            peer,
            received,
            remaining,
        } => Some(NodeEvent::SyncProgress {
            peer_id: peer,
            received,
            remaining,
        }),
        E::BlobFetched { blob, size } => Some(NodeEvent::BlobFetched {
            blob_id: blob.to_string(),
            size,
        }),
        E::MessageReceived {
            message_id,
            conversation,
            sender,
        } => Some(NodeEvent::MessageReceived {
            message_id,
            conversation: conversation.into(),
            sender_id: sender.to_string(),
        }),
        _ => None,
    }
}

/// Starts delivering `rx` (converted by `convert`; `None` = not for apps) to
/// `listener` on the library runtime.
pub(crate) fn start<T, F>(
    set: &SubscriptionSet,
    mut rx: broadcast::Receiver<T>,
    convert: F,
    listener: Arc<dyn NodeEventListener>,
) -> Arc<Subscription>
where
    T: Clone + Send + 'static,
    F: Fn(T) -> Option<NodeEvent> + Send + 'static,
{
    let state = Arc::new(SubState {
        cancelled: AtomicBool::new(false),
        wake: Notify::new(),
    });
    set.add(&state);
    LIVE_SUBSCRIPTIONS.fetch_add(1, Ordering::SeqCst);
    let guard = LiveGuard;
    let task_state = state.clone();
    runtime().spawn(async move {
        let _guard = guard;
        let state = task_state;
        loop {
            let event = tokio::select! {
                biased;
                _ = state.wake.notified() => break,
                r = rx.recv() => match r {
                    Ok(ev) => match convert(ev) {
                        Some(e) => e,
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(count)) => {
                        NodeEvent::EventsMissed { count }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if state.is_cancelled() {
                break;
            }
            // The app's callback may block: tell tokio so other tasks move on.
            let l = listener.clone();
            if let Err(e) = tokio::task::block_in_place(move || l.on_event(event)) {
                tracing::warn!("event listener failed: {e}");
            }
        }
        state.cancelled.store(true, Ordering::SeqCst);
        // `listener` (the app's object) is released here, with the task.
    });
    Arc::new(Subscription { state })
}
