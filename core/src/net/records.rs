//! Signed "where to reach me" records for the Kademlia DHT, and the filter
//! that decides which records this node stores for others.
//!
//! Guarantees: a record is stored or served only if its key is
//! `/starling/reach/1/` followed by a 32-byte author id, its value decodes
//! canonically, is at most [`MAX_RECORD_LEN`] bytes, is signed (Ed25519,
//! strict) by that author, and is fresh (issued within [`MAX_RECORD_AGE`],
//! not more than ten minutes in the future). Everything else — arbitrary
//! keys, foreign values, stale or oversized records — is refused, so the DHT
//! cannot be used to park data on Starling nodes.
//!
//! Value layout (big-endian, like the entry format):
//!
//! ```text
//! 0x01                       version
//! author        32           Ed25519 public key (must equal the key's id)
//! issued_at_ms   8           author's clock
//! peer_id_len    1 | peer_id the libp2p PeerId bytes (multihash)
//! addr_count     1 (<= 8)  then per address: len u8 | multiaddr bytes
//! signature     64           Ed25519 over b"starling/reach/v1" || all preceding bytes
//! ```

use libp2p::{Multiaddr, PeerId};

use crate::encoding::Reader;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::identity::id::AuthorId;

/// Prefix of every DHT key this node accepts.
pub const RECORD_KEY_PREFIX: &[u8] = b"/starling/reach/1/";
/// Largest record value accepted.
pub const MAX_RECORD_LEN: usize = 1024;
/// Most addresses one record may carry.
pub const MAX_RECORD_ADDRS: usize = 8;
/// Oldest record accepted: authors republish well within this.
pub const MAX_RECORD_AGE_MS: u64 = 48 * 3600 * 1000;
/// Same idea as [`MAX_RECORD_AGE_MS`], as a `Duration`.
pub const MAX_RECORD_AGE: std::time::Duration = std::time::Duration::from_millis(MAX_RECORD_AGE_MS);
/// Clock skew tolerated for records from the future (as for entries).
const MAX_FUTURE_MS: u64 = 10 * 60 * 1000;
/// Domain separation of the signature.
const SIGNING_CONTEXT: &[u8] = b"starling/reach/v1";
const VERSION: u8 = 0x01;

/// A validated reachability record: "author X can be reached at peer P,
/// addresses A".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachRecord {
    /// The author who signed the record.
    pub author: AuthorId,
    /// When the author issued it (ms since the Unix epoch).
    pub issued_at_ms: u64,
    /// The network identity the author's device uses.
    pub peer: PeerId,
    /// Where that peer listens (possibly relay circuit addresses).
    pub addrs: Vec<Multiaddr>,
}

/// The DHT key of `author`'s record.
pub fn record_key(author: &AuthorId) -> Vec<u8> {
    let mut k = RECORD_KEY_PREFIX.to_vec();
    k.extend_from_slice(author.as_bytes());
    k
}

