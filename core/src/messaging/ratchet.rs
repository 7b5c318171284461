//! The Double Ratchet with header encryption (Signal's specification,
//! sections 3 and 4) as a pure state machine: no I/O, no clock, no globals.
//!
//! Guarantees: [`RatchetState::decrypt`] never changes `self`; it returns a
//! new state only when the message authenticated, so a tampered or replayed
//! message leaves the session exactly as it was and the caller commits the
//! new state and the plaintext together. A header claiming a counter more
//! than [`MAX_SKIP`] ahead is refused before any key is derived. Every
//! message key is used once: it is derived, used and dropped, or stored in
//! the bounded skipped-key store and removed when used.

use zeroize::Zeroizing;

use super::error::{MResult, MessagingError};
use super::header::{ENC_HEADER_LEN, Header};
use super::primitives::{
    DhPair, Entropy, Key32, SecretBuf, dh, hkdf, kdf_ck, message_key_material, open, read_key,
    read_opt_key, seal,
};
use super::skipped::{Skipped, SkippedKeys};
use crate::encoding::Reader;

/// Most message keys one header may make us skip (derive and store) in a
/// single chain.
pub const MAX_SKIP: u32 = 1000;

/// HKDF info of the root chain step (KDF_RK_HE).
const ROOT_INFO: &[u8] = b"starling/dr-root/v1";
/// HKDF info expanding a message key into an AEAD key and nonce.
const MESSAGE_INFO: &[u8] = b"starling/dr-message/v1";
/// Version of the serialised state.
const STATE_VERSION: u8 = 1;

/// KDF_RK_HE: HKDF-SHA256(salt = rk, ikm = dh_out) → (root key, chain key,
/// next header key).
fn kdf_rk_he(rk: &Key32, dh_out: &Key32) -> (Key32, Key32, Key32) {
    let mut okm = Zeroizing::new([0u8; 96]);
    hkdf(rk.bytes(), dh_out.bytes(), ROOT_INFO, okm.as_mut());
    (
        Key32::from_slice(&okm[..32]),
        Key32::from_slice(&okm[32..64]),
        Key32::from_slice(&okm[64..]),
    )
}

/// One party's Double Ratchet state (header-encryption variant).
#[derive(Clone)]
pub(crate) struct RatchetState {
    dhs: DhPair,
    dhr: Option<[u8; 32]>,
    rk: Key32,
    cks: Option<Key32>,
    ckr: Option<Key32>,
    hks: Option<Key32>,
    hkr: Option<Key32>,
    nhks: Key32,
    nhkr: Key32,
    ns: u32,
    nr: u32,
    pn: u32,
    /// DH ratchet steps taken, to expire skipped keys by age in steps.
    step: u32,
    skipped: SkippedKeys,
}

impl std::fmt::Debug for RatchetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RatchetState")
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

impl RatchetState {
    /// RatchetInitAliceHE: the initiator, knowing the responder's signed
    /// prekey as the first remote ratchet key.
    pub(crate) fn init_alice(
        sk: &Key32,
        bob_ratchet: &[u8; 32],
        shared_hka: Key32,
        shared_nhkb: Key32,
        rng: &mut Entropy,
    ) -> MResult<Self> {
        let dhs = DhPair::generate(rng)?;
        let (rk, cks, nhks) = kdf_rk_he(sk, &dh(&dhs.secret, bob_ratchet)?);
        Ok(RatchetState {
            dhs,
            dhr: Some(*bob_ratchet),
            rk,
            cks: Some(cks),
            ckr: None,
            hks: Some(shared_hka),
            hkr: None,
            nhks,
            nhkr: shared_nhkb,
            ns: 0,
            nr: 0,
            pn: 0,
            step: 0,
            skipped: SkippedKeys::default(),
        })
    }

    /// RatchetInitBobHE: the responder, whose signed prekey pair is the first
    /// ratchet key pair.
    pub(crate) fn init_bob(sk: &Key32, spk: DhPair, shared_hka: Key32, shared_nhkb: Key32) -> Self {
        RatchetState {
            dhs: spk,
            dhr: None,
            rk: sk.clone(),
            cks: None,
            ckr: None,
            hks: None,
            hkr: None,
            nhks: shared_nhkb,
            nhkr: shared_hka,
            ns: 0,
            nr: 0,
            pn: 0,
            step: 0,
            skipped: SkippedKeys::default(),
        }
    }

    /// The header key the next sent message is encrypted under (its mailbox
    /// tag is derived from it), if this side can send yet.
    pub(crate) fn sending_header_key(&self) -> Option<&Key32> {
        self.hks.as_ref()
    }

