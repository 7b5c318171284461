//! The user's key material: one 32-byte [`RootSeed`] from which both the
//! Ed25519 feed key and the X25519 encryption key are derived.
//!
//! Deriving both keys from one seed is what lets a single 24-word recovery
//! phrase (see [`super::recovery`]) restore everything on a new device. The
//! two keys are derived independently with HKDF-SHA256 under different
//! `info` strings; the Ed25519 key is never converted to X25519, so a flaw
//! in one use cannot leak into the other.
//!
//! Verification helpers here ([`verifying_key`], [`verify_strict`]) are the
//! single place where untrusted author keys and signatures are checked:
//! small-order ("weak") keys and non-canonical signatures are refused.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey as X25519PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::identity::id::AuthorId;

/// HKDF salt for every key derived from the root seed. Versioned so a future
/// derivation scheme can coexist with this one.
const HKDF_SALT: &[u8] = b"starling/identity/v1";
/// HKDF `info` for the Ed25519 feed (signing) key.
const ED25519_INFO: &[u8] = b"starling/ed25519/v1";
/// HKDF `info` for the X25519 encryption key.
const X25519_INFO: &[u8] = b"starling/x25519/v1";

/// The 32 secret bytes everything else about an identity is derived from.
///
/// This is exactly what the 24-word recovery phrase encodes. Treat it like
/// the phrase itself: never log it, never send it anywhere, store it only
/// sealed (see [`super::at_rest`]). The bytes are wiped from memory when the
/// value is dropped, and `Debug` prints `RootSeed(<redacted>)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RootSeed([u8; 32]);

impl RootSeed {
    /// Length of a root seed in bytes.
    pub const LEN: usize = 32;

    /// Wraps existing seed bytes (for example read back from sealed storage).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses a seed from a slice; fails with [`Error::InvalidInput`] unless it
    /// holds exactly 32 bytes. The message never contains the bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::InvalidInput(format!("a root seed is 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Self(arr))
    }

    /// Draws a fresh seed from the operating system's secure random generator.
    ///
    /// Fails with [`Error::Crypto`] only if the OS cannot provide randomness,
    /// in which case no identity must be created.
    pub fn random() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Crypto(format!("the system random generator failed: {e}")))?;
        let seed = Self(bytes);
        // `bytes` is a copy on the stack; wipe it so only `seed` holds the secret.
        bytes.zeroize();
        Ok(seed)
    }

    /// The raw secret bytes. Only for sealing the seed at rest or encoding it
    /// as a recovery phrase; never display or log them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RootSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootSeed(<redacted>)")
    }
}

/// One user's identity on this device: the Ed25519 key that signs their feed
/// and the X25519 key others use to encrypt to them, both derived from a
/// [`RootSeed`].
///
/// The public half of the feed key is the user's [`AuthorId`] (`stl1…`).
/// The X25519 public key is published in the feed inside a signed
/// `EncryptionKey` announcement (see [`super::binding`]).
///
/// All secret parts are wiped from memory on drop; `Debug` shows only the
/// author id, so an `Identity` can safely appear in logs or panic messages.
#[derive(Clone)]
pub struct Identity {
    seed: RootSeed,
    signing: SigningKey,
    x25519: StaticSecret,
}

impl Identity {
    /// Creates a brand-new identity from fresh OS randomness.
    ///
    /// Right after this, show the user the recovery phrase
    /// ([`super::RecoveryPhrase::from_seed`] of [`Identity::seed`]) so they
    /// can restore it on another device.
    pub fn generate() -> Result<Identity> {
        Ok(Self::from_seed(RootSeed::random()?))
    }

    /// Re-creates the identity belonging to `seed`. Deterministic: the same
    /// seed always yields the same author id and encryption key, which is
    /// what makes restoring from a recovery phrase work.
    pub fn from_seed(seed: RootSeed) -> Identity {
        let ed_secret = derive(&seed, ED25519_INFO);
        let x_secret = derive(&seed, X25519_INFO);
        let signing = SigningKey::from_bytes(&ed_secret);
        // `StaticSecret::from` takes the array by value (a copy); the
        // `Zeroizing` original is wiped when it goes out of scope.
        let x25519 = StaticSecret::from(*x_secret);
        Identity {
            seed,
            signing,
            x25519,
        }
    }

    /// The public id of this identity's feed (its Ed25519 public key).
    pub fn author_id(&self) -> AuthorId {
        AuthorId::from_bytes(self.signing.verifying_key().to_bytes())
    }

    /// The Ed25519 signing key, for signing feed entries.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The X25519 secret key, for decrypting what others encrypted to us.
    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519
    }

    /// The X25519 public key that others encrypt to. Publish it only inside
    /// a signed binding (see [`super::binding::sign_x25519_binding`]).
    pub fn x25519_public(&self) -> [u8; 32] {
        X25519PublicKey::from(&self.x25519).to_bytes()
    }

    /// The root seed this identity was derived from (for sealing it at rest
    /// or showing the recovery phrase).
    pub fn seed(&self) -> &RootSeed {
        &self.seed
    }

    /// Signs `msg` with the feed key (plain Ed25519, RFC 8032). Callers must
    /// put a domain-separation prefix in `msg` themselves so signatures made
    /// for one purpose can never be replayed as another.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("author", &self.author_id())
            .finish_non_exhaustive()
    }
}

