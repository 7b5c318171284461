//! Secrets at rest: the key the embedding app provides, and sealing secrets
//! (the root seed, later other private data) with it before they touch disk.
//!
//! The core never stores a secret in the clear and never invents its own
//! storage key: it asks the app through [`AtRestKeyProvider`], and the app
//! keeps that key in the platform's secure hardware-backed store (Android
//! Keystore, iOS Keychain / Secure Enclave). Tests and command-line tools
//! can use [`InMemoryKeyProvider`].
//!
//! Sealed format (version 1):
//!
//! ```text
//! 0x01 || nonce (24 random bytes) || XChaCha20-Poly1305 ciphertext + 16-byte tag
//! AAD = b"starling/sealed/v1/" || label
//! ```
//!
//! The label (for example `"root-seed"`) is authenticated, so a sealed blob
//! copied to another slot fails to open instead of being misused. The
//! 24-byte random nonce is large enough that random nonces never collide.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::encoding::{DecodeError, Reader};
use crate::error::{Error, Result};

/// Version byte of the sealed format.
pub const SEALED_VERSION: u8 = 0x01;
/// Prefix of the associated data; the label follows it.
const AAD_PREFIX: &[u8] = b"starling/sealed/v1/";
/// Nonce length of XChaCha20-Poly1305.
const NONCE_LEN: usize = 24;
/// Authentication tag length of Poly1305.
const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// The 32-byte symmetric key that protects this device's secrets on disk.
///
/// The embedding app owns it (see [`AtRestKeyProvider`]); the core only
/// borrows it to seal and open. Wiped from memory on drop; `Debug` prints
/// `AtRestKey(<redacted>)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AtRestKey([u8; 32]);

impl AtRestKey {
    /// Length of the key in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 key bytes obtained from secure storage. The bytes must be
    /// uniformly random (or the output of a password KDF such as Argon2id);
    /// never use a password or a constant directly.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Like [`AtRestKey::from_bytes`] for a slice (as it arrives from
    /// Kotlin/Swift); fails with [`Error::InvalidInput`] unless it holds
    /// exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::InvalidInput(format!("an at-rest key is 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Self(arr))
    }

    /// A fresh random key from the OS random generator: what an app should
    /// create once, on first launch, and then keep in secure storage.
    pub fn random() -> Result<Self> {
        let mut key = Self([0; 32]);
        getrandom::fill(&mut key.0)
            .map_err(|e| Error::Crypto(format!("the system random generator failed: {e}")))?;
        Ok(key)
    }

    /// The raw key bytes, for handing back to secure storage. Never log them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for AtRestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AtRestKey(<redacted>)")
    }
}

/// Supplies the key that protects this device's secrets on disk.
///
/// Implement this in the app and pass it to `Node::open`. The core calls
/// [`AtRestKeyProvider::at_rest_key`] whenever it needs to seal or open a
/// secret (creating or restoring an identity, signing after a restart), and
/// drops (wipes) its copy right after use.
///
/// # Contract
///
/// * Return **the same key every time** for the same data directory. A
///   different key cannot open what was sealed before; the user would then
///   have to restore from their recovery phrase.
/// * The key must be 32 uniformly random bytes, generated once
///   ([`AtRestKey::random`] or the platform's secure random generator) and
///   never derived from something guessable such as a device id.
/// * If the key is not available right now (device locked, biometric prompt
///   cancelled, Keystore error), return [`Error::Locked`] with a short
///   reason. Never return a placeholder key.
/// * It may be called from any thread and more than once, hence
///   `Send + Sync`. It may block (for example on a biometric prompt), so do
///   not call the node from the UI thread. Caching the key in memory for the
///   session is fine.
/// * Never log the key or send it anywhere.
///
/// # Android (Keystore)
///
/// The Android Keystore does not hand out raw key bytes, so wrap the key:
/// create a non-exportable AES-256-GCM key in the `AndroidKeyStore` provider
/// (`KeyGenParameterSpec` with `PURPOSE_ENCRYPT | PURPOSE_DECRYPT`,
/// `setIsStrongBoxBacked(true)` where available; optionally
/// `setUserAuthenticationRequired(true)` to require unlock or biometrics).
/// On first launch generate 32 random bytes, encrypt them with that Keystore
/// key and save the wrapped bytes (and GCM IV) in app-private storage;
/// afterwards unwrap them on demand. Exclude the wrapped key from cloud
/// backup: it is useless on another device anyway, which is intended.
///
/// # iOS / macOS (Keychain)
///
/// Store the 32 random bytes as a `kSecClassGenericPassword` item with
/// `kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly` (or
/// `…WhenUnlockedThisDeviceOnly` if the app never runs in the background),
/// and `kSecAttrSynchronizable = false` so it never syncs to iCloud. For
/// extra protection wrap it with a Secure Enclave key
/// (`kSecAttrTokenIDSecureEnclave`) and `SecKeyCreateEncryptedData`.
///
/// # Desktop and command line
///
/// Derive the key from a user passphrase with a memory-hard KDF (Argon2id
/// with a random salt stored next to the data) or use the OS key ring. A
/// wrong passphrase surfaces as [`Error::Locked`] when opening secrets.
///
/// # Tests
///
/// Use [`InMemoryKeyProvider`].
pub trait AtRestKeyProvider: Send + Sync {
    /// Returns the at-rest key, or [`Error::Locked`] if it cannot be obtained
    /// right now.
    fn at_rest_key(&self) -> Result<AtRestKey>;
}