    /// Header keys an incoming message of this session can be under: the
    /// current and next receiving header keys and those with skipped keys.
    pub(crate) fn receiving_header_keys(&self) -> Vec<Key32> {
        let mut out = self.skipped.header_keys();
        if let Some(hkr) = &self.hkr {
            out.push(hkr.clone());
        }
        out.push(self.nhkr.clone());
        out
    }

    /// Number of skipped keys held.
    #[cfg(test)]
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// RatchetEncryptHE. `ad` is the session's associated data; `outer` is
    /// authenticated too (the envelope header). Returns the new state and
    /// `enc_header || ciphertext`.
    pub(crate) fn encrypt(
        &self,
        ad: &[u8],
        outer: &[u8],
        plaintext: &[u8],
        rng: &mut Entropy,
    ) -> MResult<(RatchetState, Vec<u8>)> {
        let mut st = self.clone();
        let (Some(cks), Some(hks)) = (&st.cks, &st.hks) else {
            return Err(MessagingError::InvalidInput(
                "this session cannot send before it received a message".into(),
            ));
        };
        if st.ns == u32::MAX {
            return Err(MessagingError::InvalidInput(
                "sending chain exhausted; wait for a reply".into(),
            ));
        }
        let (next, mk) = kdf_ck(cks);
        let header = Header {
            dh: st.dhs.public,
            pn: st.pn,
            n: st.ns,
        };
        let enc_header = header.seal(hks, ad, rng)?;
        st.cks = Some(next);
        st.ns += 1;
        let (key, nonce) = message_key_material(&mk, MESSAGE_INFO);
        let body_ad = [ad, outer, &enc_header].concat();
        let mut out = enc_header;
        out.extend_from_slice(&seal(&key, &nonce, &body_ad, plaintext));
        Ok((st, out))
    }

    /// RatchetDecryptHE on a copy: returns the new state and the plaintext,
    /// or an error with `self` untouched.
    pub(crate) fn decrypt(
        &self,
        ad: &[u8],
        outer: &[u8],
        body: &[u8],
        now_ms: u64,
        rng: &mut Entropy,
    ) -> MResult<(RatchetState, Zeroizing<Vec<u8>>)> {
        if body.len() < ENC_HEADER_LEN + 16 {
            return Err(MessagingError::Undecryptable);
        }
        let (enc_header, ciphertext) = body.split_at(ENC_HEADER_LEN);
        let body_ad = [ad, outer, enc_header].concat();
        let mut st = self.clone();

        // 1. A skipped key? Try each chain that has some.
        for hk in st.skipped.header_keys() {
            if let Some(h) = Header::open(&hk, ad, enc_header) {
                if let Some(mk) = st.skipped.take(&hk, h.n) {
                    let pt = decrypt_with(&mk, &body_ad, ciphertext)?;
                    return Ok((st, pt));
                }
                if st.hkr.as_ref() == Some(&hk) {
                    // The current chain: a message ahead (or a duplicate)
                    // is decided below.
                    break;
                }
                // An old chain's header key, but this key is gone: it was
                // used (or expired) already.
                return Err(MessagingError::Duplicate);
            }
        }

        // 2. The current receiving chain, or 3. a new one (DH ratchet step).
        let (header, ratchet) = if let Some(h) = st
            .hkr
            .as_ref()
            .and_then(|hkr| Header::open(hkr, ad, enc_header))
        {
            (h, false)
        } else if let Some(h) = Header::open(&st.nhkr, ad, enc_header) {
            (h, true)
        } else {
            return Err(MessagingError::Undecryptable);
        };

        // Bounds first, before a single key is derived: a header claiming
        // n = 2^32 - 1 costs one header decryption and nothing else.
        if ratchet {
            if st.ckr.is_some() {
                check_jump(st.nr, header.pn)?;
            }
            check_jump(0, header.n)?;
        } else {
            if header.n < st.nr {
                return Err(MessagingError::Duplicate);
            }
            check_jump(st.nr, header.n)?;
        }

        if ratchet {
            st.skip_message_keys(header.pn, now_ms);
            st.dh_ratchet(&header, rng)?;
        }
        st.skip_message_keys(header.n, now_ms);
        let ckr = st.ckr.as_ref().ok_or(MessagingError::Undecryptable)?;
        let (next, mk) = kdf_ck(ckr);
        st.ckr = Some(next);
        st.nr = st.nr.saturating_add(1);
        st.skipped.expire(now_ms, st.step);
        let pt = decrypt_with(&mk, &body_ad, ciphertext)?;
        Ok((st, pt))
    }

