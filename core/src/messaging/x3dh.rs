//! Session setup in the manner of Signal's X3DH: signed prekey bundles, the
//! initiator's and responder's key agreement, and the encrypted
//! session-setup header that tells the responder who is calling.
//!
//! Guarantees: a bundle is used only if the author's Ed25519 signature over
//! its domain-separated encoding verifies and no key in it is low-order;
//! every DH result must be contributory or the setup aborts; identity DH keys
//! are the X25519 keys bound to the Ed25519 identity (never converted), and
//! the initiator proves that binding inside the encrypted setup header.

use zeroize::Zeroizing;

use super::error::{MResult, MessagingError};
use super::primitives::{DhPair, Entropy, Key32, check_public, dh, hkdf, open, seal};
use crate::encoding::{Reader, Writer};
use crate::feed::payload::PrekeyBundle;
use crate::identity::binding::{sign_x25519_binding, verify_x25519_binding};
use crate::identity::id::AuthorId;
use crate::identity::keys::{Identity, verify_strict};

/// Domain-separation prefix of the prekey bundle signature.
pub const BUNDLE_CONTEXT: &[u8] = b"starling/prekey-bundle/v1";
/// HKDF info of the X3DH shared secret.
const X3DH_INFO: &[u8] = b"starling/x3dh/v1";
/// HKDF info of the key that encrypts the session-setup header.
const INIT_HEADER_INFO: &[u8] = b"starling/x3dh-init-header/v1";
/// Prefix of the 1:1 session's associated data.
pub(crate) const DM_AD_CONTEXT: &[u8] = b"starling/dm/v1";
/// Type byte of 1:1 messages in their associated data (group messages use
/// [`super::sender_keys::GROUP_TYPE`]), so neither verifies as the other.
pub(crate) const DM_TYPE: u8 = 0x01;
/// Clear bytes of the session-setup header.
pub(crate) const INIT_HEADER_LEN: usize = 32 + 32 + 8 + 64 + 4 + 1 + 4;
/// Bytes before the ratchet message in a session-setup body.
pub(crate) const INIT_PREFIX_LEN: usize = 32 + INIT_HEADER_LEN + 16;

/// The exact bytes a bundle's signature covers.
pub fn bundle_signed_bytes(author: &AuthorId, b: &PrekeyBundle) -> Vec<u8> {
    let mut w = Writer::with_capacity(BUNDLE_CONTEXT.len() + 109 + 36 * b.one_time_prekeys.len());
    w.bytes(BUNDLE_CONTEXT)
        .bytes(author.as_bytes())
        .bytes(&b.identity_dh)
        .u32(b.signed_prekey_id)
        .bytes(&b.signed_prekey)
        .u64(b.created_at_ms)
        .u8(b.one_time_prekeys.len() as u8);
    for k in &b.one_time_prekeys {
        w.u32(k.id).bytes(&k.public);
    }
    w.into_bytes()
}

/// Checks `bundle` as published by `author`: strict Ed25519 signature over
/// [`bundle_signed_bytes`], and no low-order X25519 key anywhere in it.
pub fn verify_bundle(author: &AuthorId, bundle: &PrekeyBundle) -> MResult<()> {
    verify_strict(
        author,
        &bundle_signed_bytes(author, bundle),
        &bundle.signature,
    )
    .map_err(|_| MessagingError::BadSignature("prekey bundle"))?;
    check_public(&bundle.identity_dh)?;
    check_public(&bundle.signed_prekey)?;
    for k in &bundle.one_time_prekeys {
        check_public(&k.public)?;
    }
    Ok(())
}

/// The 1:1 session's associated data:
/// `"starling/dm/v1" || 0x01 || initiator || responder || IK_initiator || IK_responder`.
pub(crate) fn session_ad(
    initiator: &AuthorId,
    responder: &AuthorId,
    ik_i: &[u8; 32],
    ik_r: &[u8; 32],
) -> Vec<u8> {
    [
        DM_AD_CONTEXT,
        &[DM_TYPE],
        initiator.as_bytes(),
        responder.as_bytes(),
        ik_i,
        ik_r,
    ]
    .concat()
}

