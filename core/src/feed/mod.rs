//! Signed append-only feeds: the entry format, the payload types and the
//! rules a foreign entry must pass before it is stored.
//!
//! An entry is a small fixed-layout header (author, seq, previous entry id,
//! timestamp, payload length and hash) signed with the author's Ed25519 key.
//! The payload travels and is stored apart from it, so a payload can be
//! deleted while the hash chain stays verifiable.

pub mod entry;
pub mod payload;
pub mod validate;

pub use entry::{ENTRY_VERSION, Entry, MAX_ENTRY_LEN, MAX_PAYLOAD_LEN};
pub use payload::{BlobRef, EncryptionKeyAnnouncement, Payload, PayloadTag, Post, Profile};
pub use validate::ValidationError;