    fn skip_message_keys(&mut self, until: u32, now_ms: u64) {
        let (Some(ckr), Some(hkr)) = (self.ckr.clone(), self.hkr.clone()) else {
            return;
        };
        let mut ck = ckr;
        while self.nr < until {
            let (next, mk) = kdf_ck(&ck);
            self.skipped.push(Skipped {
                hk: hkr.clone(),
                n: self.nr,
                mk,
                created_ms: now_ms,
                step: self.step,
            });
            ck = next;
            self.nr += 1;
        }
        self.ckr = Some(ck);
    }

    fn dh_ratchet(&mut self, header: &Header, rng: &mut Entropy) -> MResult<()> {
        // The peer's new ratchet key is checked (low order, contributory)
        // inside `dh` before it influences anything.
        let dh_recv = dh(&self.dhs.secret, &header.dh)?;
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.hks = Some(self.nhks.clone());
        self.hkr = Some(self.nhkr.clone());
        self.dhr = Some(header.dh);
        let (rk, ckr, nhkr) = kdf_rk_he(&self.rk, &dh_recv);
        self.rk = rk;
        self.ckr = Some(ckr);
        self.nhkr = nhkr;
        self.dhs = DhPair::generate(rng)?;
        let (rk, cks, nhks) = kdf_rk_he(&self.rk, &dh(&self.dhs.secret, &header.dh)?);
        self.rk = rk;
        self.cks = Some(cks);
        self.nhks = nhks;
        self.step = self.step.saturating_add(1);
        Ok(())
    }

    /// Serialises the whole state (secrets included) for sealing at rest.
    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = SecretBuf::with_capacity(512 + self.skipped.len() * 80);
        w.u8(STATE_VERSION)
            .bytes(self.dhs.secret.as_bytes())
            .u8(u8::from(self.dhr.is_some()))
            .bytes(&self.dhr.unwrap_or([0; 32]))
            .bytes(self.rk.bytes())
            .opt_key(&self.cks)
            .opt_key(&self.ckr)
            .opt_key(&self.hks)
            .opt_key(&self.hkr)
            .bytes(self.nhks.bytes())
            .bytes(self.nhkr.bytes())
            .u32(self.ns)
            .u32(self.nr)
            .u32(self.pn)
            .u32(self.step);
        self.skipped.write(&mut w);
        w.0
    }

    /// Reads a state written by [`RatchetState::to_bytes`].
    pub(crate) fn from_bytes(bytes: &[u8]) -> MResult<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("ratchet state version")?;
        if version != STATE_VERSION {
            return Err(crate::encoding::DecodeError::UnsupportedVersion {
                what: "ratchet state",
                version,
            }
            .into());
        }
        let dhs = DhPair::from_secret(*read_key(&mut r, "dhs")?.bytes());
        let has_dhr = r.flag("dhr flag")?;
        let dhr_bytes: [u8; 32] = r.array("dhr")?;
        let st = RatchetState {
            dhs,
            dhr: has_dhr.then_some(dhr_bytes),
            rk: read_key(&mut r, "rk")?,
            cks: read_opt_key(&mut r, "cks")?,
            ckr: read_opt_key(&mut r, "ckr")?,
            hks: read_opt_key(&mut r, "hks")?,
            hkr: read_opt_key(&mut r, "hkr")?,
            nhks: read_key(&mut r, "nhks")?,
            nhkr: read_key(&mut r, "nhkr")?,
            ns: r.u32("ns")?,
            nr: r.u32("nr")?,
            pn: r.u32("pn")?,
            step: r.u32("step")?,
            skipped: SkippedKeys::read(&mut r)?,
        };
        r.finish()?;
        Ok(st)
    }

    #[cfg(test)]
    pub(crate) fn test_forge_header(
        &self,
        ad: &[u8],
        n: u32,
        rng: &mut Entropy,
    ) -> MResult<Vec<u8>> {
        let hks = self.hks.as_ref().ok_or(MessagingError::Undecryptable)?;
        Header {
            dh: self.dhs.public,
            pn: self.pn,
            n,
        }
        .seal(hks, ad, rng)
    }
}

/// Refuses a counter jump beyond [`MAX_SKIP`] (compared in u64 so no
/// overflow is possible).
fn check_jump(from: u32, to: u32) -> MResult<()> {
    let jump = u64::from(to).saturating_sub(u64::from(from));
    if jump > u64::from(MAX_SKIP) {
        return Err(MessagingError::TooFarAhead {
            jump,
            limit: MAX_SKIP,
        });
    }
    Ok(())
}

fn decrypt_with(mk: &Key32, ad: &[u8], ciphertext: &[u8]) -> MResult<Zeroizing<Vec<u8>>> {
    let (key, nonce) = message_key_material(mk, MESSAGE_INFO);
    open(&key, &nonce, ad, ciphertext)
}
