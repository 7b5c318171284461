//! The entry: the signed, hash-chained header of one feed message.
//!
//! Layout (version 1, all integers big-endian; see docs/PROTOCOL.md):
//!
//! | field        | bytes | notes                               |
//! |--------------|-------|-------------------------------------|
//! | version      | 1     | `0x01`                              |
//! | author       | 32    | Ed25519 public key                  |
//! | seq          | 8     | starts at 1                         |
//! | prev         | 32    | id of entry `seq - 1`; absent at 1  |
//! | timestamp    | 8     | author's clock, ms since Unix epoch |
//! | payload_len  | 4     | at most [`MAX_PAYLOAD_LEN`]         |
//! | payload_hash | 32    | BLAKE3 of the payload bytes         |
//! | signature    | 64    | Ed25519 over every preceding byte   |
//!
//! A fixed layout rather than a serde format: every field has exactly one
//! encoding, so canonicality is structural and another implementation needs
//! nothing but this table.

use ed25519_dalek::{Signer, SigningKey};

use crate::encoding::{DecodeError, Reader, Writer};
use crate::feed::validate::ValidationError;
use crate::identity::id::{AuthorId, EntryId};

/// The entry format version this build writes and reads.
pub const ENTRY_VERSION: u8 = 1;
/// Largest payload an entry may announce, in bytes.
pub const MAX_PAYLOAD_LEN: u32 = 16 * 1024;
/// Length of an encoded entry with seq 1 (no `prev`).
pub const FIRST_ENTRY_LEN: usize = 1 + 32 + 8 + 8 + 4 + 32 + 64;
/// Largest encoded entry (seq > 1, with `prev`).
pub const MAX_ENTRY_LEN: usize = FIRST_ENTRY_LEN + 32;

/// One signed entry of an author's append-only feed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    /// The feed's author (its Ed25519 public key).
    pub author: AuthorId,
    /// Position in the feed, from 1.
    pub seq: u64,
    /// Id of the entry at `seq - 1`; `None` exactly when `seq == 1`.
    pub prev: Option<EntryId>,
    /// The author's clock when writing, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length of the payload in bytes.
    pub payload_len: u32,
    /// BLAKE3 hash of the payload bytes.
    pub payload_hash: [u8; 32],
    /// Ed25519 signature over [`Entry::signed_bytes`].
    pub signature: [u8; 64],
}

impl Entry {
    /// Builds and signs the entry that carries `payload` at position `seq`.
    ///
    /// The caller supplies a consistent `seq`/`prev` pair (`prev` is `None`
    /// exactly at seq 1); the store does this when publishing.
    pub fn sign(
        signing_key: &SigningKey,
        seq: u64,
        prev: Option<EntryId>,
        timestamp_ms: u64,
        payload: &[u8],
    ) -> Entry {
        let mut entry = Entry {
            author: AuthorId(signing_key.verifying_key().to_bytes()),
            seq,
            prev,
            timestamp_ms,
            // Payloads are produced by `Payload::encode`, which enforces
            // limits far below u32::MAX; saturate rather than wrap so an
            // oversized payload still fails validation instead of aliasing.
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            payload_hash: *blake3::hash(payload).as_bytes(),
            signature: [0; 64],
        };
        entry.signature = signing_key.sign(&entry.signed_bytes()).to_bytes();
        entry
    }