/// An [`AtRestKeyProvider`] that keeps the key in memory. For tests, and for
/// embedders that obtain the key themselves (for example from a passphrase)
/// before opening the node. Offers no protection of its own: whoever stores
/// the key decides how safe it is.
#[derive(Clone)]
pub struct InMemoryKeyProvider {
    key: AtRestKey,
}

impl InMemoryKeyProvider {
    /// A provider that always returns `key`.
    pub fn new(key: AtRestKey) -> Self {
        Self { key }
    }

    /// A provider with a fresh random key; anything sealed with it is lost
    /// when the provider is dropped. Handy in tests.
    pub fn random() -> Result<Self> {
        Ok(Self::new(AtRestKey::random()?))
    }
}

impl AtRestKeyProvider for InMemoryKeyProvider {
    fn at_rest_key(&self) -> Result<AtRestKey> {
        Ok(self.key.clone())
    }
}

impl fmt::Debug for InMemoryKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InMemoryKeyProvider(<redacted>)")
    }
}

/// Encrypts and authenticates `plaintext` under `key` for storage in the slot
/// named `label` (for example `"root-seed"`). Returns
/// `0x01 || nonce || ciphertext+tag` (see the module docs); open it with
/// [`open`] and the same key and label.
///
/// Fails with [`Error::Crypto`] only if the OS random generator fails or the
/// plaintext is absurdly large (beyond XChaCha20's 256 GiB limit).
pub fn seal(key: &AtRestKey, label: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    let cipher = cipher(key)?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::Crypto(format!("the system random generator failed: {e}")))?;
    let aad = aad(label);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Crypto(format!("could not seal secret {label:?}: input too large")))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a blob made by [`seal`] with the same `key` and `label`.
///
/// Errors:
/// * [`Error::Decode`] if the blob is truncated or has an unknown version
///   (damaged storage, or written by a newer Starling);
/// * [`Error::Locked`] if authentication fails: wrong key (wrong passphrase,
///   or the app's key was replaced), a blob sealed under another label, or
///   altered bytes. These cases are indistinguishable by design.
///
/// The plaintext is returned in a buffer that is wiped on drop.
pub fn open(key: &AtRestKey, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut r = Reader::new(sealed);
    let version = r.u8("sealed secret version")?;
    if version != SEALED_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "sealed secret",
            version,
        }
        .into());
    }
    let nonce: [u8; NONCE_LEN] = r.array("sealed secret nonce")?;
    if r.remaining() < TAG_LEN {
        return Err(DecodeError::Truncated {
            field: "sealed secret tag",
            needed: TAG_LEN - r.remaining(),
        }
        .into());
    }
    let ciphertext = r.take(r.remaining(), "sealed secret ciphertext")?;
    let aad = aad(label);
    let cipher = cipher(key)?;
    let plaintext = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| {
            Error::Locked(format!(
                "could not open secret {label:?}: wrong passphrase or key, \
                 or the stored data was altered"
            ))
        })?;
    Ok(Zeroizing::new(plaintext))
}

