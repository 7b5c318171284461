//! Peer-to-peer replication: the `/starling/sync/1` protocol over any byte
//! stream, specified byte by byte in docs/PROTOCOL.md §6.
//!
//! Guarantees: a node stores only verified entries of feeds in its scope
//! (N follow hops plus hosted feeds, never a blocked one), every received
//! batch is stored atomically or not at all, and a misbehaving peer ends
//! only its own session with a typed [`SyncError`].
//!
//! The network layer calls [`SyncEngine::run_session`] for each peer stream;
//! the engine is transport-agnostic (any `futures` `AsyncRead +
//! AsyncWrite`), so tests run it over in-memory pipes.

mod carrier;
mod clock;
mod engine;
mod error;
mod frame;
mod messages;
mod scope;
mod session;
mod watch;

pub use engine::{Limits, PeerSyncStatus, SessionSummary, SyncConfig, SyncEngine};
pub use error::{Penalty, SyncError};
pub use frame::{DEFAULT_MAX_FRAME, MIN_MAX_FRAME};
pub use messages::PROTOCOL_NAME;
pub use watch::WatchHandle;

#[cfg(test)]
mod tests;
