//! The primitives every messaging protocol here composes: HKDF-SHA256,
//! HMAC-SHA256 chain steps, ChaCha20-Poly1305, checked X25519 and the source
//! of randomness.
//!
//! Guarantees: every X25519 result is refused if the peer key is low-order
//! or the output non-contributory; every derived key lives in a buffer that
//! is wiped on drop; randomness comes from the OS except in tests, where a
//! fixed seed makes test vectors reproducible.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use super::error::{MResult, MessagingError};

/// A 32-byte secret (root, chain, header or message key), wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key32(Zeroizing<[u8; 32]>);

impl Key32 {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Key32(Zeroizing::new(bytes))
    }
    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes[..32]);
        let out = Key32::new(k);
        k.zeroize();
        out
    }
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

/// An X25519 key pair whose secret is wiped on drop.
#[derive(Clone)]
pub(crate) struct DhPair {
    pub(crate) secret: StaticSecret,
    pub(crate) public: [u8; 32],
}

impl DhPair {
    pub(crate) fn from_secret(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        DhPair { secret, public }
    }
    pub(crate) fn generate(rng: &mut Entropy) -> MResult<Self> {
        let mut s = Zeroizing::new([0u8; 32]);
        rng.fill(s.as_mut())?;
        Ok(Self::from_secret(*s))
    }
}

impl fmt::Debug for DhPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhPair")
            .field("public", &hex32(&self.public))
            .finish_non_exhaustive()
    }
}