fn cipher(key: &AtRestKey) -> Result<XChaCha20Poly1305> {
    // The key is always 32 bytes, so this cannot fail; mapped rather than
    // unwrapped to keep the function panic-free.
    XChaCha20Poly1305::new_from_slice(key.as_bytes())
        .map_err(|_| Error::Crypto("at-rest key has the wrong length".into()))
}

fn aad(label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + label.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(label.as_bytes());
    aad
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(b: u8) -> AtRestKey {
        AtRestKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip() {
        let k = key(1);
        for msg in [&b""[..], b"x", &[7u8; 1000]] {
            let sealed = seal(&k, "root-seed", msg).unwrap();
            assert_eq!(sealed.len(), msg.len() + SEALED_OVERHEAD);
            assert_eq!(sealed[0], SEALED_VERSION);
            assert_eq!(&open(&k, "root-seed", &sealed).unwrap()[..], msg);
        }
    }

    #[test]
    fn plaintext_is_not_in_the_sealed_bytes() {
        let secret = [0xAB; 32];
        let sealed = seal(&key(1), "root-seed", &secret).unwrap();
        assert!(!sealed.windows(8).any(|w| w == &secret[..8]));
    }

    #[test]
    fn nonces_are_fresh() {
        let a = seal(&key(1), "l", b"same").unwrap();
        let b = seal(&key(1), "l", b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_key_is_locked() {
        let sealed = seal(&key(1), "root-seed", b"secret").unwrap();
        let err = open(&key(2), "root-seed", &sealed).unwrap_err();
        assert!(matches!(err, Error::Locked(_)), "{err:?}");
        assert!(err.to_string().contains("wrong passphrase or key"), "{err}");
    }

    #[test]
    fn another_label_does_not_open() {
        let sealed = seal(&key(1), "root-seed", b"secret").unwrap();
        assert!(matches!(
            open(&key(1), "other", &sealed),
            Err(Error::Locked(_))
        ));
        assert!(matches!(
            open(&key(1), "root-seed2", &sealed),
            Err(Error::Locked(_))
        ));
        assert!(matches!(open(&key(1), "", &sealed), Err(Error::Locked(_))));
    }

    #[test]
    fn tampering_is_detected() {
        let sealed = seal(&key(1), "l", b"secret").unwrap();
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(open(&key(1), "l", &bad), Err(Error::Locked(_))),
                "byte {i}"
            );
        }
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let sealed = seal(&key(1), "l", b"secret").unwrap();
        // Every truncation: never a panic, always an error.
        for n in 0..sealed.len() {
            let res = open(&key(1), "l", &sealed[..n]);
            match n {
                0..=40 => assert!(matches!(res, Err(Error::Decode(_))), "len {n}: {res:?}"),
                _ => assert!(matches!(res, Err(Error::Locked(_))), "len {n}: {res:?}"),
            }
        }
        let mut v2 = sealed.clone();
        v2[0] = 0x02;
        assert!(matches!(
            open(&key(1), "l", &v2),
            Err(Error::Decode(DecodeError::UnsupportedVersion {
                version: 2,
                ..
            }))
        ));
        assert!(matches!(
            open(&key(1), "l", &[]),
            Err(Error::Decode(DecodeError::Truncated { .. }))
        ));
    }

    #[test]
    fn providers_return_their_key() {
        let p = InMemoryKeyProvider::new(key(9));
        assert_eq!(p.at_rest_key().unwrap().as_bytes(), &[9; 32]);
        let r = InMemoryKeyProvider::random().unwrap();
        assert_eq!(
            r.at_rest_key().unwrap().as_bytes(),
            r.at_rest_key().unwrap().as_bytes()
        );
        let dynamic: std::sync::Arc<dyn AtRestKeyProvider> = std::sync::Arc::new(p);
        let sealed = seal(&dynamic.at_rest_key().unwrap(), "l", b"x").unwrap();
        assert_eq!(&open(&key(9), "l", &sealed).unwrap()[..], b"x");
    }

    #[test]
    fn key_from_slice_checks_length() {
        assert!(matches!(
            AtRestKey::from_slice(&[0; 16]),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(
            AtRestKey::from_slice(&[3; 32]).unwrap().as_bytes(),
            &[3; 32]
        );
    }
}