/// The keys both sides derive: SK (first root key) and the two initial
/// header keys of the header-encrypted Double Ratchet.
pub(crate) struct SharedKeys {
    pub(crate) sk: Key32,
    pub(crate) hka: Key32,
    pub(crate) nhkb: Key32,
}

/// KDF(F || DH1 || DH2 || DH3 [|| DH4]) with F = 32 × 0xFF, salt = 32 zero
/// bytes (X3DH spec, section 2.2), expanded to SK || HKa || NHKb.
fn kdf(dhs: &[&Key32]) -> SharedKeys {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 5));
    ikm.extend_from_slice(&[0xFF; 32]);
    for d in dhs {
        ikm.extend_from_slice(d.bytes());
    }
    let mut okm = Zeroizing::new([0u8; 96]);
    hkdf(&[0u8; 32], &ikm, X3DH_INFO, okm.as_mut());
    SharedKeys {
        sk: Key32::from_slice(&okm[..32]),
        hka: Key32::from_slice(&okm[32..64]),
        nhkb: Key32::from_slice(&okm[64..]),
    }
}

fn init_header_key(dh_ek_spk: &Key32) -> Key32 {
    let mut k = Zeroizing::new([0u8; 32]);
    hkdf(&[0u8; 32], dh_ek_spk.bytes(), INIT_HEADER_INFO, k.as_mut());
    Key32::new(*k)
}

/// What the initiator needs after the key agreement.
pub(crate) struct Initiated {
    pub(crate) keys: SharedKeys,
    pub(crate) ad: Vec<u8>,
    /// `EK || encrypted setup header`: prefixed to every message sent until
    /// the responder's first reply.
    pub(crate) prefix: Vec<u8>,
    pub(crate) ek_public: [u8; 32],
    /// The id of the one-time prekey used, if any.
    pub(crate) opk_id: Option<u32>,
}

/// The initiator's side: verifies the bundle, picks a one-time prekey (if
/// any) with `rng`, computes DH1..DH4 and the encrypted setup header.
pub(crate) fn initiate(
    me: &Identity,
    peer: &AuthorId,
    bundle: &PrekeyBundle,
    now_ms: u64,
    rng: &mut Entropy,
) -> MResult<Initiated> {
    verify_bundle(peer, bundle)?;
    let ek = DhPair::generate(rng)?;
    // A random one-time prekey makes two initiators reading the same bundle
    // unlikely to collide (see docs/PRIVACY.md).
    let opk = if bundle.one_time_prekeys.is_empty() {
        None
    } else {
        let pick: [u8; 4] = rng.array()?;
        let i = u32::from_be_bytes(pick) as usize % bundle.one_time_prekeys.len();
        Some(&bundle.one_time_prekeys[i])
    };
    let dh1 = dh(me.x25519_secret(), &bundle.signed_prekey)?;
    let dh2 = dh(&ek.secret, &bundle.identity_dh)?;
    let dh3 = dh(&ek.secret, &bundle.signed_prekey)?;
    let keys = match opk {
        Some(k) => kdf(&[&dh1, &dh2, &dh3, &dh(&ek.secret, &k.public)?]),
        None => kdf(&[&dh1, &dh2, &dh3]),
    };
    let me_id = me.author_id();
    let ik = me.x25519_public();
    let binding = sign_x25519_binding(me, now_ms);
    let mut header = Zeroizing::new(Vec::with_capacity(INIT_HEADER_LEN));
    header.extend_from_slice(me_id.as_bytes());
    header.extend_from_slice(&ik);
    header.extend_from_slice(&now_ms.to_be_bytes());
    header.extend_from_slice(&binding);
    header.extend_from_slice(&bundle.signed_prekey_id.to_be_bytes());
    header.push(u8::from(opk.is_some()));
    header.extend_from_slice(&opk.map_or(0, |k| k.id).to_be_bytes());
    // One key per ephemeral key, and it always encrypts the same header, so
    // the fixed zero nonce is never used with two different plaintexts.
    let hk = init_header_key(&dh3);
    let mut prefix = Vec::with_capacity(INIT_PREFIX_LEN);
    prefix.extend_from_slice(&ek.public);
    prefix.extend_from_slice(&seal(&hk, &[0; 12], &ek.public, &header));
    Ok(Initiated {
        keys,
        ad: session_ad(&me_id, peer, &ik, &bundle.identity_dh),
        prefix,
        ek_public: ek.public,
        opk_id: opk.map(|k| k.id),
    })
}

