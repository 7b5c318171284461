//! Sender Keys in the manner of Signal's groups: each member encrypts group
//! messages with its own hash-ratchet chain and signs them with a per-chain
//! Ed25519 key; the chain is handed to the other members over the 1:1
//! sessions (a sender key distribution).
//!
//! Guarantees: the associated data binds the group id, epoch, sender and
//! chain index (and the envelope header), under a type byte distinct from
//! 1:1 messages, so a message copied to another group, another sender's
//! chain, another position or the 1:1 path fails to authenticate; the
//! signature stops members from forging each other's messages; counter jumps
//! beyond [`super::MAX_SKIP`] are refused before any key is derived;
//! decryption works on a copy.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::error::{MResult, MessagingError};
use super::primitives::{
    Entropy, Key32, SecretBuf, kdf_ck, message_key_material, open, read_key, seal,
};
use super::ratchet::MAX_SKIP;
use super::skipped::{MAX_SKIPPED, SKIPPED_MAX_AGE_MS};
use crate::encoding::Reader;
use crate::identity::id::AuthorId;

/// Type byte of group messages in their associated data.
pub(crate) const GROUP_TYPE: u8 = 0x03;
const GROUP_AD_CONTEXT: &[u8] = b"starling/group/v1";
const GROUP_MESSAGE_INFO: &[u8] = b"starling/group-message/v1";
/// Bytes of a group body besides the padded plaintext.
pub(crate) const GROUP_OVERHEAD: usize = 12 + 4 + 16 + 16 + 64;

/// `"starling/group/v1" || 0x03 || group id || epoch || sender`.
pub(crate) fn group_ad(group: &[u8; 32], epoch: u32, sender: &AuthorId) -> Vec<u8> {
    [
        GROUP_AD_CONTEXT,
        &[GROUP_TYPE],
        group,
        &epoch.to_be_bytes(),
        sender.as_bytes(),
    ]
    .concat()
}

/// A sender key as distributed: everything a member needs to follow the
/// sender's chain from `iteration` on.
#[derive(Clone, Debug)]
pub(crate) struct Distribution {
    pub(crate) epoch: u32,
    pub(crate) iteration: u32,
    pub(crate) ck: Key32,
    pub(crate) header_key: Key32,
    pub(crate) verifying: [u8; 32],
}

impl Distribution {
    pub(crate) fn write(&self, w: &mut SecretBuf) {
        w.u32(self.epoch)
            .u32(self.iteration)
            .bytes(self.ck.bytes())
            .bytes(self.header_key.bytes())
            .bytes(&self.verifying);
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> MResult<Self> {
        Ok(Distribution {
            epoch: r.u32("sender key epoch")?,
            iteration: r.u32("sender key iteration")?,
            ck: read_key(r, "sender chain key")?,
            header_key: read_key(r, "sender header key")?,
            verifying: r.array("sender signing key")?,
        })
    }
}

/// Our own sending chain in a group.
#[derive(Clone)]
pub(crate) struct SenderKey {
    pub(crate) epoch: u32,
    ck: Key32,
    iteration: u32,
    pub(crate) header_key: Key32,
    signing: Key32,
}

impl SenderKey {
    pub(crate) fn generate(epoch: u32, rng: &mut Entropy) -> MResult<Self> {
        Ok(SenderKey {
            epoch,
            ck: Key32::new(rng.array()?),
            iteration: 0,
            header_key: Key32::new(rng.array()?),
            signing: Key32::new(rng.array()?),
        })
    }

    fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(self.signing.bytes())
    }

    /// The distribution of the chain's current position.
    pub(crate) fn distribution(&self) -> Distribution {
        Distribution {
            epoch: self.epoch,
            iteration: self.iteration,
            ck: self.ck.clone(),
            header_key: self.header_key.clone(),
            verifying: self.signing_key().verifying_key().to_bytes(),
        }
    }

    /// Encrypts one padded plaintext; returns the advanced key and the body.
    pub(crate) fn encrypt(
        &self,
        group: &[u8; 32],
        sender: &AuthorId,
        outer: &[u8],
        padded: &[u8],
        rng: &mut Entropy,
    ) -> MResult<(SenderKey, Vec<u8>)> {
        if self.iteration == u32::MAX {
            return Err(MessagingError::InvalidInput(
                "sender chain exhausted".into(),
            ));
        }
        let ad = group_ad(group, self.epoch, sender);
        let (next, mk) = kdf_ck(&self.ck);
        let nonce: [u8; 12] = rng.array()?;
        let mut body = Vec::with_capacity(GROUP_OVERHEAD + padded.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&seal(
            &self.header_key,
            &nonce,
            &ad,
            &self.iteration.to_be_bytes(),
        ));
        let (key, mnonce) = message_key_material(&mk, GROUP_MESSAGE_INFO);
        let body_ad = [&ad[..], &self.iteration.to_be_bytes(), outer].concat();
        body.extend_from_slice(&seal(&key, &mnonce, &body_ad, padded));
        let sig = self
            .signing_key()
            .sign(&[&ad[..], outer, &body].concat())
            .to_bytes();
        body.extend_from_slice(&sig);
        let mut st = self.clone();
        st.ck = next;
        st.iteration += 1;
        Ok((st, body))
    }

