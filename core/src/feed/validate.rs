//! The rules a foreign entry must pass before it is stored: strict
//! signatures (checked in batches), payload length and hash, a timestamp
//! window, and chain continuity. The store applies these inside the ingest
//! transaction, so an entry that fails any of them leaves nothing behind.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::feed::entry::{Entry, MAX_PAYLOAD_LEN};
use crate::identity::id::{AuthorId, EntryId};

/// How far ahead of our clock an author's timestamp may be (clock skew).
pub const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
/// Earliest acceptable timestamp: 2020-01-01T00:00:00Z. Anything older is a
/// broken clock, not history (Starling did not exist).
pub const MIN_TIMESTAMP_MS: u64 = 1_577_836_800_000;

/// Why a well-formed entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The signature does not verify under `verify_strict`.
    #[error("bad signature on {author} seq {seq}")]
    BadSignature {
        /// The claimed author.
        author: AuthorId,
        /// The entry's seq.
        seq: u64,
    },
    /// The author key is weak (small order) or not a curve point.
    #[error("author key {0} is weak or not a valid Ed25519 point")]
    WeakKey(AuthorId),
    /// The entry skips ahead of the feed.
    #[error("seq gap in {author}: have up to {have}, got {got}")]
    SeqGap {
        /// The feed.
        author: AuthorId,
        /// Latest seq we hold.
        have: u64,
        /// Seq of the entry offered.
        got: u64,
    },
    /// `prev` does not name the entry we hold at `seq - 1`.
    #[error("entry {seq} of {author} does not chain to our entry {}", seq - 1)]
    WrongPrev {
        /// The feed.
        author: AuthorId,
        /// The entry's seq.
        seq: u64,
    },
    /// The timestamp is earlier than its predecessor's.
    #[error(
        "entry {seq} of {author} is dated {timestamp_ms}, before its predecessor ({prev_timestamp_ms})"
    )]
    Rewind {
        /// The feed.
        author: AuthorId,
        /// The entry's seq.
        seq: u64,
        /// Its timestamp.
        timestamp_ms: u64,
        /// The predecessor's timestamp.
        prev_timestamp_ms: u64,
    },
    /// The timestamp is before 2020 or too far in the future.
    #[error("timestamp {timestamp_ms} is outside the accepted window")]
    TimestampOutOfWindow {
        /// The timestamp.
        timestamp_ms: u64,
    },
    /// The payload exceeds [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload's length differs from what the entry announces.
    #[error("payload is {actual} bytes, the entry announces {announced}")]
    PayloadLengthMismatch {
        /// Announced length.
        announced: u32,
        /// Actual length.
        actual: usize,
    },
    /// The payload's hash differs from the entry's.
    #[error("payload hash does not match the entry")]
    PayloadHashMismatch,
    /// The payload does not decode or breaks a type limit.
    #[error("payload: {0}")]
    BadPayload(crate::encoding::DecodeError),
    /// The entry does not decode.
    #[error("entry: {0}")]
    BadEntry(crate::encoding::DecodeError),
    /// A delete names an entry of another author.
    #[error("a delete may only target the author's own entries")]
    ForeignDelete,
    /// The payload is internally inconsistent (e.g. a bad key binding).
    #[error("payload rejected: {0}")]
    PayloadRule(String),
}

/// Parses an author key for strict verification, refusing weak keys.
pub fn strict_verifying_key(author: &AuthorId) -> Result<VerifyingKey, ValidationError> {
    let key = VerifyingKey::from_bytes(author.as_bytes())
        .map_err(|_| ValidationError::WeakKey(*author))?;
    if key.is_weak() {
        return Err(ValidationError::WeakKey(*author));
    }
    Ok(key)
}