/// The decrypted session-setup header, as the responder sees it.
#[derive(Debug)]
pub(crate) struct InitHeader {
    pub(crate) ek: [u8; 32],
    pub(crate) initiator: AuthorId,
    pub(crate) ik: [u8; 32],
    pub(crate) spk_id: u32,
    pub(crate) opk_id: Option<u32>,
}

/// The responder's first step: opens the setup header with the signed
/// prekey and checks the initiator's identity-key binding. Returns the
/// header and the ratchet message that follows it.
pub(crate) fn open_init<'a>(spk: &DhPair, body: &'a [u8]) -> MResult<(InitHeader, &'a [u8])> {
    if body.len() < INIT_PREFIX_LEN {
        return Err(MessagingError::Undecryptable);
    }
    let mut ek = [0u8; 32];
    ek.copy_from_slice(&body[..32]);
    let dh3 = dh(&spk.secret, &ek)?;
    let clear = open(
        &init_header_key(&dh3),
        &[0; 12],
        &ek,
        &body[32..INIT_PREFIX_LEN],
    )?;
    let mut r = Reader::new(&clear);
    let initiator = AuthorId::from_bytes(r.array("initiator")?);
    let ik: [u8; 32] = r.array("initiator identity key")?;
    let created: u64 = r.u64("binding time")?;
    let sig: [u8; 64] = r.array("binding signature")?;
    let spk_id = r.u32("signed prekey id")?;
    let has_opk = r.flag("one-time prekey flag")?;
    let opk_id = r.u32("one-time prekey id")?;
    r.finish()?;
    verify_x25519_binding(&initiator, &ik, created, &sig)
        .map_err(|_| MessagingError::BadSignature("identity key binding"))?;
    Ok((
        InitHeader {
            ek,
            initiator,
            ik,
            spk_id,
            opk_id: has_opk.then_some(opk_id),
        },
        &body[INIT_PREFIX_LEN..],
    ))
}

/// The responder's key agreement, mirroring [`initiate`].
pub(crate) fn respond(
    me: &Identity,
    spk: &DhPair,
    opk: Option<&DhPair>,
    h: &InitHeader,
) -> MResult<(SharedKeys, Vec<u8>)> {
    let dh1 = dh(&spk.secret, &h.ik)?;
    let dh2 = dh(me.x25519_secret(), &h.ek)?;
    let dh3 = dh(&spk.secret, &h.ek)?;
    let keys = match opk {
        Some(k) => kdf(&[&dh1, &dh2, &dh3, &dh(&k.secret, &h.ek)?]),
        None => kdf(&[&dh1, &dh2, &dh3]),
    };
    let ad = session_ad(&h.initiator, &me.author_id(), &h.ik, &me.x25519_public());
    Ok((keys, ad))
}

/// Signs a bundle for `me` (the prekey secrets stay with the caller).
pub(crate) fn sign_bundle(me: &Identity, mut bundle: PrekeyBundle) -> PrekeyBundle {
    bundle.identity_dh = me.x25519_public();
    bundle.signature = me.sign(&bundle_signed_bytes(&me.author_id(), &bundle));
    bundle
}
