//! Envelopes: the only form in which a ciphertext leaves this device. Any
//! peer or relay can store and forward one; only the recipient can tell it is
//! theirs (by its mailbox tag) or read it.
//!
//! Guarantees: the encoding is fixed-layout and total; the body is always
//! exactly one of [`envelope_size_buckets`] bytes, so sizes reveal only a
//! coarse bucket; the 41-byte envelope header is authenticated by the inner
//! ciphertext, so a relay cannot re-tag or extend the expiry of an envelope
//! without it being refused.
//!
//! Version 2 adds the drop hash: `BLAKE3(ack_secret)`, where the 32-byte
//! ack secret travels inside the encrypted body. Once the recipient has
//! read the message it publishes the secret (an `Acks` frame of the sync
//! protocol) and every carrier holding an envelope with that drop hash
//! deletes it; nobody without the secret can forge a drop.
//!
//! ```text
//! offset len  field
//! 0      1    version = 0x02
//! 1      32   mailbox tag
//! 33     8    expiry, ms since the Unix epoch (u64 BE)
//! 41     32   drop hash = BLAKE3(ack secret)
//! 73     B    body, B ∈ {256, 1024, 4096, 16384}
//! ```

use super::error::{MResult, MessagingError};
use super::primitives::{Key32, hmac};
use crate::encoding::{DecodeError, Reader};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 0x02;
/// Bytes before the body: version, tag, expiry, drop hash.
pub const ENVELOPE_HEADER_LEN: usize = 1 + 32 + 8 + 32;
/// Length of the ack secret inside a 1:1 envelope's plaintext.
pub const ACK_SECRET_LEN: usize = 32;
/// The body sizes an envelope may have.
const BUCKETS: [usize; 4] = [256, 1024, 4096, 16384];
/// Largest envelope, header included.
pub const MAX_ENVELOPE_LEN: usize = ENVELOPE_HEADER_LEN + 16384;
/// How long an envelope is kept by carriers (7 days; carriers never keep
/// one longer, whatever its expiry says).
pub const DEFAULT_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// The body sizes (in bytes) envelopes are padded to, smallest first.
pub fn envelope_size_buckets() -> &'static [usize] {
    &BUCKETS
}

/// A mailbox tag: 32 bytes that only the intended recipient recognises.
pub type MailboxTag = [u8; 32];

/// A decoded envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The mailbox tag the recipient looks up.
    pub tag: MailboxTag,
    /// After this time (ms since the Unix epoch) relays drop it and the
    /// recipient refuses it.
    pub expiry_ms: u64,
    /// `BLAKE3(ack_secret)`: carriers drop the envelope when they learn a
    /// secret hashing to it. Random (never acked) for group envelopes.
    pub drop_hash: [u8; 32],
    /// The padded ciphertext, exactly one bucket long.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("tag", &super::primitives::hex32(&self.tag))
            .field("expiry_ms", &self.expiry_ms)
            .field("drop_hash", &super::primitives::hex32(&self.drop_hash))
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Envelope {
    /// The 73 bytes before the body; authenticated as associated data by
    /// every inner ciphertext.
    pub fn header_bytes(
        tag: &MailboxTag,
        expiry_ms: u64,
        drop_hash: &[u8; 32],
    ) -> [u8; ENVELOPE_HEADER_LEN] {
        let mut out = [0u8; ENVELOPE_HEADER_LEN];
        out[0] = ENVELOPE_VERSION;
        out[1..33].copy_from_slice(tag);
        out[33..41].copy_from_slice(&expiry_ms.to_be_bytes());
        out[41..].copy_from_slice(drop_hash);
        out
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + self.body.len());
        out.extend_from_slice(&Self::header_bytes(
            &self.tag,
            self.expiry_ms,
            &self.drop_hash,
        ));
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes untrusted bytes: total, refusing any length whose body is not
    /// exactly a bucket size and any other version.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(DecodeError::TooLong {
                field: "envelope",
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("envelope version")?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "envelope",
                version,
            });
        }
        let tag = r.array("mailbox tag")?;
        let expiry_ms = r.u64("expiry")?;
        let drop_hash = r.array("drop hash")?;
        let body_len = r.remaining();
        if !BUCKETS.contains(&body_len) {
            return Err(DecodeError::InvalidField {
                field: "envelope body",
                reason: format!("{body_len} bytes is not a bucket size"),
            });
        }
        let body = r.take(body_len, "envelope body")?.to_vec();
        r.finish()?;
        Ok(Envelope {
            tag,
            expiry_ms,
            drop_hash,
            body,
        })
    }

    /// The envelope's identity for carriers: `BLAKE3(encoded bytes)`.
    pub fn hash_bytes(encoded: &[u8]) -> [u8; 32] {
        *blake3::hash(encoded).as_bytes()
    }
}