/// The y-coordinates of the eight small-order points of edwards25519, as
/// little-endian encodings with the sign bit clear, including the two
/// non-canonical encodings (y + p) that still decode: 0, 1, the two order-8
/// values, p - 1, p and p + 1. This is libsodium's `has_small_order` list; a
/// test derives it from the torsion subgroup.
const SMALL_ORDER_Y: [[u8; 32]; 7] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether the signature's `R` encodes a small-order point.
///
/// `verify_strict` refuses small-order `R`; batch verification alone does
/// not, so the batch path checks it explicitly to accept exactly the same
/// set. Comparing the encoding against the list (sign bit ignored) answers
/// the same as decompressing and testing the order, for every encoding that
/// decompresses, without the field inversion decompression costs; encodings
/// that do not decompress fail the batch equation anyway.
fn r_is_small_order(signature: &[u8; 64]) -> bool {
    let mut y = [0u8; 32];
    y.copy_from_slice(&signature[..32]);
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// Signatures checked by one batch equation at most. The multiscalar
/// multiplication's tables grow with the batch (about 1.3 KiB per
/// signature) while the saving per signature levels off well before this.
const VERIFY_CHUNK: usize = 512;

/// Verifies many entries' signatures with Ed25519 batch verification.
///
/// Returns one result per entry, in order. When the whole batch verifies,
/// that costs roughly half of checking one by one; when it does not, each
/// entry is checked with `verify_strict` to find the culprits. Each distinct
/// author key is decompressed once per batch (sync batches hold runs of the
/// same feeds).
pub fn verify_batch(entries: &[&Entry]) -> Vec<Result<(), ValidationError>> {
    let mut results: Vec<Result<(), ValidationError>> = Vec::with_capacity(entries.len());
    let mut keys = Vec::with_capacity(entries.len());
    let mut messages = Vec::with_capacity(entries.len());
    let mut signatures = Vec::with_capacity(entries.len());
    let mut parsed: HashMap<AuthorId, Result<VerifyingKey, ValidationError>> = HashMap::new();
    let mut all_ok = true;
    for entry in entries {
        let key = parsed
            .entry(entry.author)
            .or_insert_with(|| strict_verifying_key(&entry.author));
        match key {
            Ok(key) if !r_is_small_order(&entry.signature) => {
                keys.push(*key);
                messages.push(entry.signed_bytes());
                signatures.push(Signature::from_bytes(&entry.signature));
                results.push(Ok(()));
            }
            Ok(_) => {
                all_ok = false;
                results.push(Err(ValidationError::BadSignature {
                    author: entry.author,
                    seq: entry.seq,
                }));
            }
            Err(e) => {
                all_ok = false;
                results.push(Err(e.clone()));
            }
        }
    }
    if all_ok && !entries.is_empty() {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let verified = refs
            .chunks(VERIFY_CHUNK)
            .zip(signatures.chunks(VERIFY_CHUNK))
            .zip(keys.chunks(VERIFY_CHUNK))
            .all(|((m, s), k)| ed25519_dalek::verify_batch(m, s, k).is_ok());
        if verified {
            return results;
        }
    }
    entries
        .iter()
        .zip(results)
        .map(|(entry, earlier)| earlier.and_then(|()| entry.verify_signature()))
        .collect()
}

/// Checks that `payload` is the one the entry announces (length and hash)
/// and within the size limit.
pub fn check_payload(entry: &Entry, payload: &[u8]) -> Result<(), ValidationError> {
    if payload.len() > MAX_PAYLOAD_LEN as usize {
        return Err(ValidationError::Oversized {
            len: payload.len(),
            max: MAX_PAYLOAD_LEN as usize,
        });
    }
    if payload.len() != entry.payload_len as usize {
        return Err(ValidationError::PayloadLengthMismatch {
            announced: entry.payload_len,
            actual: payload.len(),
        });
    }
    if blake3::hash(payload).as_bytes() != &entry.payload_hash {
        return Err(ValidationError::PayloadHashMismatch);
    }
    Ok(())
}

/// Checks the timestamp lies between 2020 and `now_ms` plus the allowed skew.
pub fn check_timestamp(entry: &Entry, now_ms: u64) -> Result<(), ValidationError> {
    if entry.timestamp_ms < MIN_TIMESTAMP_MS
        || entry.timestamp_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS)
    {
        return Err(ValidationError::TimestampOutOfWindow {
            timestamp_ms: entry.timestamp_ms,
        });
    }
    Ok(())
}

/// Checks that `next` directly follows `prev` (same author, the next seq,
/// naming `prev`'s id, not dated earlier).
pub fn check_successor(
    prev: &Entry,
    prev_id: &EntryId,
    next: &Entry,
) -> Result<(), ValidationError> {
    if next.seq != prev.seq.saturating_add(1) {
        return Err(ValidationError::SeqGap {
            author: next.author,
            have: prev.seq,
            got: next.seq,
        });
    }
    if next.author != prev.author || next.prev.as_ref() != Some(prev_id) {
        return Err(ValidationError::WrongPrev {
            author: next.author,
            seq: next.seq,
        });
    }
    if next.timestamp_ms < prev.timestamp_ms {
        return Err(ValidationError::Rewind {
            author: next.author,
            seq: next.seq,
            timestamp_ms: next.timestamp_ms,
            prev_timestamp_ms: prev.timestamp_ms,
        });
    }
    Ok(())
}

