//! Safety numbers: a 60-digit number and a QR-able string two users compare
//! to confirm no one sits between them, in the manner of Signal's numeric
//! fingerprints.
//!
//! Guarantees: the number depends on both parties' Ed25519 identity and the
//! X25519 identity key bound to it, is the same on both sides (the two
//! halves are sorted), and each half costs 5200 SHA-512 iterations to
//! target, which makes searching for a colliding key expensive.

use sha2::{Digest, Sha512};

use crate::identity::id::AuthorId;

/// SHA-512 iterations per fingerprint (as Signal).
const ITERATIONS: usize = 5200;
/// Version prefix of the fingerprint hash input.
const VERSION: [u8; 2] = [0, 0];
/// Prefix of the QR string.
pub const QR_PREFIX: &str = "starling-verify/v1/";

fn fingerprint(author: &AuthorId, ik: &[u8; 32]) -> [u8; 64] {
    let key = [author.as_bytes().as_slice(), ik].concat();
    let mut h: [u8; 64] = Sha512::new()
        .chain_update(VERSION)
        .chain_update(&key)
        .chain_update(author.as_bytes())
        .finalize()
        .into();
    for _ in 1..ITERATIONS {
        h = Sha512::new()
            .chain_update(h)
            .chain_update(&key)
            .finalize()
            .into();
    }
    h
}

/// 30 digits: six 5-byte chunks, each big-endian mod 100000.
fn digits(fp: &[u8; 64]) -> String {
    let mut out = String::with_capacity(30);
    for chunk in fp[..30].chunks(5) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

/// The 60-digit safety number of two (author, identity key) pairs; the same
/// whichever side computes it.
pub fn safety_number(a: (&AuthorId, &[u8; 32]), b: (&AuthorId, &[u8; 32])) -> String {
    let mut halves = [
        digits(&fingerprint(a.0, a.1)),
        digits(&fingerprint(b.0, b.1)),
    ];
    halves.sort();
    halves.concat()
}

/// The QR string `mine` shows to `theirs`:
/// `starling-verify/v1/<hex fp(mine)[..32]>/<hex fp(theirs)[..32]>`.
pub fn safety_qr(mine: (&AuthorId, &[u8; 32]), theirs: (&AuthorId, &[u8; 32])) -> String {
    format!(
        "{QR_PREFIX}{}/{}",
        super::primitives::hex32(&fingerprint(mine.0, mine.1)[..32]),
        super::primitives::hex32(&fingerprint(theirs.0, theirs.1)[..32])
    )
}

/// Whether a QR string scanned from `theirs` matches what we expect: their
/// fingerprint first, ours second.
pub fn check_safety_qr(
    scanned: &str,
    mine: (&AuthorId, &[u8; 32]),
    theirs: (&AuthorId, &[u8; 32]),
) -> bool {
    // Comparing public fingerprints: no secret, so plain equality is fine.
    scanned.trim() == safety_qr(theirs, mine)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_sixty_digits_and_key_sensitive() {
        let (a, b) = (AuthorId::from_bytes([1; 32]), AuthorId::from_bytes([2; 32]));
        let n1 = safety_number((&a, &[3; 32]), (&b, &[4; 32]));
        let n2 = safety_number((&b, &[4; 32]), (&a, &[3; 32]));
        assert_eq!(n1, n2);
        assert_eq!(n1.len(), 60);
        assert!(n1.bytes().all(|c| c.is_ascii_digit()));
        assert_ne!(n1, safety_number((&a, &[3; 32]), (&b, &[5; 32])));
        let qr = safety_qr((&a, &[3; 32]), (&b, &[4; 32]));
        assert!(check_safety_qr(&qr, (&b, &[4; 32]), (&a, &[3; 32])));
        assert!(!check_safety_qr(&qr, (&b, &[5; 32]), (&a, &[3; 32])));
    }
}