/// HKDF-SHA256(salt = "starling/identity/v1", ikm = seed, info) → 32 bytes.
fn derive(seed: &RootSeed, info: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), seed.as_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    // HKDF-SHA256 can produce up to 255 × 32 bytes, so a 32-byte expand
    // cannot fail; the inputs are constants, never untrusted data.
    #[allow(clippy::expect_used)]
    hk.expand(info, out.as_mut())
        .expect("32 bytes is within HKDF-SHA256's output limit");
    out
}

/// Turns an author id into an Ed25519 verifying key, refusing keys that are
/// not valid curve points and weak (small-order) keys, for which forged
/// signatures are easy. Fails with [`Error::Crypto`].
pub fn verifying_key(author: &AuthorId) -> Result<VerifyingKey> {
    let key = VerifyingKey::from_bytes(author.as_bytes()).map_err(|_| {
        Error::Crypto(format!(
            "author key {author} is not a valid Ed25519 public key"
        ))
    })?;
    if key.is_weak() {
        return Err(Error::Crypto(format!(
            "author key {author} is a weak (small-order) Ed25519 key"
        )));
    }
    Ok(key)
}

/// Checks that `sig` is `author`'s signature over `msg`, using Ed25519
/// `verify_strict`: weak keys, small-order `R` values and non-canonical
/// signatures are all refused, so a signature cannot be tweaked into a
/// second valid one. Fails with [`Error::Crypto`].
pub fn verify_strict(author: &AuthorId, msg: &[u8], sig: &[u8; 64]) -> Result<()> {
    let key = verifying_key(author)?;
    let sig = Signature::from_bytes(sig);
    key.verify_strict(msg, &sig)
        .map_err(|_| Error::Crypto(format!("bad signature by {author}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixed() -> Identity {
        Identity::from_seed(RootSeed::from_bytes([42; 32]))
    }

    #[test]
    fn derivation_is_deterministic() {
        let a = fixed();
        let b = fixed();
        assert_eq!(a.author_id(), b.author_id());
        assert_eq!(a.x25519_public(), b.x25519_public());
        assert_eq!(a.seed().as_bytes(), &[42; 32]);
    }

    #[test]
    fn derivation_is_pinned() {
        // Pins the HKDF derivation: changing salt/info would silently give
        // every user a new identity after restoring from their phrase.
        // Expected values were computed independently (Python `hmac` +
        // `cryptography`) from HKDF-SHA256 with the documented salt/info.
        let id = fixed();
        assert_eq!(
            hex::encode(id.author_id().as_bytes()),
            "681920abf3aeaa40b8ad419f47f2c960c2a3fe7528c4438a26c6ab7bf224a1f5"
        );
        assert_eq!(
            hex::encode(id.x25519_public()),
            "d8aa9b10e7cf7cba7439b182045867e99a4cf071864d8111eba07a055fe75b54"
        );
        assert_ne!(id.signing_key().to_bytes(), id.x25519_secret().to_bytes());
    }

    #[test]
    fn generated_identities_differ() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        assert_ne!(a.author_id(), b.author_id());
        assert_ne!(a.x25519_public(), b.x25519_public());
    }

    #[test]
    fn sign_and_verify() {
        let id = fixed();
        let sig = id.sign(b"hello");
        verify_strict(&id.author_id(), b"hello", &sig).unwrap();
        assert!(matches!(
            verify_strict(&id.author_id(), b"hellO", &sig),
            Err(Error::Crypto(_))
        ));
        let other = Identity::from_seed(RootSeed::from_bytes([7; 32]));
        assert!(verify_strict(&other.author_id(), b"hello", &sig).is_err());
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (small order) and a y-coordinate that is not
        // on the curve.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        let err = verifying_key(&AuthorId::from_bytes(identity_point)).unwrap_err();
        assert!(err.to_string().contains("weak"), "{err}");
        // All-zero encodes a point of order 4.
        assert!(verifying_key(&AuthorId::from_bytes([0; 32])).is_err());
        // y = 2 is not the y-coordinate of any curve point.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let err = verifying_key(&AuthorId::from_bytes(not_a_point)).unwrap_err();
        assert!(err.to_string().contains("not a valid"), "{err}");
    }

    #[test]
    fn weak_key_forgery_is_refused() {
        // With the identity point as key and (R = identity, s = 0) every
        // message "verifies" under lax rules; verify_strict must refuse it.
        let mut key = [0u8; 32];
        key[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert!(verify_strict(&AuthorId::from_bytes(key), b"anything", &sig).is_err());
    }

    #[test]
    fn seed_from_slice_checks_length() {
        assert!(RootSeed::from_slice(&[1; 31]).is_err());
        assert_eq!(RootSeed::from_slice(&[1; 32]).unwrap().as_bytes(), &[1; 32]);
    }
}
