//! End-to-end encrypted messaging: X3DH session setup over signed prekey
//! bundles published in the feed, the Double Ratchet with header encryption
//! for 1:1 conversations, Sender Keys with a signed membership chain for
//! small groups, and padded envelopes that relays store and forward blind.
//!
//! Guarantees: the protocols are pure state machines (no I/O; decryption
//! works on a copy and returns the new state), every secret at rest is
//! sealed under the embedder's at-rest key, every secret in memory is wiped
//! on drop and redacted in `Debug`, and untrusted bytes never panic.
//!
//! Entry point: [`Messaging`] (in [`api`]). Formats: docs/PROTOCOL.md §5;
//! what an observer learns: docs/PRIVACY.md, "Messaging".

pub mod api;
pub mod envelope;
pub mod error;
mod header;
pub mod membership;
mod primitives;
mod ratchet;
pub mod safety;
mod sender_keys;
mod skipped;
mod store;
pub mod x3dh;

#[cfg(test)]
mod kat;
#[cfg(test)]
mod tests;

pub use api::{
    Conversation, ConversationSummary, GroupId, GroupInfo, Messaging, Received, ReceivedMessage,
    StoredMessage, TrustState,
};
pub use envelope::{Envelope, MailboxTag, envelope_size_buckets};
pub use error::MessagingError;
pub use ratchet::MAX_SKIP;
pub use skipped::{MAX_SKIPPED, SKIPPED_MAX_AGE_MS, SKIPPED_MAX_STEPS};