/// The current time in ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    const T: u64 = 1_700_000_000_000;

    fn chain(n: u64) -> Vec<Entry> {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut out: Vec<Entry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(Entry::id);
            out.push(Entry::sign(
                &key,
                seq,
                prev,
                T + seq,
                format!("p{seq}").as_bytes(),
            ));
        }
        out
    }

    #[test]
    fn a_valid_batch_verifies() {
        let entries = chain(20);
        let refs: Vec<&Entry> = entries.iter().collect();
        assert!(verify_batch(&refs).iter().all(Result::is_ok));
    }

    #[test]
    fn the_bad_signature_in_a_batch_is_found() {
        let mut entries = chain(10);
        entries[6].signature[40] ^= 1;
        let refs: Vec<&Entry> = entries.iter().collect();
        let results = verify_batch(&refs);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 6, "entry {i}");
        }
    }

    #[test]
    fn weak_keys_are_refused_on_both_paths() {
        // The identity point (a small-order key): signatures "verify" under
        // non-strict checks for crafted messages, so it must be refused outright.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut e = chain(1).remove(0);
        e.author = AuthorId(identity);
        assert_eq!(
            e.verify_signature(),
            Err(ValidationError::WeakKey(AuthorId(identity)))
        );
        assert_eq!(
            verify_batch(&[&e]),
            vec![Err(ValidationError::WeakKey(AuthorId(identity)))]
        );
    }

    #[test]
    fn small_order_r_is_refused_by_the_batch_path() {
        let mut e = chain(1).remove(0);
        e.signature[..32].copy_from_slice(&{
            let mut id = [0u8; 32];
            id[0] = 1;
            id
        });
        assert!(verify_batch(&[&e])[0].is_err());
        assert!(e.verify_signature().is_err());
    }

    #[test]
    fn the_small_order_list_is_exactly_the_torsion_subgroup() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        // Every small-order point's encoding is on the list...
        for point in EIGHT_TORSION {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(point.compress().as_bytes());
            assert!(r_is_small_order(&sig), "{:?} missing", point.compress());
        }
        // ...and every listed encoding, with either sign bit, either does not
        // decode or decodes to a small-order point.
        for y in SMALL_ORDER_Y {
            for sign in [0u8, 0x80] {
                let mut bytes = y;
                bytes[31] |= sign;
                if let Some(p) = CompressedEdwardsY(bytes).decompress() {
                    assert!(p.is_small_order(), "{bytes:?} is not small order");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn the_small_order_list_agrees_with_decompression(bytes in proptest::array::uniform32(any::<u8>())) {
            use curve25519_dalek::edwards::CompressedEdwardsY;
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&bytes);
            if let Some(p) = CompressedEdwardsY(bytes).decompress() {
                prop_assert_eq!(r_is_small_order(&sig), p.is_small_order());
            }
        }
    }

    #[test]
    fn a_weak_key_fails_each_of_its_entries_in_a_batch() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut chain = chain(3);
        chain[0].author = AuthorId(identity);
        chain[2].author = AuthorId(identity);
        let refs: Vec<&Entry> = chain.iter().collect();
        let results = verify_batch(&refs);
        assert_eq!(
            results[0],
            Err(ValidationError::WeakKey(AuthorId(identity)))
        );
        assert!(results[1].is_ok());
        assert_eq!(
            results[2],
            Err(ValidationError::WeakKey(AuthorId(identity)))
        );
    }

    #[test]
    fn payload_checks() {
        let e = chain(1).remove(0);
        assert_eq!(check_payload(&e, b"p1"), Ok(()));
        assert_eq!(
            check_payload(&e, b"p2"),
            Err(ValidationError::PayloadHashMismatch)
        );
        assert!(matches!(
            check_payload(&e, b"p12"),
            Err(ValidationError::PayloadLengthMismatch { .. })
        ));
        let big = vec![0u8; MAX_PAYLOAD_LEN as usize + 1];
        assert!(matches!(
            check_payload(&e, &big),
            Err(ValidationError::Oversized { .. })
        ));
    }

    #[test]
    fn timestamp_window() {
        let mut e = chain(1).remove(0);
        assert!(check_timestamp(&e, T).is_ok());
        e.timestamp_ms = MIN_TIMESTAMP_MS - 1;
        assert!(check_timestamp(&e, T).is_err());
        e.timestamp_ms = T + MAX_CLOCK_SKEW_MS + 1;
        assert!(check_timestamp(&e, T).is_err());
    }

    #[test]
    fn successor_rules() {
        let c = chain(3);
        let id0 = c[0].id();
        assert_eq!(check_successor(&c[0], &id0, &c[1]), Ok(()));
        assert!(matches!(
            check_successor(&c[0], &id0, &c[2]),
            Err(ValidationError::SeqGap { .. })
        ));
        let wrong = c[1].id();
        assert!(matches!(
            check_successor(&c[0], &wrong, &c[1]),
            Err(ValidationError::WrongPrev { .. })
        ));
        let key = SigningKey::from_bytes(&[3; 32]);
        let early = Entry::sign(&key, 2, Some(id0), T - 5, b"x");
        assert!(matches!(
            check_successor(&c[0], &id0, &early),
            Err(ValidationError::Rewind { .. })
        ));
    }
}
