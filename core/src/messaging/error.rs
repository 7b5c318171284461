//! The messaging layer's error type: one typed variant per way an untrusted
//! message, bundle or membership change can be refused.
//!
//! Guarantee: every refusal of untrusted input is one of these variants,
//! never a panic, and no variant carries secret bytes.

use crate::encoding::DecodeError;

/// Everything that can go wrong in [`crate::messaging`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// The message was already decrypted once; it is not delivered again.
    #[error("duplicate message: already received")]
    Duplicate,
    /// A header claims a counter too far ahead of what was received; refused
    /// before any key is derived.
    #[error("message counter jumps {jump} ahead, more than the limit {limit}")]
    TooFarAhead {
        /// How many message keys the header would have made us derive.
        jump: u64,
        /// The limit ([`crate::messaging::MAX_SKIP`]).
        limit: u32,
    },
    /// Authentication failed or no key opens the message: tampered,
    /// truncated, or addressed to a session we no longer hold.
    #[error("message could not be decrypted (tampered, or for a session we no longer hold)")]
    Undecryptable,
    /// A signature (prekey bundle, binding, membership change, group
    /// message) did not verify.
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// A public key is a low-order X25519 point, or a Diffie-Hellman result
    /// was all zero (non-contributory).
    #[error("low-order X25519 key or non-contributory Diffie-Hellman result")]
    LowOrderKey,
    /// A session-setup message was seen before (same ephemeral key).
    #[error("replayed session-setup message")]
    ReplayedSetup,
    /// The signed prekey or one-time prekey the sender used is no longer
    /// held (rotated out, or the one-time prekey was consumed by another
    /// initiator first).
    #[error("the prekey this message was made for is no longer available: {0}")]
    PrekeyUnavailable(&'static str),
    /// Sending is blocked: the contact's identity key changed and the user has
    /// neither re-verified nor accepted it.
    #[error("the identity key of {0} changed: verify or accept it before sending")]
    Untrusted(crate::AuthorId),
    /// No session with the peer and no prekey bundle to start one.
    #[error("no session with {0} and no prekey bundle to start one")]
    NoBundle(crate::AuthorId),
    /// The envelope's expiry is in the past.
    #[error("envelope expired")]
    Expired,
    /// A membership change or group operation is not allowed (non-admin
    /// signer, unknown previous entry, not a member, group full...).
    #[error("group operation refused: {0}")]
    Forbidden(String),
    /// The named group is unknown here.
    #[error("unknown group")]
    UnknownGroup,
    /// Bytes did not decode.
    #[error("malformed: {0}")]
    Decode(#[from] DecodeError),
    /// A request from the app was not acceptable (too long, empty...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Storage, sealing or another core failure.
    #[error(transparent)]
    Core(#[from] crate::Error),
}

impl From<rusqlite::Error> for MessagingError {
    fn from(e: rusqlite::Error) -> Self {
        MessagingError::Core(crate::Error::Storage(e))
    }
}

impl From<MessagingError> for crate::Error {
    /// For callers that speak the core [`crate::Error`] (the `Node` facade):
    /// storage and sealing errors pass through, refusals become
    /// [`crate::Error::Crypto`] / [`crate::Error::InvalidInput`].
    fn from(e: MessagingError) -> Self {
        match e {
            MessagingError::Core(e) => e,
            MessagingError::Decode(e) => crate::Error::Decode(e),
            MessagingError::InvalidInput(s) => crate::Error::InvalidInput(s),
            MessagingError::UnknownGroup => crate::Error::NotFound("group".into()),
            other => crate::Error::Crypto(other.to_string()),
        }
    }
}

/// Result with [`MessagingError`].
pub type MResult<T> = std::result::Result<T, MessagingError>;
