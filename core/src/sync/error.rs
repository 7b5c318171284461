//! Why a sync session ended badly, and what that means for the peer.
//!
//! Guarantees: every way a remote peer can misbehave maps to a typed
//! variant, and [`SyncError::penalty`] says whether to keep talking to it.

use std::time::Duration;

use crate::error::Error;

/// How the node should treat a peer after a session error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Penalty {
    /// Not the peer's fault (network, local storage): reconnect freely.
    None,
    /// The peer misbehaved: disconnect it and refuse it for a growing
    /// back-off period.
    Disconnect,
    /// The peer sent forged data: refuse it for a long time.
    Ban,
}

/// Why a sync session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A frame or message did not decode (bad type, lengths, varints...).
    #[error("malformed message from peer: {0}")]
    Malformed(String),
    /// A frame announced more bytes than the agreed maximum.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer's Hello did not prove it holds the claimed identity key.
    #[error("bad hello: {0}")]
    BadHello(String),
    /// Entries failed validation (signature, payload hash, chain rules...);
    /// nothing of their batch was stored.
    #[error("peer sent invalid entries: {0}")]
    InvalidEntries(String),
    /// A well-formed message at the wrong time or for the wrong feed.
    #[error("protocol violation: {0}")]
    ProtocolViolation(String),
    /// The peer exceeded a rate or volume limit of the session.
    #[error("peer exceeded a limit: {0}")]
    Flood(String),
    /// The peer is in back-off after earlier misbehaviour.
    #[error("peer is backed off for another {retry_in:?}")]
    BackedOff {
        /// When it may be tried again.
        retry_in: Duration,
    },
    /// Reading or writing the stream failed.
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not complete in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The stream closed before the handshake completed.
    #[error("stream closed during the handshake")]
    Closed,
    /// The local store failed (or the identity is missing or locked).
    #[error("local store: {0}")]
    Store(#[from] Error),
}

impl SyncError {
    /// What this error means for the peer.
    pub fn penalty(&self) -> Penalty {
        match self {
            SyncError::BadHello(_) | SyncError::InvalidEntries(_) => Penalty::Ban,
            SyncError::Malformed(_)
            | SyncError::Oversized { .. }
            | SyncError::ProtocolViolation(_)
            | SyncError::Flood(_) => Penalty::Disconnect,
            SyncError::BackedOff { .. }
            | SyncError::Io(_)
            | SyncError::Timeout
            | SyncError::Closed
            | SyncError::Store(_) => Penalty::None,
        }
    }
}