    /// The bytes the signature covers: the encoding without the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(MAX_ENTRY_LEN);
        w.u8(ENTRY_VERSION)
            .bytes(self.author.as_bytes())
            .u64(self.seq);
        if let Some(prev) = &self.prev {
            w.bytes(prev.as_bytes());
        }
        w.u64(self.timestamp_ms)
            .u32(self.payload_len)
            .bytes(&self.payload_hash);
        w.into_bytes()
    }

    /// The canonical encoding: always the same bytes for the same entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// The entry id: BLAKE3 of the exact encoded bytes, signature included.
    pub fn id(&self) -> EntryId {
        EntryId(*blake3::hash(&self.encode()).as_bytes())
    }

    /// Decodes untrusted bytes. Total: returns an entry or a typed error,
    /// never panics, and refuses every non-canonical form (wrong version,
    /// seq 0, `prev` present at seq 1 or missing later — the length decides —
    /// trailing bytes, a payload length over the limit).
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(DecodeError::TooLong {
                field: "entry",
                len: bytes.len(),
                max: MAX_ENTRY_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "entry",
                version,
            });
        }
        let author = AuthorId(r.array("author")?);
        let seq = r.u64("seq")?;
        if seq == 0 {
            return Err(DecodeError::InvalidField {
                field: "seq",
                reason: "sequence numbers start at 1".into(),
            });
        }
        let prev = if seq > 1 {
            Some(EntryId(r.array("prev")?))
        } else {
            None
        };
        let timestamp_ms = r.u64("timestamp")?;
        let payload_len = r.u32("payload_len")?;
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(DecodeError::TooLong {
                field: "payload",
                len: payload_len as usize,
                max: MAX_PAYLOAD_LEN as usize,
            });
        }
        let payload_hash = r.array("payload_hash")?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(Entry {
            author,
            seq,
            prev,
            timestamp_ms,
            payload_len,
            payload_hash,
            signature,
        })
    }

    /// Checks the signature with `verify_strict` (refusing weak keys,
    /// small-order points and non-canonical signatures).
    pub fn verify_signature(&self) -> Result<(), ValidationError> {
        let key = crate::feed::validate::strict_verifying_key(&self.author)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.signed_bytes(), &signature)
            .map_err(|_| ValidationError::BadSignature {
                author: self.author,
                seq: self.seq,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn first_and_later_entries_have_fixed_lengths() {
        let first = Entry::sign(&key(1), 1, None, 1_700_000_000_000, b"hello");
        assert_eq!(first.encode().len(), FIRST_ENTRY_LEN);
        let second = Entry::sign(&key(1), 2, Some(first.id()), 1_700_000_000_001, b"again");
        assert_eq!(second.encode().len(), MAX_ENTRY_LEN);
        assert_eq!(Entry::decode(&second.encode()), Ok(second.clone()));
        second.verify_signature().expect("own signature verifies");
    }

    #[test]
    fn non_canonical_forms_are_refused() {
        let first = Entry::sign(&key(1), 1, None, 1_700_000_000_000, b"x");
        let mut bytes = first.encode();
        bytes.push(0);
        assert!(matches!(
            Entry::decode(&bytes),
            Err(DecodeError::TrailingBytes(1))
        ));

        let mut bytes = first.encode();
        bytes[0] = 2;
        assert!(matches!(
            Entry::decode(&bytes),
            Err(DecodeError::UnsupportedVersion { .. })
        ));

        let mut seq0 = first.encode();
        seq0[33..41].copy_from_slice(&0u64.to_be_bytes());
        assert!(matches!(
            Entry::decode(&seq0),
            Err(DecodeError::InvalidField { field: "seq", .. })
        ));

        // A seq-2 header without prev is misread (the length decides) and refused.
        let mut no_prev = first.encode();
        no_prev[33..41].copy_from_slice(&2u64.to_be_bytes());
        assert!(Entry::decode(&no_prev).is_err());
        // And a seq-1 header carrying a prev is misread and refused.
        let mut with_prev = first.signed_bytes();
        with_prev.splice(41..41, [7u8; 32]);
        with_prev.extend_from_slice(&first.signature);
        assert!(Entry::decode(&with_prev).is_err());
    }

    #[test]
    fn oversized_payload_length_is_refused_at_decode() {
        let mut e = Entry::sign(&key(1), 1, None, 1_700_000_000_000, b"x");
        e.payload_len = MAX_PAYLOAD_LEN + 1;
        assert!(matches!(
            Entry::decode(&e.encode()),
            Err(DecodeError::TooLong {
                field: "payload",
                ..
            })
        ));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let e = Entry::sign(&key(1), 1, None, 1_700_000_000_000, b"x");
        let mut bytes = e.encode();
        bytes[45] ^= 1; // a timestamp bit
        let tampered = Entry::decode(&bytes).expect("still well-formed");
        assert!(matches!(
            tampered.verify_signature(),
            Err(ValidationError::BadSignature { .. })
        ));
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            any::<[u8; 32]>(),
            1u64..u64::MAX,
            any::<[u8; 32]>(),
            any::<u64>(),
            0..=MAX_PAYLOAD_LEN,
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
        )
            .prop_map(|(a, seq, p, ts, len, h, s1, s2)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&s1);
                signature[32..].copy_from_slice(&s2);
                Entry {
                    author: AuthorId(a),
                    seq,
                    prev: (seq > 1).then_some(EntryId(p)),
                    timestamp_ms: ts,
                    payload_len: len,
                    payload_hash: h,
                    signature,
                }
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(e in arb_entry()) {
            let bytes = e.encode();
            prop_assert_eq!(Entry::decode(&bytes), Ok(e.clone()));
            // Canonical: re-encoding the decoded value gives the same bytes.
            prop_assert_eq!(Entry::decode(&bytes).map(|d| d.encode()), Ok(bytes));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(e) = Entry::decode(&bytes) {
                prop_assert_eq!(e.encode(), bytes);
            }
        }
    }
}