/// Signs a record for the local identity. Addresses beyond
/// [`MAX_RECORD_ADDRS`] or too long for the layout are dropped.
pub fn sign_record(
    identity: &Identity,
    peer: PeerId,
    addrs: &[Multiaddr],
    issued_at_ms: u64,
) -> Vec<u8> {
    let mut v = vec![VERSION];
    v.extend_from_slice(identity.author_id().as_bytes());
    v.extend_from_slice(&issued_at_ms.to_be_bytes());
    let pid = peer.to_bytes();
    // A PeerId is a multihash of at most ~42 bytes, so it always fits a u8.
    v.push(u8::try_from(pid.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(&pid);
    let addrs: Vec<Vec<u8>> = addrs
        .iter()
        .map(|a| a.to_vec())
        .filter(|a| a.len() <= usize::from(u8::MAX))
        .take(MAX_RECORD_ADDRS)
        .collect();
    // Keep the record under the size cap even with long addresses.
    let mut kept = Vec::new();
    let mut len = v.len() + 1 + 64;
    for a in addrs {
        if len + 1 + a.len() > MAX_RECORD_LEN {
            break;
        }
        len += 1 + a.len();
        kept.push(a);
    }
    v.push(kept.len() as u8);
    for a in kept {
        v.push(a.len() as u8);
        v.extend_from_slice(&a);
    }
    let sig = identity.sign(&signing_message(&v));
    v.extend_from_slice(&sig);
    v
}

fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut m = SIGNING_CONTEXT.to_vec();
    m.extend_from_slice(body);
    m
}

/// Validates a (key, value) pair from the DHT. `now_ms` is the local clock.
///
/// Errors: [`Error::InvalidInput`] for a foreign key, wrong size or stale
/// record; [`Error::Decode`] for a malformed value; [`Error::Crypto`] for a
/// bad signature or a key/author mismatch.
pub fn validate_record(key: &[u8], value: &[u8], now_ms: u64) -> Result<ReachRecord> {
    let author_bytes = key
        .strip_prefix(RECORD_KEY_PREFIX)
        .ok_or_else(|| Error::InvalidInput("not a starling reach record key".into()))?;
    let key_author = AuthorId::from_slice(author_bytes)?;
    if value.len() > MAX_RECORD_LEN {
        return Err(Error::InvalidInput(format!(
            "record of {} bytes exceeds {MAX_RECORD_LEN}",
            value.len()
        )));
    }
    if value.len() < 64 {
        return Err(Error::InvalidInput("record too short".into()));
    }
    let (body, sig) = value.split_at(value.len() - 64);
    let mut r = Reader::new(body);
    let version = r.u8("reach record version")?;
    if version != VERSION {
        return Err(Error::InvalidInput(format!(
            "unknown reach record version {version}"
        )));
    }
    let author = AuthorId::from_bytes(r.array("reach record author")?);
    if author != key_author {
        return Err(Error::Crypto("record author differs from its key".into()));
    }
    let issued_at_ms = r.u64("reach record time")?;
    let pid_len = usize::from(r.u8("peer id length")?);
    let pid = r.take(pid_len, "peer id")?;
    let peer = PeerId::from_bytes(pid)
        .map_err(|e| Error::InvalidInput(format!("bad peer id in record: {e}")))?;
    let count = usize::from(r.u8("address count")?);
    if count > MAX_RECORD_ADDRS {
        return Err(Error::InvalidInput("too many addresses in record".into()));
    }
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(r.u8("address length")?);
        let bytes = r.take(len, "address")?;
        let addr = Multiaddr::try_from(bytes.to_vec())
            .map_err(|e| Error::InvalidInput(format!("bad address in record: {e}")))?;
        addrs.push(addr);
    }
    if r.remaining() != 0 {
        return Err(Error::InvalidInput("trailing bytes in record".into()));
    }
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| Error::InvalidInput("record signature length".into()))?;
    crate::identity::verify_strict(&author, &signing_message(body), &sig)?;
    if issued_at_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(Error::InvalidInput("record issued in the future".into()));
    }
    if issued_at_ms < now_ms.saturating_sub(MAX_RECORD_AGE_MS) {
        return Err(Error::InvalidInput("stale record".into()));
    }
    Ok(ReachRecord {
        author,
        issued_at_ms,
        peer,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_forgeries_are_refused() {
        let id = Identity::generate().unwrap();
        let other = Identity::generate().unwrap();
        let peer = PeerId::random();
        let addrs: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
        let now = 1_800_000_000_000;
        let value = sign_record(&id, peer, &addrs, now);
        let key = record_key(&id.author_id());
        let rec = validate_record(&key, &value, now).unwrap();
        assert_eq!(
            (rec.peer, rec.addrs, rec.author),
            (peer, addrs.clone(), id.author_id())
        );

        // Someone else's key, a flipped byte, stale, oversized, foreign key.
        assert!(validate_record(&record_key(&other.author_id()), &value, now).is_err());
        let mut bad = value.clone();
        bad[40] ^= 1;
        assert!(validate_record(&key, &bad, now).is_err());
        assert!(validate_record(&key, &value, now + MAX_RECORD_AGE_MS + 1).is_err());
        assert!(validate_record(&key, &vec![0u8; MAX_RECORD_LEN + 1], now).is_err());
        assert!(validate_record(b"/other/key", &value, now).is_err());
        assert!(validate_record(&key, &value[..10], now).is_err());
        // Signed by another author but claiming this key's author: refused.
        let forged = sign_record(&other, peer, &addrs, now);
        assert!(validate_record(&key, &forged, now).is_err());
    }
}
