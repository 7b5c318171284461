//! Who a user is: the Ed25519 feed key, the X25519 encryption key bound to it,
//! the recovery phrase that restores both, and the sealing of secrets at rest.
//!
//! # Overview
//!
//! * An [`Identity`] is derived from a 32-byte [`RootSeed`]. Its Ed25519
//!   public key is the user's [`AuthorId`](crate::AuthorId) (`stl1…`) and
//!   signs every entry of their feed. A separate X25519 key, derived from the
//!   same seed, lets others encrypt to the user; it is published in the feed
//!   with a signed binding ([`binding`]).
//! * The seed is shown to the user once as a 24-word [`RecoveryPhrase`],
//!   which restores the identity on a new device.
//! * On disk the seed is only ever stored sealed ([`at_rest::seal`]) under a
//!   key the app supplies through [`AtRestKeyProvider`].
//! * Every secret type wipes itself from memory on drop and prints as
//!   `<redacted>` in `Debug` output.
//!
//! # Several devices (planned, not implemented)
//!
//! Feeds are single-writer: two devices appending to the same feed would
//! fork it. So one person with several devices will have one feed per
//! device, linked by signed entries:
//!
//! 1. Each new device creates its own Ed25519 device key (random, sealed on
//!    that device; it is not derived from the root seed, so losing a phone
//!    never exposes the seed) and its own feed.
//! 2. The device signs a consent statement with its key over
//!    `b"starling/device-link/v1" || identity author (32) || device author (32) || created_at_ms (u64 BE)`,
//!    proving the device agreed to be linked.
//! 3. The primary identity publishes a `DeviceLink` entry (payload tag
//!    `0x0A`, reserved) carrying the device author id, `created_at_ms` and
//!    that consent signature; the entry itself is signed by the identity key
//!    as usual. The device's own feed publishes the reverse link. Readers
//!    treat feeds linked both ways as one person.
//! 4. Revocation is a later signed `DeviceUnlink` entry in the identity
//!    feed; entries of the device feed after the unlink time are no longer
//!    attributed to the person. Because the root seed (recovery phrase) owns
//!    the identity feed, a user who lost every device can still revoke.
//!
//! The domain-separated context mirrors the X25519 binding
//! ([`binding::X25519_BINDING_CONTEXT`]), so neither signature can be
//! replayed as the other.

pub mod at_rest;
pub mod binding;
pub mod id;
pub mod keys;
pub mod recovery;

pub use at_rest::{AtRestKey, AtRestKeyProvider, InMemoryKeyProvider, open, seal};
pub use binding::{X25519_BINDING_CONTEXT, sign_x25519_binding, verify_x25519_binding};
pub use keys::{Identity, RootSeed, verify_strict, verifying_key};
pub use recovery::RecoveryPhrase;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Lower-case hex, to look for the secret bytes in formatted output.
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Asserts `text` shows none of `secret`: not as hex, nor as the decimal
    /// array `Debug` prints for byte arrays.
    fn assert_hides(text: &str, secret: &[u8]) {
        assert!(!text.contains(&hex(secret)), "{text}");
        assert!(
            !text.to_uppercase().contains(&hex(secret).to_uppercase()),
            "{text}"
        );
        assert!(!text.contains(&format!("{secret:?}")), "{text}");
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let id = Identity::generate().unwrap();
        let seed = id.seed().as_bytes().to_vec();
        let signing = id.signing_key().to_bytes();
        let x = id.x25519_secret().to_bytes();
        for text in [format!("{id:?}"), format!("{id:#?}")] {
            assert!(text.contains(&id.author_id().to_string()), "{text}");
            assert_hides(&text, &seed);
            assert_hides(&text, &signing);
            assert_hides(&text, &x);
        }

        let seed_dbg = format!("{:?} {:#?}", id.seed(), id.seed());
        assert_hides(&seed_dbg, &seed);
        assert!(seed_dbg.contains("redacted"));

        let phrase = RecoveryPhrase::from_seed(id.seed());
        let phrase_dbg = format!("{phrase:?} {phrase:#?}");
        assert!(phrase_dbg.contains("redacted"));
        for word in phrase.words() {
            // Short words like "art" could appear inside "RecoveryPhrase";
            // compare whole tokens.
            assert!(
                !phrase_dbg
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .any(|t| t == word),
                "{phrase_dbg} shows {word}"
            );
        }

        let key = AtRestKey::random().unwrap();
        let key_dbg = format!("{key:?} {:?}", InMemoryKeyProvider::new(key.clone()));
        assert_hides(&key_dbg, key.as_bytes());
        assert!(key_dbg.contains("redacted"));
    }

    #[test]
    fn restore_on_a_new_device() {
        // Device A: create, seal the seed, show the phrase.
        let a = Identity::generate().unwrap();
        let provider = InMemoryKeyProvider::random().unwrap();
        let sealed = seal(
            &provider.at_rest_key().unwrap(),
            "root-seed",
            a.seed().as_bytes(),
        )
        .unwrap();
        let words = RecoveryPhrase::from_seed(a.seed()).expose().to_owned();

        // Same device after restart: open the sealed seed.
        let opened = open(&provider.at_rest_key().unwrap(), "root-seed", &sealed).unwrap();
        let again = Identity::from_seed(RootSeed::from_slice(&opened).unwrap());
        assert_eq!(again.author_id(), a.author_id());

        // Device B: only the phrase.
        let b = Identity::from_seed(RecoveryPhrase::parse(&words).unwrap().to_seed().unwrap());
        assert_eq!(b.author_id(), a.author_id());
        assert_eq!(b.x25519_public(), a.x25519_public());
        let sig = sign_x25519_binding(&b, 5);
        verify_x25519_binding(&a.author_id(), &a.x25519_public(), 5, &sig).unwrap();
    }
}