    pub(crate) fn write(&self, w: &mut SecretBuf) {
        w.u32(self.epoch)
            .bytes(self.ck.bytes())
            .u32(self.iteration)
            .bytes(self.header_key.bytes())
            .bytes(self.signing.bytes());
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> MResult<Self> {
        Ok(SenderKey {
            epoch: r.u32("epoch")?,
            ck: read_key(r, "ck")?,
            iteration: r.u32("iteration")?,
            header_key: read_key(r, "header key")?,
            signing: read_key(r, "signing key")?,
        })
    }
}

/// Another member's chain, as we follow it.
#[derive(Clone)]
pub(crate) struct PeerSenderKey {
    pub(crate) sender: AuthorId,
    pub(crate) epoch: u32,
    ck: Key32,
    iteration: u32,
    pub(crate) header_key: Key32,
    verifying: [u8; 32],
    skipped: Vec<(u32, Key32, u64)>,
}

impl PeerSenderKey {
    pub(crate) fn from_distribution(sender: AuthorId, d: &Distribution) -> Self {
        PeerSenderKey {
            sender,
            epoch: d.epoch,
            ck: d.ck.clone(),
            iteration: d.iteration,
            header_key: d.header_key.clone(),
            verifying: d.verifying,
            skipped: Vec::new(),
        }
    }

    /// Decrypts a group body on a copy of the chain.
    pub(crate) fn decrypt(
        &self,
        group: &[u8; 32],
        outer: &[u8],
        body: &[u8],
        now_ms: u64,
    ) -> MResult<(PeerSenderKey, Zeroizing<Vec<u8>>)> {
        if body.len() < GROUP_OVERHEAD {
            return Err(MessagingError::Undecryptable);
        }
        let ad = group_ad(group, self.epoch, &self.sender);
        let (signed, sig) = body.split_at(body.len() - 64);
        let key = VerifyingKey::from_bytes(&self.verifying)
            .map_err(|_| MessagingError::BadSignature("group message"))?;
        let mut sig_bytes = [0u8; 64];
        sig_bytes.copy_from_slice(sig);
        key.verify_strict(
            &[&ad[..], outer, signed].concat(),
            &Signature::from_bytes(&sig_bytes),
        )
        .map_err(|_| MessagingError::BadSignature("group message"))?;
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&signed[..12]);
        let it = open(&self.header_key, &nonce, &ad, &signed[12..32])?;
        let mut it_bytes = [0u8; 4];
        it_bytes.copy_from_slice(&it[..4]);
        let n = u32::from_be_bytes(it_bytes);
        let ct = &signed[32..];
        let body_ad = [&ad[..], &n.to_be_bytes(), outer].concat();
        let mut st = self.clone();
        st.skipped
            .retain(|(_, _, t)| now_ms.saturating_sub(*t) <= SKIPPED_MAX_AGE_MS);
        let mk = if n < st.iteration {
            let pos = st
                .skipped
                .iter()
                .position(|(i, _, _)| *i == n)
                .ok_or(MessagingError::Duplicate)?;
            st.skipped.remove(pos).1
        } else {
            let jump = u64::from(n - st.iteration);
            if jump > u64::from(MAX_SKIP) {
                return Err(MessagingError::TooFarAhead {
                    jump,
                    limit: MAX_SKIP,
                });
            }
            let mut ck = st.ck.clone();
            while st.iteration < n {
                let (next, mk) = kdf_ck(&ck);
                st.skipped.push((st.iteration, mk, now_ms));
                ck = next;
                st.iteration += 1;
            }
            if st.skipped.len() > MAX_SKIPPED {
                let excess = st.skipped.len() - MAX_SKIPPED;
                st.skipped.drain(..excess);
            }
            let (next, mk) = kdf_ck(&ck);
            st.ck = next;
            st.iteration = st.iteration.saturating_add(1);
            mk
        };
        let (key, mnonce) = message_key_material(&mk, GROUP_MESSAGE_INFO);
        let pt = open(&key, &mnonce, &body_ad, ct)?;
        Ok((st, pt))
    }

    pub(crate) fn write(&self, w: &mut SecretBuf) {
        w.bytes(self.sender.as_bytes())
            .u32(self.epoch)
            .bytes(self.ck.bytes())
            .u32(self.iteration)
            .bytes(self.header_key.bytes())
            .bytes(&self.verifying)
            .u32(self.skipped.len() as u32);
        for (i, k, t) in &self.skipped {
            w.u32(*i).bytes(k.bytes()).u64(*t);
        }
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> MResult<Self> {
        let sender = AuthorId::from_bytes(r.array("sender")?);
        let epoch = r.u32("epoch")?;
        let ck = read_key(r, "ck")?;
        let iteration = r.u32("iteration")?;
        let header_key = read_key(r, "header key")?;
        let verifying = r.array("verifying key")?;
        let count = r.u32("skipped count")? as usize;
        if count > MAX_SKIPPED {
            return Err(MessagingError::InvalidInput("too many skipped keys".into()));
        }
        let mut skipped = Vec::with_capacity(count);
        for _ in 0..count {
            skipped.push((r.u32("n")?, read_key(r, "mk")?, r.u64("t")?));
        }
        Ok(PeerSenderKey {
            sender,
            epoch,
            ck,
            iteration,
            header_key,
            verifying,
            skipped,
        })
    }
}
