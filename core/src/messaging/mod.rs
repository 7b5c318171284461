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

/// Benchmark support: an established in-memory ratchet pair, so the bench
/// measures the Double Ratchet itself, not SQLite. Not part of the API.
#[doc(hidden)]
pub mod bench_support {
    use super::primitives::{DhPair, Entropy, Key32};
    use super::ratchet::RatchetState;

    /// Two ratchets as X3DH would leave them, after one message each way.
    pub struct Pair {
        alice: RatchetState,
        bob: RatchetState,
        rng: Entropy,
    }

    impl Pair {
        /// Sets up the pair with OS randomness.
        pub fn new() -> Result<Pair, super::MessagingError> {
            let mut rng = Entropy::Os;
            let spk = DhPair::generate(&mut rng)?;
            let (sk, hka, nhkb) = (
                Key32::new([1; 32]),
                Key32::new([2; 32]),
                Key32::new([3; 32]),
            );
            let alice =
                RatchetState::init_alice(&sk, &spk.public, hka.clone(), nhkb.clone(), &mut rng)?;
            let bob = RatchetState::init_bob(&sk, spk, hka, nhkb);
            let mut p = Pair { alice, bob, rng };
            let _ = p.round_trip(b"hello")?;
            Ok(p)
        }

        /// Alice encrypts `msg`, Bob decrypts it; returns the plaintext length.
        pub fn round_trip(&mut self, msg: &[u8]) -> Result<usize, super::MessagingError> {
            let (a, ct) = self.alice.encrypt(b"ad", b"", msg, &mut self.rng)?;
            let (b, pt) = self.bob.decrypt(b"ad", b"", &ct, 0, &mut self.rng)?;
            self.alice = a;
            self.bob = b;
            Ok(pt.len())
        }
    }
}
