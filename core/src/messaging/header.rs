//! The Double Ratchet message header (sender's ratchet key, previous chain
//! length, message number) and its encryption under a header key
//! (Double Ratchet specification, section 4).
//!
//! Guarantees: a header is only ever read after ChaCha20-Poly1305 verified
//! it under a header key we hold, so relays see neither the ratchet key nor
//! the counters, and a tampered header is refused before any key derivation.

use zeroize::Zeroizing;

use super::error::MResult;
use super::primitives::{Entropy, Key32, open, seal};
use crate::encoding::Reader;

/// Bytes of a clear header: ratchet public key, PN, N.
pub const HEADER_LEN: usize = 32 + 4 + 4;
/// Bytes of an encrypted header: nonce, header, tag.
pub const ENC_HEADER_LEN: usize = 12 + HEADER_LEN + 16;

/// A Double Ratchet header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The sender's current ratchet public key.
    pub(crate) dh: [u8; 32],
    /// Number of messages in the sender's previous sending chain.
    pub(crate) pn: u32,
    /// Number of this message in the current sending chain.
    pub(crate) n: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(&self.dh);
        out[32..36].copy_from_slice(&self.pn.to_be_bytes());
        out[36..].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> MResult<Header> {
        let mut r = Reader::new(bytes);
        let h = Header {
            dh: r.array("header dh")?,
            pn: r.u32("header pn")?,
            n: r.u32("header n")?,
        };
        r.finish()?;
        Ok(h)
    }

    /// HENCRYPT: `nonce (12, random) || ChaCha20-Poly1305(hk, nonce, header, ad)`.
    /// A header key protects a whole chain, hence the random nonce.
    pub(crate) fn seal(&self, hk: &Key32, ad: &[u8], rng: &mut Entropy) -> MResult<Vec<u8>> {
        let nonce: [u8; 12] = rng.array()?;
        let mut out = Vec::with_capacity(ENC_HEADER_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&seal(hk, &nonce, ad, &self.encode()));
        Ok(out)
    }

    /// HDECRYPT: `None` if `hk` does not open `enc` (not an error: the
    /// caller tries several header keys).
    pub(crate) fn open(hk: &Key32, ad: &[u8], enc: &[u8]) -> Option<Header> {
        if enc.len() != ENC_HEADER_LEN {
            return None;
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&enc[..12]);
        let clear: Zeroizing<Vec<u8>> = open(hk, &nonce, ad, &enc[12..]).ok()?;
        Header::decode(&clear).ok()
    }
}
