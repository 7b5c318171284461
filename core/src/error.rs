//! The core layer's error type: one enum, with a typed variant for every way
//! untrusted input or the environment can fail.

use crate::encoding::DecodeError;
use crate::feed::validate::ValidationError;

/// Everything that can go wrong inside `starling-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A printable id (author, entry or blob) could not be parsed.
    #[error("invalid {kind} id {input:?}: {reason}")]
    InvalidId {
        /// Which kind of id was expected ("author", "entry", "blob").
        kind: &'static str,
        /// The text that was given (ids are public, so echoing them is fine).
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Bytes from the network, a file or the app did not decode.
    #[error("malformed data: {0}")]
    Decode(#[from] DecodeError),
    /// A well-formed entry broke a feed rule (signature, chain, size, time).
    #[error("entry rejected: {0}")]
    Validation(#[from] ValidationError),
    /// One entry of an ingested batch failed validation; nothing of the batch
    /// was written.
    #[error("entry {index} of the batch rejected, nothing written: {reason}")]
    BatchRejected {
        /// Position of the offending entry in the batch.
        index: usize,
        /// Why it was rejected.
        reason: ValidationError,
    },
    /// A key or signature was refused (weak key, bad signature, bad phrase).
    #[error("cryptography: {0}")]
    Crypto(String),
    /// The at-rest key could not be obtained from the embedder, or did not
    /// open the sealed secrets (wrong passphrase / key).
    #[error("secret store locked: {0}")]
    Locked(String),
    /// This node has no identity yet.
    #[error("no identity yet: create one with `init` (or restore with `init --restore`)")]
    NoIdentity,
    /// An identity already exists in this data dir.
    #[error("an identity already exists in this data dir")]
    IdentityExists,
    /// A referenced entry, author or object is not in the store.
    #[error("not found: {0}")]
    NotFound(String),
    /// A request from the app was not acceptable (too long, empty, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// SQLite failed.
    #[error("storage: {0}")]
    Storage(#[from] rusqlite::Error),
    /// The store was written by a newer version of Starling.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version found in the database file.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// File-system error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
