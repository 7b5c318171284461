//! The signed link between a user's feed key and their X25519 encryption key.
//!
//! Others need the user's X25519 public key to encrypt to them, and they must
//! be sure it really belongs to that user. The user therefore publishes an
//! `EncryptionKey` entry in their feed carrying the X25519 public key, its
//! creation time and an Ed25519 signature by the feed key over
//!
//! ```text
//! b"starling/x25519-binding/v1" || author (32) || x25519 public (32) || created_at_ms (u64 BE)
//! ```
//!
//! The context prefix keeps this signature from ever being valid as a feed
//! entry or any other Starling signature (and vice versa); the author inside
//! the message stops a binding from being replayed under another feed.
//! The Ed25519 key is never converted into an X25519 key: the two keys are
//! independent (see [`super::keys`]).
//!
//! Verification refuses low-order X25519 keys: encrypting to such a key
//! would give a shared secret everyone can compute.

use x25519_dalek::x25519;

use crate::encoding::Writer;
use crate::error::{Error, Result};
use crate::identity::id::AuthorId;
use crate::identity::keys::{Identity, verify_strict};

/// Domain-separation prefix of the X25519 binding signature.
pub const X25519_BINDING_CONTEXT: &[u8] = b"starling/x25519-binding/v1";

/// Length of the signed binding message: context + author + key + time.
const BINDING_MESSAGE_LEN: usize = X25519_BINDING_CONTEXT.len() + 32 + 32 + 8;