/// The drop hash of an ack secret: `BLAKE3(secret)`.
pub fn drop_hash_of(ack_secret: &[u8; ACK_SECRET_LEN]) -> [u8; 32] {
    *blake3::hash(ack_secret).as_bytes()
}

/// Mailbox tag of a chain protected by header key `hk`:
/// `HMAC-SHA256(hk, "starling/mailbox-tag/v1")`. One-way, so the tag says
/// nothing about the key; it changes at every DH ratchet step.
pub(crate) fn session_tag(hk: &Key32) -> MailboxTag {
    *hmac(hk.bytes(), &[b"starling/mailbox-tag/v1"]).bytes()
}

/// Mailbox tag of session-setup messages to a signed prekey:
/// `HMAC-SHA256(spk_public, "starling/mailbox-tag/prekey/v1")`. Computable by
/// anyone who saw the published bundle (see docs/PRIVACY.md).
pub(crate) fn prekey_tag(spk_public: &[u8; 32]) -> MailboxTag {
    *hmac(spk_public, &[b"starling/mailbox-tag/prekey/v1"]).bytes()
}

/// Mailbox tag of one sender's group messages in one epoch.
pub(crate) fn group_tag(header_key: &Key32, group: &[u8; 32], epoch: u32) -> MailboxTag {
    *hmac(
        header_key.bytes(),
        &[
            b"starling/mailbox-tag/group/v1",
            group,
            &epoch.to_be_bytes(),
        ],
    )
    .bytes()
}

/// The smallest bucket that holds `overhead + content + 1` bytes (the 1 is
/// the padding marker).
pub(crate) fn bucket_for(overhead: usize, content: usize) -> MResult<usize> {
    BUCKETS
        .iter()
        .copied()
        .find(|b| *b > overhead + content)
        .ok_or_else(|| MessagingError::InvalidInput("message too large for an envelope".into()))
}

/// Pads `content` to exactly `len` bytes: content || 0x80 || 0x00….
pub(crate) fn pad(content: &[u8], len: usize) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(content);
    out.push(0x80);
    out.resize(len, 0);
    out
}

/// Removes the padding added by [`pad`] (inside authenticated plaintext,
/// so a bad pad means a broken sender, not an attacker).
pub(crate) fn unpad(padded: &[u8]) -> MResult<&[u8]> {
    let end = padded
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(MessagingError::Undecryptable)?;
    if padded[end] != 0x80 {
        return Err(MessagingError::Undecryptable);
    }
    Ok(&padded[..end])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_total_and_bucketed() {
        for b in envelope_size_buckets() {
            let env = Envelope {
                tag: [7; 32],
                expiry_ms: 5,
                drop_hash: [9; 32],
                body: vec![1; *b],
            };
            let bytes = env.encode();
            assert_eq!(bytes.len(), 73 + b);
            assert_eq!(Envelope::decode(&bytes).unwrap(), env);
            assert!(Envelope::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Envelope::decode(&longer).is_err());
            let mut v1 = bytes;
            v1[0] = 1;
            assert!(Envelope::decode(&v1).is_err());
        }
        for len in 0..300 {
            let _ = Envelope::decode(&vec![1; len]);
        }
        assert!(Envelope::decode(&vec![1; MAX_ENVELOPE_LEN + 1]).is_err());
    }

    #[test]
    fn padding_round_trips() {
        for n in [0usize, 1, 100, 254] {
            let content = vec![0u8; n];
            let p = pad(&content, 256);
            assert_eq!(p.len(), 256);
            assert_eq!(unpad(&p).unwrap(), &content[..]);
        }
        assert!(unpad(&[0; 10]).is_err());
        assert!(unpad(&[1, 2, 0]).is_err());
    }
}