pub(crate) fn hex32(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where random bytes come from: the OS, or (tests only) a fixed seed so
/// test vectors are reproducible.
pub(crate) enum Entropy {
    /// The operating system's secure generator.
    Os,
    /// HMAC-SHA256(seed, counter) blocks. Test-only by construction: the
    /// constructor is `cfg(test)`.
    #[allow(dead_code)]
    Fixed { seed: Key32, counter: u64 },
}

impl Entropy {
    /// A deterministic source for tests and test vectors.
    #[cfg(test)]
    pub(crate) fn fixed(seed: u8) -> Entropy {
        Entropy::Fixed {
            seed: Key32::new([seed; 32]),
            counter: 0,
        }
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) -> MResult<()> {
        match self {
            Entropy::Os => getrandom::fill(out).map_err(|e| {
                MessagingError::Core(crate::Error::Crypto(format!(
                    "the system random generator failed: {e}"
                )))
            }),
            Entropy::Fixed { seed, counter } => {
                for chunk in out.chunks_mut(32) {
                    let block = hmac(seed.bytes(), &[&counter.to_be_bytes()]);
                    *counter += 1;
                    chunk.copy_from_slice(&block.bytes()[..chunk.len()]);
                }
                Ok(())
            }
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> MResult<[u8; N]> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> Key32 {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    for p in parts {
        mac.update(p);
    }
    let out = mac.finalize().into_bytes();
    Key32::from_slice(&out)
}

#[cold]
fn unreachable_hmac() -> ! {
    // RFC 2104 HMAC is defined for every key length.
    unreachable!("HMAC-SHA256 takes keys of any length")
}

/// HKDF-SHA256 (RFC 5869) extract-and-expand into `out`.
pub(crate) fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    // Every caller asks for at most 96 bytes, far below 255 × 32.
    if hk.expand(info, out).is_err() {
        unreachable!("HKDF output length is a small constant")
    }
}

/// The symmetric-key ratchet step (Double Ratchet KDF_CK):
/// message key = HMAC(ck, 0x01), next chain key = HMAC(ck, 0x02).
pub(crate) fn kdf_ck(ck: &Key32) -> (Key32, Key32) {
    // One HMAC key schedule for both outputs (same values as two HMACs).
    let keyed = hmac_keyed(ck.bytes());
    let mut m = keyed.clone();
    m.update(&[0x01]);
    let mk = Key32::from_slice(&m.finalize().into_bytes());
    let mut n = keyed;
    n.update(&[0x02]);
    let next = Key32::from_slice(&n.finalize().into_bytes());
    (next, mk)
}

fn hmac_keyed(key: &[u8]) -> Hmac<Sha256> {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    }
}

/// HKDF-SHA256 with a salt of 32 zero bytes and 44 bytes of output,
/// computed as RFC 5869 does (extract, then T1 || T2[..12]) but with the
/// zero-salt HMAC key schedule computed once per process and the PRK's
/// schedule reused for both blocks: the same bytes as
/// `hkdf(&[0; 32], ikm, info, 44)`, fewer SHA-256 compressions.
fn hkdf_zero_salt_44(ikm: &[u8], info: &[u8], okm: &mut [u8; 44]) {
    static ZERO_SALT: std::sync::OnceLock<Hmac<Sha256>> = std::sync::OnceLock::new();
    let mut extract = ZERO_SALT.get_or_init(|| hmac_keyed(&[0u8; 32])).clone();
    extract.update(ikm);
    let prk = Zeroizing::new(<[u8; 32]>::from(extract.finalize().into_bytes()));
    let keyed = hmac_keyed(prk.as_ref());
    let mut t1 = keyed.clone();
    t1.update(info);
    t1.update(&[0x01]);
    let t1 = Zeroizing::new(<[u8; 32]>::from(t1.finalize().into_bytes()));
    let mut t2 = keyed;
    t2.update(t1.as_ref());
    t2.update(info);
    t2.update(&[0x02]);
    let t2 = Zeroizing::new(<[u8; 32]>::from(t2.finalize().into_bytes()));
    okm[..32].copy_from_slice(t1.as_ref());
    okm[32..].copy_from_slice(&t2[..12]);
}

/// Expands a message key into a ChaCha20-Poly1305 key and nonce. Each
/// message key encrypts exactly one message, so a derived nonce is safe.
pub(crate) fn message_key_material(mk: &Key32, info: &[u8]) -> (Key32, [u8; 12]) {
    let mut okm = Zeroizing::new([0u8; 44]);
    hkdf_zero_salt_44(mk.bytes(), info, &mut okm);
    let key = Key32::from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// ChaCha20-Poly1305 (RFC 8439) encryption; the output is ciphertext || tag.
pub(crate) fn seal(key: &Key32, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(key.bytes().into());
    match cipher.encrypt(
        &Nonce::from(*nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    ) {
        Ok(ct) => ct,
        // Only fails beyond 256 GiB of plaintext; ours are at most 16 KiB.
        Err(_) => unreachable!("ChaCha20-Poly1305 input is bounded"),
    }
}

/// ChaCha20-Poly1305 decryption; any failure is [`MessagingError::Undecryptable`].
pub(crate) fn open(
    key: &Key32,
    nonce: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
) -> MResult<Zeroizing<Vec<u8>>> {
    let cipher = ChaCha20Poly1305::new(key.bytes().into());
    cipher
        .decrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| MessagingError::Undecryptable)
}

/// Refuses low-order X25519 public keys (see
/// [`crate::identity::binding::check_x25519_public`]).
pub(crate) fn check_public(public: &[u8; 32]) -> MResult<()> {
    crate::identity::binding::check_x25519_public(public).map_err(|_| MessagingError::LowOrderKey)
}

/// X25519 of our `secret` with the peer's `public`, refusing low-order keys
/// and non-contributory (all-zero) results.
pub(crate) fn dh(secret: &StaticSecret, public: &[u8; 32]) -> MResult<Key32> {
    check_public(public)?;
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(MessagingError::LowOrderKey);
    }
    Ok(Key32::new(shared.to_bytes()))
}

/// A zeroizing output buffer for serialised secret state. Sized up front so
/// growth (which would leave unwiped copies behind) is rare.
pub(crate) struct SecretBuf(pub(crate) Zeroizing<Vec<u8>>);

impl SecretBuf {
    pub(crate) fn with_capacity(n: usize) -> Self {
        SecretBuf(Zeroizing::new(Vec::with_capacity(n)))
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        if self.0.capacity() - self.0.len() < b.len() {
            // Grow by copying into a fresh zeroizing buffer so the old
            // allocation is wiped rather than freed with secrets in it.
            let mut bigger = Zeroizing::new(Vec::with_capacity((self.0.len() + b.len()) * 2));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub(crate) fn opt_key(&mut self, k: &Option<Key32>) -> &mut Self {
        match k {
            None => self.u8(0),
            Some(k) => self.u8(1).bytes(k.bytes()),
        }
    }
}

/// Reads a [`Key32`] from a reader.
pub(crate) fn read_key(r: &mut crate::encoding::Reader<'_>, field: &'static str) -> MResult<Key32> {
    Ok(Key32::from_slice(r.take(32, field)?))
}

/// Reads an optional [`Key32`].
pub(crate) fn read_opt_key(
    r: &mut crate::encoding::Reader<'_>,
    field: &'static str,
) -> MResult<Option<Key32>> {
    Ok(if r.flag(field)? {
        Some(read_key(r, field)?)
    } else {
        None
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fast_kdf_tests {
    use super::*;

    #[test]
    fn the_fast_kdfs_equal_the_reference_ones() {
        for seed in 0u8..20 {
            let ck = Key32::new([seed; 32]);
            let (next, mk) = kdf_ck(&ck);
            assert_eq!(mk.bytes(), hmac(ck.bytes(), &[&[0x01]]).bytes());
            assert_eq!(next.bytes(), hmac(ck.bytes(), &[&[0x02]]).bytes());
            let mut fast = [0u8; 44];
            hkdf_zero_salt_44(ck.bytes(), b"starling/dr-message/v1", &mut fast);
            let mut reference = [0u8; 44];
            hkdf(
                &[0u8; 32],
                ck.bytes(),
                b"starling/dr-message/v1",
                &mut reference,
            );
            assert_eq!(fast, reference);
        }
    }
}