/// The u-coordinates of the small-order points of Curve25519 (orders 1, 2, 4
/// and 8), including the non-canonical encodings `p` (= 0) and `p + 1`
/// (= 1). Compared with the top bit cleared, because X25519 ignores that bit
/// (RFC 7748 §5), which covers the remaining alternative encodings. This is
/// the list libsodium refuses.
const LOW_ORDER_POINTS: [[u8; 32]; 7] = [
    // 0 (order 4)
    [0; 32],
    // 1 (order 1)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // order 8
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    // order 8
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    // p - 1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // p, a non-canonical 0 (order 4)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // p + 1, a non-canonical 1 (order 1)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// A fixed, public scalar for the contributory-behaviour test. Any scalar
/// works: X25519 clamps it to a multiple of 8, which sends every point of
/// order 1, 2, 4 or 8 (in any encoding) to the all-zero output.
const PROBE_SCALAR: [u8; 32] = *b"starling/x25519-low-order-probe!";

/// The exact bytes the binding signature covers:
/// `X25519_BINDING_CONTEXT || author || x25519_public || created_at_ms (u64 BE)`.
pub fn x25519_binding_message(
    author: &AuthorId,
    x25519_public: &[u8; 32],
    created_at_ms: u64,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(BINDING_MESSAGE_LEN);
    w.bytes(X25519_BINDING_CONTEXT)
        .bytes(author.as_bytes())
        .bytes(x25519_public)
        .u64(created_at_ms);
    w.into_bytes()
}

/// Signs the binding between `identity`'s feed key and its X25519 public key
/// ([`Identity::x25519_public`]), stamped with `created_at_ms` (milliseconds
/// since the Unix epoch). Publish the result in an `EncryptionKey` entry.
pub fn sign_x25519_binding(identity: &Identity, created_at_ms: u64) -> [u8; 64] {
    let msg = x25519_binding_message(
        &identity.author_id(),
        &identity.x25519_public(),
        created_at_ms,
    );
    identity.sign(&msg)
}

/// Checks a published binding: that `sig` is `author`'s strict Ed25519
/// signature over the binding of `x25519_public` made at `created_at_ms`, and
/// that `x25519_public` is safe to encrypt to (see [`check_x25519_public`]).
/// Fails with [`Error::Crypto`]; only then use the key.
pub fn verify_x25519_binding(
    author: &AuthorId,
    x25519_public: &[u8; 32],
    created_at_ms: u64,
    sig: &[u8; 64],
) -> Result<()> {
    check_x25519_public(x25519_public)?;
    let msg = x25519_binding_message(author, x25519_public, created_at_ms);
    verify_strict(author, &msg, sig).map_err(|_| {
        Error::Crypto(format!(
            "the encryption key binding of {author} has a bad signature"
        ))
    })
}

/// Refuses X25519 public keys of small order (including the all-zero key and
/// non-canonical encodings of small-order points): Diffie-Hellman with such
/// a key yields a shared secret an attacker can predict.
///
/// Two independent checks, either of which suffices: the key (top bit
/// cleared) is compared against the known list of small-order
/// u-coordinates, and X25519 with a fixed clamped scalar must not give the
/// all-zero output. Fails with [`Error::Crypto`].
pub fn check_x25519_public(x25519_public: &[u8; 32]) -> Result<()> {
    let mut masked = *x25519_public;
    masked[31] &= 0x7f;
    let listed = LOW_ORDER_POINTS.contains(&masked);
    let zero_output = x25519(PROBE_SCALAR, *x25519_public) == [0u8; 32];
    if listed || zero_output {
        return Err(Error::Crypto(
            "the encryption key is a low-order X25519 point and cannot be used".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::keys::RootSeed;

    fn alice() -> Identity {
        Identity::from_seed(RootSeed::from_bytes([1; 32]))
    }

    const T: u64 = 1_700_000_000_000;

    #[test]
    fn message_layout() {
        let id = alice();
        let msg =
            x25519_binding_message(&id.author_id(), &id.x25519_public(), 0x0102_0304_0506_0708);
        assert_eq!(msg.len(), 26 + 32 + 32 + 8);
        assert_eq!(&msg[..26], b"starling/x25519-binding/v1");
        assert_eq!(&msg[26..58], id.author_id().as_bytes());
        assert_eq!(&msg[58..90], &id.x25519_public());
        assert_eq!(&msg[90..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn valid_binding_verifies() {
        let id = alice();
        let sig = sign_x25519_binding(&id, T);
        verify_x25519_binding(&id.author_id(), &id.x25519_public(), T, &sig).unwrap();
    }

    #[test]
    fn any_changed_field_is_rejected() {
        let id = alice();
        let other = Identity::from_seed(RootSeed::from_bytes([2; 32]));
        let sig = sign_x25519_binding(&id, T);
        assert!(verify_x25519_binding(&id.author_id(), &id.x25519_public(), T + 1, &sig).is_err());
        assert!(verify_x25519_binding(&id.author_id(), &other.x25519_public(), T, &sig).is_err());
        assert!(verify_x25519_binding(&other.author_id(), &id.x25519_public(), T, &sig).is_err());
    }

    #[test]
    fn every_single_bit_flip_of_the_signature_is_rejected() {
        let id = alice();
        let sig = sign_x25519_binding(&id, T);
        for bit in 0..512 {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            let res = verify_x25519_binding(&id.author_id(), &id.x25519_public(), T, &bad);
            assert!(
                matches!(res, Err(Error::Crypto(_))),
                "bit {bit} flip accepted"
            );
        }
    }

    #[test]
    fn a_signature_under_another_context_is_rejected() {
        let id = alice();
        let mut msg = x25519_binding_message(&id.author_id(), &id.x25519_public(), T);
        msg.splice(
            ..X25519_BINDING_CONTEXT.len(),
            b"starling/x25519-binding/v2".iter().copied(),
        );
        let sig = id.sign(&msg);
        assert!(verify_x25519_binding(&id.author_id(), &id.x25519_public(), T, &sig).is_err());
        // The same bytes without any context are refused too.
        let bare = id.sign(&msg[X25519_BINDING_CONTEXT.len()..]);
        assert!(verify_x25519_binding(&id.author_id(), &id.x25519_public(), T, &bare).is_err());
    }

    #[test]
    fn every_known_low_order_point_is_rejected() {
        let id = alice();
        for point in LOW_ORDER_POINTS {
            // The list really is small-order: X25519 maps it to zero.
            assert_eq!(x25519(PROBE_SCALAR, point), [0; 32]);
            for key in [point, {
                let mut high = point;
                high[31] |= 0x80;
                high
            }] {
                // Correctly signed, so only the key check can refuse it.
                let msg = x25519_binding_message(&id.author_id(), &key, T);
                let sig = id.sign(&msg);
                let err = verify_x25519_binding(&id.author_id(), &key, T, &sig).unwrap_err();
                assert!(err.to_string().contains("low-order"), "{err}");
            }
        }
    }

    #[test]
    fn real_keys_pass_the_low_order_check() {
        for seed in 0..32u8 {
            let id = Identity::from_seed(RootSeed::from_bytes([seed; 32]));
            check_x25519_public(&id.x25519_public()).unwrap();
        }
    }

    #[test]
    fn a_weak_author_key_is_rejected() {
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let key = alice().x25519_public();
        assert!(verify_x25519_binding(&AuthorId::from_bytes(weak), &key, T, &[0; 64]).is_err());
    }
}
