//! The one error type apps see. Kotlin: `StarlingException` subclasses;
//! Swift: `StarlingError` cases. Every core error is converted here, at the
//! boundary, into a variant the app can act on plus a human-readable detail.

/// Why a Starling call failed.
///
/// Each case says what the app should do about it; `detail` is a
/// human-readable explanation for logs (not localised, not for parsing).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum StarlingError {
    /// A printable id (`stl1…` author, `stle1…` entry) is malformed.
    /// Fix the input; retrying will not help.
    #[error("invalid id: {detail}")]
    InvalidId {
        /// What was wrong.
        detail: String,
    },
    /// An argument was not acceptable: empty or too long text, a limit out of
    /// range, a malformed cursor, a recovery phrase that is not valid.
    /// Fix the input; retrying will not help.
    #[error("invalid input: {detail}")]
    InvalidInput {
        /// What was wrong.
        detail: String,
    },
    /// This node has no identity yet: call `createIdentity` or
    /// `restoreIdentity` first.
    #[error("no identity: {detail}")]
    NoIdentity {
        /// Explanation.
        detail: String,
    },
    /// An identity already exists in this data dir; creating or restoring
    /// another one is refused so that keys are never overwritten.
    #[error("identity exists: {detail}")]
    IdentityExists {
        /// Explanation.
        detail: String,
    },
    /// The at-rest key was unavailable (the app's `AtRestKeyStore` failed, the
    /// device is locked) or did not open the sealed secrets. Retry after the
    /// user unlocks the device; a different key will never work.
    #[error("locked: {detail}")]
    Locked {
        /// Explanation.
        detail: String,
    },
    /// The entry, author or object referred to is not in the local store
    /// (it may not have been synced yet).
    #[error("not found: {detail}")]
    NotFound {
        /// What was missing.
        detail: String,
    },
    /// Data was refused by the feed rules (bad signature, broken chain,
    /// malformed bytes, bad key). Nothing was written.
    #[error("rejected: {detail}")]
    Rejected {
        /// Why it was refused.
        detail: String,
    },
    /// The database or file system failed (disk full, permissions, a store
    /// written by a newer app version). Usually not fixable by retrying at once.
    #[error("storage: {detail}")]
    Storage {
        /// The underlying failure.
        detail: String,
    },
    /// The node was closed; open a new one.
    #[error("closed: {detail}")]
    Closed {
        /// Explanation.
        detail: String,
    },
    /// A bug or an unexpected failure inside the library (including an
    /// exception thrown by an app callback that it did not declare). Please
    /// report it with the detail.
    #[error("internal error: {detail}")]
    Internal {
        /// The failure.
        detail: String,
    },
    // Cases added after the first release go below, in order, so the
    // existing cases keep their wire index.
    /// A network operation failed: an address could not be listened on or
    /// dialled, a peer could not be reached or did not answer in time.
    /// Usually worth retrying later (another network, the peer online).
    #[error("network: {detail}")]
    Network {
        /// The underlying failure.
        detail: String,
    },
    /// Networking is not running on this node: call `startNetwork` first
    /// (or it was stopped with `stopNetwork`).
    #[error("network not running: {detail}")]
    NetworkNotRunning {
        /// Explanation.
        detail: String,
    },
    /// Networking was started already; call `stopNetwork` before starting
    /// it again with another configuration.
    #[error("network already running: {detail}")]
    NetworkRunning {
        /// Explanation.
        detail: String,
    },
    /// No end-to-end session with the contact and no prekey bundle of
    /// theirs is stored yet: follow them and let their feed sync (their
    /// node publishes the bundle when its network starts), then retry.
    #[error("no prekey bundle: {detail}")]
    NoPrekeyBundle {
        /// Whose bundle is missing.
        detail: String,
    },
    /// The contact's identity key changed since it was pinned: sending is
    /// blocked until the user compares safety numbers and calls
    /// `markVerified`, or accepts the change with `acceptIdentityChange`.
    #[error("identity key changed: {detail}")]
    IdentityKeyChanged {
        /// Whose key changed.
        detail: String,
    },
    /// A group operation is not allowed: not an admin, not a member, the
    /// group is full, …
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Why it was refused.
        detail: String,
    },
}

impl StarlingError {
    pub(crate) fn closed() -> Self {
        StarlingError::Closed {
            detail: "the node has been closed".into(),
        }
    }

    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        StarlingError::Internal {
            detail: detail.to_string(),
        }
    }

    pub(crate) fn network_not_running() -> Self {
        StarlingError::NetworkNotRunning {
            detail: "call startNetwork first".into(),
        }
    }

    /// A core error from a network operation: I/O failures there are
    /// network failures (dial, listen, timeouts), not storage ones.
    pub(crate) fn from_net(e: starling_core::Error) -> Self {
        match e {
            starling_core::Error::Io(io) => StarlingError::Network {
                detail: io.to_string(),
            },
            other => other.into(),
        }
    }

    pub(crate) fn invalid_input(detail: impl std::fmt::Display) -> Self {
        StarlingError::InvalidInput {
            detail: detail.to_string(),
        }
    }
}

/// A foreign callback (key store, listener, log sink) threw something it did
/// not declare: surfaced as [`StarlingError::Internal`].
impl From<uniffi::UnexpectedUniFFICallbackError> for StarlingError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        StarlingError::Internal {
            detail: format!("app callback failed: {}", e.reason),
        }
    }
}

/// Work spawned on the library's runtime panicked or was cancelled.
impl From<tokio::task::JoinError> for StarlingError {
    fn from(e: tokio::task::JoinError) -> Self {
        if e.is_panic() {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            StarlingError::internal(format!("panic: {msg}"))
        } else {
            StarlingError::internal("task cancelled (runtime shutting down)")
        }
    }
}

/// The boundary conversion from the core's internal errors.
impl From<starling_core::Error> for StarlingError {
    fn from(e: starling_core::Error) -> Self {
        use starling_core::Error as E;
        let detail = e.to_string();
        match e {
            E::InvalidId { .. } => StarlingError::InvalidId { detail },
            E::InvalidInput(_) => StarlingError::InvalidInput { detail },
            E::NoIdentity => StarlingError::NoIdentity { detail },
            E::IdentityExists => StarlingError::IdentityExists { detail },
            E::Locked(_) => StarlingError::Locked { detail },
            E::NotFound(_) => StarlingError::NotFound { detail },
            E::Decode(_) | E::Validation(_) | E::BatchRejected { .. } | E::Crypto(_) => {
                StarlingError::Rejected { detail }
            }
            E::Storage(_) | E::SchemaTooNew { .. } | E::Io(_) => StarlingError::Storage { detail },
            _ => StarlingError::Internal { detail },
        }
    }
}

/// The boundary conversion from the messaging layer's errors.
impl From<starling_core::messaging::MessagingError> for StarlingError {
    fn from(e: starling_core::messaging::MessagingError) -> Self {
        use starling_core::messaging::MessagingError as M;
        let detail = e.to_string();
        match e {
            M::Core(e) => e.into(),
            M::InvalidInput(_) => StarlingError::InvalidInput { detail },
            M::UnknownGroup => StarlingError::NotFound { detail },
            M::NoBundle(_) => StarlingError::NoPrekeyBundle { detail },
            M::Untrusted(_) => StarlingError::IdentityKeyChanged { detail },
            M::Forbidden(_) => StarlingError::Forbidden { detail },
            _ => StarlingError::Rejected { detail },
        }
    }
}
