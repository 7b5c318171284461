//! The messaging API the rest of the core calls: publish prekeys, encrypt to
//! a contact or a group, receive envelopes, list conversations, verify
//! contacts, manage groups.
//!
//! Guarantees: every operation that changes cryptographic state runs in one
//! SQLite transaction together with everything it produced (plaintext,
//! expected mailbox tags, outgoing envelopes in the outbox), after the state
//! machine succeeded on a copy; so a crash or a refused message never leaves
//! a half-updated session and no message key is used twice.

use std::cell::{Cell, RefCell};

use rusqlite::Transaction;

use super::envelope::{
    ACK_SECRET_LEN, DEFAULT_TTL_MS, ENVELOPE_HEADER_LEN, Envelope, bucket_for, drop_hash_of,
    group_tag, pad, prekey_tag, session_tag, unpad,
};
use super::error::{MResult, MessagingError};
use super::header::ENC_HEADER_LEN;
use super::membership::{ControlEntry, ControlKind, Membership, MembershipView};
use super::primitives::{DhPair, Entropy, SecretBuf};
use super::ratchet::RatchetState;
use super::safety;
use super::sender_keys::{Distribution, GROUP_OVERHEAD, PeerSenderKey, SenderKey};
use super::store::{self as db, GroupState, SessionRecord};
use super::x3dh;
use crate::encoding::Reader;
use crate::feed::payload::{OneTimePrekey, Payload, PrekeyBundle};
use crate::identity::at_rest::AtRestKey;
use crate::identity::id::AuthorId;
use crate::identity::keys::Identity;
use crate::store::Store;

/// Signed prekeys are replaced after this age (7 days).
pub const SIGNED_PREKEY_ROTATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// A replaced signed prekey's secret is kept this long for late setups (30 days).
pub const SIGNED_PREKEY_GRACE_MS: u64 = 30 * 24 * 3600 * 1000;
/// One-time prekeys kept available (and published).
pub const ONE_TIME_PREKEY_TARGET: usize = 20;
/// Longest text message, in UTF-8 bytes.
pub const MAX_TEXT: usize = 8192;
/// Control entries per control message (keeps it inside the largest bucket).
const CONTROL_CHUNK: usize = 40;

const CONTENT_TEXT: u8 = 1;
const CONTENT_SENDER_KEY: u8 = 2;
const CONTENT_CONTROL: u8 = 3;

const TRUST_UNVERIFIED: i64 = 0;
const TRUST_VERIFIED: i64 = 1;
const TRUST_CHANGED: i64 = 2;

/// A group's id: 32 random bytes chosen by its creator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub [u8; 32]);

impl std::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupId({})", super::primitives::hex32(&self.0))
    }
}

/// Who a conversation is with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversation {
    /// A 1:1 conversation with a contact.
    Direct(AuthorId),
    /// A group conversation.
    Group(GroupId),
}

/// How far a contact's identity key is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustState {
    /// First seen and pinned, not compared yet.
    Unverified,
    /// The user compared safety numbers (or scanned the QR code).
    Verified,
    /// The identity key differs from the pinned one: sending is blocked until
    /// the user re-verifies ([`Messaging::mark_verified`]) or accepts
    /// ([`Messaging::accept_identity_change`]).
    Changed,
}

fn trust_from(code: i64) -> TrustState {
    match code {
        TRUST_VERIFIED => TrustState::Verified,
        TRUST_CHANGED => TrustState::Changed,
        _ => TrustState::Unverified,
    }
}

/// A message that [`Messaging::receive`] decrypted and stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Row id in the message history.
    pub id: i64,
    /// The conversation it belongs to.
    pub conversation: Conversation,
    /// Who sent it (authenticated by the session or the sender key).
    pub sender: AuthorId,
    /// The text.
    pub text: String,
    /// The sender's clock when sending, ms.
    pub sent_at_ms: u64,
    /// The sender's trust state at receipt.
    pub sender_trust: TrustState,
}

impl std::fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Message text is private: never in logs.
        f.debug_struct("ReceivedMessage")
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// What one received envelope produced.
#[derive(Debug, Default)]
pub struct Received {
    /// A message to show, if the envelope carried one (not, e.g., a sender
    /// key distribution).
    pub message: Option<ReceivedMessage>,
    /// Envelopes to deliver in response (sender keys for new members, a
    /// re-key after a removal). Also in the outbox.
    pub outgoing: Vec<Vec<u8>>,
    /// For a 1:1 envelope: its ack secret, whose BLAKE3 hash is the
    /// envelope's drop hash. Publish it (the carrier's `Acks` frame) so the
    /// nodes that carried the envelope delete it. `None` for group
    /// envelopes, which are never acked (they expire).
    pub ack: Option<[u8; ACK_SECRET_LEN]>,
}

/// A message from the history.
#[derive(Clone)]
pub struct StoredMessage {
    /// Row id.
    pub id: i64,
    /// Its conversation.
    pub conversation: Conversation,
    /// Sender.
    pub sender: AuthorId,
    /// Whether we sent it.
    pub outgoing: bool,
    /// Sent (outgoing) or sender's time (incoming), ms.
    pub at_ms: u64,
    /// The text.
    pub text: String,
}

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMessage")
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .field("outgoing", &self.outgoing)
            .finish_non_exhaustive()
    }
}

/// One line of the conversation list.
#[derive(Clone, Debug)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// Time of its latest message, ms.
    pub last_at_ms: u64,
    /// Number of messages.
    pub messages: u64,
}

/// A group as this member sees it.
#[derive(Clone, Debug)]
pub struct GroupInfo {
    /// Its id.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Current members.
    pub members: Vec<AuthorId>,
    /// Current admins.
    pub admins: Vec<AuthorId>,
    /// Sender-key epoch (number of removals).
    pub epoch: u32,
    /// Whether we are still a member.
    pub is_member: bool,
}

/// The messaging engine of one identity over one store. Cheap to create per
/// call; holds no state of its own beyond the at-rest key.
pub struct Messaging<'a> {
    store: &'a Store,
    me: &'a Identity,
    key: AtRestKey,
    rng: RefCell<Entropy>,
    clock: Cell<Option<u64>>,
}

impl std::fmt::Debug for Messaging<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messaging")
            .field("me", &self.me.author_id())
            .finish_non_exhaustive()
    }
}

impl<'a> Messaging<'a> {
    /// Messaging for `me` over `store`; `key` seals every secret at rest.
    pub fn new(store: &'a Store, me: &'a Identity, key: AtRestKey) -> Self {
        Messaging {
            store,
            me,
            key,
            rng: RefCell::new(Entropy::Os),
            clock: Cell::new(None),
        }
    }

    /// Test-only: deterministic randomness and a fixed clock.
    #[cfg(test)]
    pub(crate) fn new_deterministic(
        store: &'a Store,
        me: &'a Identity,
        key: AtRestKey,
        seed: u8,
        now_ms: u64,
    ) -> Self {
        let m = Self::new(store, me, key);
        *m.rng.borrow_mut() = Entropy::fixed(seed);
        m.clock.set(Some(now_ms));
        m
    }

    /// Test-only: moves the fixed clock.
    #[cfg(test)]
    pub(crate) fn set_now(&self, now_ms: u64) {
        self.clock.set(Some(now_ms));
    }

    fn now(&self) -> u64 {
        self.clock.get().unwrap_or_else(crate::store::now_ms)
    }

    /// Runs `f` in one write transaction; any error rolls everything back.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> MResult<T>) -> MResult<T> {
        let mut failure = None;
        let out = self.store.write(|tx| match f(tx) {
            Ok(v) => Ok(Some(v)),
            Err(MessagingError::Core(e)) => Err(e),
            Err(e) => {
                failure = Some(e);
                // Any error rolls the transaction back; the real one is
                // returned below.
                Err(crate::Error::InvalidInput("rolled back".into()))
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        match out {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(MessagingError::InvalidInput("rolled back".into())),
            Err(e) => Err(e.into()),
        }
    }

    // ----- prekeys ---------------------------------------------------------

    /// Makes (rotating the signed prekey when due, topping up one-time
    /// prekeys) and returns the prekey bundle to publish in our feed. The
    /// secrets are stored sealed before this returns; publish the payload
    /// with `Node::publish`.
    pub fn publish_prekeys(&self) -> MResult<Payload> {
        let now = self.now();
        self.write(|tx| {
            let mut rng = self.rng.borrow_mut();
            let spk = match db::current_signed_prekey(tx)? {
                Some((id, public, at)) if now.saturating_sub(at) < SIGNED_PREKEY_ROTATION_MS => {
                    (id, public)
                }
                _ => {
                    db::rotate_signed_prekeys(tx, now, SIGNED_PREKEY_GRACE_MS)?;
                    let id = db::next_counter(tx, "signed_prekey")?;
                    let pair = DhPair::generate(&mut rng)?;
                    db::put_prekey(tx, &self.key, db::SIGNED_PREKEY, id, &pair, now)?;
                    db::put_tag(
                        tx,
                        &prekey_tag(&pair.public),
                        db::TAG_PREKEY,
                        &id.to_be_bytes(),
                    )?;
                    (id, pair.public)
                }
            };
            let mut otks = db::one_time_prekeys(tx)?;
            while otks.len() < ONE_TIME_PREKEY_TARGET {
                let id = db::next_counter(tx, "one_time_prekey")?;
                let pair = DhPair::generate(&mut rng)?;
                db::put_prekey(tx, &self.key, db::ONE_TIME_PREKEY, id, &pair, now)?;
                otks.push((id, pair.public));
            }
            let bundle = PrekeyBundle {
                identity_dh: self.me.x25519_public(),
                signed_prekey_id: spk.0,
                signed_prekey: spk.1,
                created_at_ms: now,
                one_time_prekeys: otks
                    .into_iter()
                    .map(|(id, public)| OneTimePrekey { id, public })
                    .collect(),
                signature: [0; 64],
            };
            Ok(Payload::PrekeyBundle(x3dh::sign_bundle(self.me, bundle)))
        })
    }

    /// Whether fewer one-time prekeys remain than were published (publish a
    /// fresh bundle then), or the signed prekey is due for rotation.
    pub fn prekeys_need_refresh(&self) -> MResult<bool> {
        let now = self.now();
        self.store
            .read(|c| {
                let otks = db::one_time_prekeys(c).map_err(crate::Error::from)?;
                let spk = db::current_signed_prekey(c).map_err(crate::Error::from)?;
                Ok(otks.len() < ONE_TIME_PREKEY_TARGET
                    || spk.is_none_or(|(_, _, at)| {
                        now.saturating_sub(at) >= SIGNED_PREKEY_ROTATION_MS
                    }))
            })
            .map_err(Into::into)
    }

    // ----- 1:1 -------------------------------------------------------------

    /// Encrypts `text` to `recipient` and returns the envelope bytes to
    /// deliver (also queued in the outbox). Uses the existing session, or
    /// starts one from `recipient_bundle` (or the latest bundle of theirs in
    /// the store); a session we started that they never answered (nor
    /// acked) is replaced by a new one when that bundle is newer than the
    /// one it was built from, since they may have refused its setup. Fails
    /// with [`MessagingError::Untrusted`] while their identity key is in the
    /// changed state.
    pub fn encrypt_dm(
        &self,
        recipient: &AuthorId,
        recipient_bundle: Option<&PrekeyBundle>,
        text: &str,
    ) -> MResult<Vec<u8>> {
        if text.len() > MAX_TEXT {
            return Err(MessagingError::InvalidInput(format!(
                "a message is at most {MAX_TEXT} bytes"
            )));
        }
        if recipient == &self.me.author_id() {
            return Err(MessagingError::InvalidInput(
                "cannot message yourself".into(),
            ));
        }
        let now = self.now();
        // Record a changed identity key first, in its own transaction, so the
        // Changed state persists even though the send is refused.
        let bundle = match recipient_bundle {
            Some(b) => Some(b.clone()),
            None => self
                .store
                .read(|c| db::latest_bundle(c, recipient).map_err(Into::into))?,
        };
        if let Some(b) = &bundle {
            x3dh::verify_bundle(recipient, b)?;
            // A bundle with the pinned identity key changes nothing (the
            // common case, no session to open); otherwise it matters only
            // if it is going to start a session.
            let pinned = self
                .store
                .read(|c| db::contact(c, recipient).map_err(Into::into))?
                .is_some_and(|(ik, _, _)| ik == b.identity_dh);
            if !pinned && self.would_set_up(recipient, b)? {
                self.write(|tx| {
                    self.observe_identity(tx, recipient, &b.identity_dh, now)
                        .map(|_| ())
                })?;
            }
        }
        self.write(|tx| {
            let content = content_text(now, text);
            let env = self.send_content(tx, recipient, bundle.as_ref(), &content, now)?;
            db::insert_message(
                tx,
                &self.key,
                recipient.as_bytes(),
                false,
                &self.me.author_id(),
                true,
                now,
                text,
            )?;
            Ok(env)
        })
    }

    /// Pins a first-seen identity key, or marks a different one as changed.
    fn observe_identity(
        &self,
        tx: &Transaction<'_>,
        peer: &AuthorId,
        ik: &[u8; 32],
        now: u64,
    ) -> MResult<TrustState> {
        Ok(match db::contact(tx, peer)? {
            None => {
                db::put_contact(tx, peer, ik, TRUST_UNVERIFIED, None, now)?;
                TrustState::Unverified
            }
            Some((pinned, code, _)) if &pinned == ik => trust_from(code),
            Some((pinned, _, _)) => {
                db::put_contact(tx, peer, &pinned, TRUST_CHANGED, Some(ik), now)?;
                TrustState::Changed
            }
        })
    }

    /// Encrypts `content` for `peer` over the active session (starting one
    /// from `bundle` if there is none), queues and returns the envelope.
    fn send_content(
        &self,
        tx: &Transaction<'_>,
        peer: &AuthorId,
        bundle: Option<&PrekeyBundle>,
        content: &[u8],
        now: u64,
    ) -> MResult<Vec<u8>> {
        if let Some((_, TRUST_CHANGED, _)) = db::contact(tx, peer)? {
            return Err(MessagingError::Untrusted(*peer));
        }
        let mut rng = self.rng.borrow_mut();
        let active = match db::active_session(tx, peer)? {
            Some(id) => {
                let mut rec = db::load_session(tx, &self.key, id)?
                    .ok_or_else(|| MessagingError::InvalidInput("session vanished".into()))?;
                self.keep_session(tx, &mut rec, bundle)?
                    .then_some((id, rec))
            }
            None => None,
        };
        let (id, mut rec) = match active {
            Some(session) => session,
            None => {
                // No session, or only one the peer may have refused: the
                // caller's bundle, else the newest one of theirs in the
                // store (group fan-out to a member we never talked to).
                let stored;
                let b = match bundle {
                    Some(b) => b,
                    None => {
                        stored =
                            db::latest_bundle(tx, peer)?.ok_or(MessagingError::NoBundle(*peer))?;
                        x3dh::verify_bundle(peer, &stored)?;
                        if self.observe_identity(tx, peer, &stored.identity_dh, now)?
                            == TrustState::Changed
                        {
                            return Err(MessagingError::Untrusted(*peer));
                        }
                        &stored
                    }
                };
                if let Some((pinned, _, _)) = db::contact(tx, peer)?
                    && pinned != b.identity_dh
                {
                    return Err(MessagingError::Untrusted(*peer));
                }
                let init = x3dh::initiate(self.me, peer, b, now, &mut rng)?;
                let ratchet = RatchetState::init_alice(
                    &init.keys.sk,
                    &b.signed_prekey,
                    init.keys.hka.clone(),
                    init.keys.nhkb.clone(),
                    &mut rng,
                )?;
                let rec = SessionRecord {
                    peer: *peer,
                    peer_ik: b.identity_dh,
                    ad: init.ad,
                    ratchet,
                    setup: Some((init.prefix, prekey_tag(&b.signed_prekey))),
                    origin: Some(db::BundleOrigin::of(b, init.opk_id)),
                    setup_drops: Vec::new(),
                    delivered: false,
                };
                let _ = init.ek_public;
                let id = db::insert_session(tx, &self.key, &rec, now)?;
                // It sends from now on, also when it replaces a session.
                db::make_newest_session(tx, peer, id)?;
                self.refresh_session_tags(tx, id, &rec)?;
                (id, rec)
            }
        };
        let (tag, prefix) = match &rec.setup {
            Some((prefix, tag)) => (*tag, prefix.clone()),
            None => {
                let hk = rec.ratchet.sending_header_key().ok_or_else(|| {
                    MessagingError::InvalidInput("session cannot send yet".into())
                })?;
                (session_tag(hk), Vec::new())
            }
        };
        let overhead = prefix.len() + ENC_HEADER_LEN + 16;
        let bucket = bucket_for(overhead, ACK_SECRET_LEN + content.len())?;
        // The ack secret leads the plaintext; its hash is the drop hash.
        let ack: zeroize::Zeroizing<[u8; ACK_SECRET_LEN]> = zeroize::Zeroizing::new(rng.array()?);
        let drop_hash = drop_hash_of(&ack);
        let mut inner = zeroize::Zeroizing::new(Vec::with_capacity(ACK_SECRET_LEN + content.len()));
        inner.extend_from_slice(&ack[..]);
        inner.extend_from_slice(content);
        let padded = pad(&inner, bucket - overhead);
        let expiry = now.saturating_add(DEFAULT_TTL_MS);
        let outer = Envelope::header_bytes(&tag, expiry, &drop_hash);
        let (st, body) = rec.ratchet.encrypt(&rec.ad, &outer, &padded, &mut rng)?;
        rec.ratchet = st;
        if rec.setup.is_some() && !rec.delivered {
            // Until the peer answers: an ack of this envelope will prove
            // that the peer accepted the setup.
            if rec.setup_drops.len() >= db::MAX_SETUP_DROPS {
                rec.setup_drops.remove(0);
            }
            rec.setup_drops.push(drop_hash);
        }
        db::update_session(tx, &self.key, id, &rec, Some(now))?;
        let mut full = prefix;
        full.extend_from_slice(&body);
        let env = Envelope {
            tag,
            expiry_ms: expiry,
            drop_hash,
            body: full,
        }
        .encode();
        db::push_outbox(tx, &env, now)?;
        Ok(env)
    }

    /// Whether to keep sending on the active session `rec` with its peer
    /// rather than start a new one from `bundle` (else the newest stored
    /// bundle of the peer). An answered session is always kept. One
    /// we initiated that was never answered gives way to a newer bundle
    /// ([`SessionRecord::superseded_by`]) unless an ack shows the peer read
    /// one of its envelopes: its setup may have been refused (the one-time
    /// prekey was taken by another initiator), and then nothing sent on it
    /// would ever arrive. The peer keeps accepting a new setup, and the old
    /// session stays here for a late reply.
    fn keep_session(
        &self,
        tx: &Transaction<'_>,
        rec: &mut SessionRecord,
        bundle: Option<&PrekeyBundle>,
    ) -> MResult<bool> {
        if rec.setup.is_none() || rec.delivered {
            return Ok(true);
        }
        let stored;
        let b = match bundle {
            Some(b) => b,
            None => match db::latest_bundle(tx, &rec.peer)? {
                Some(b) if x3dh::verify_bundle(&rec.peer, &b).is_ok() => {
                    stored = b;
                    &stored
                }
                _ => return Ok(true),
            },
        };
        if !rec.superseded_by(b) {
            return Ok(true);
        }
        if db::any_acked(tx, &rec.setup_drops)? {
            // The peer holds this session: remember that for good (acks
            // expire; the caller stores `rec`), it is never replaced.
            rec.delivered = true;
            rec.setup_drops.clear();
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether sending to `peer` would start a new session from `bundle`
    /// (none yet, or the active one gives way to it, see
    /// [`Self::keep_session`]); read-only.
    fn would_set_up(&self, peer: &AuthorId, bundle: &PrekeyBundle) -> MResult<bool> {
        Ok(self.store.read(|c| {
            let Some(id) = db::active_session(c, peer).map_err(crate::Error::from)? else {
                return Ok(true);
            };
            let Some(rec) = db::load_session(c, &self.key, id).map_err(crate::Error::from)? else {
                return Ok(true);
            };
            Ok(rec.superseded_by(bundle)
                && !db::any_acked(c, &rec.setup_drops).map_err(crate::Error::from)?)
        })?)
    }

    fn refresh_session_tags(
        &self,
        tx: &Transaction<'_>,
        id: i64,
        rec: &SessionRecord,
    ) -> MResult<()> {
        let r = id.to_be_bytes();
        db::delete_tags(tx, db::TAG_SESSION, &r)?;
        for hk in rec.ratchet.receiving_header_keys() {
            db::put_tag(tx, &session_tag(&hk), db::TAG_SESSION, &r)?;
        }
        Ok(())
    }

    /// Whether an envelope is addressed to us: one indexed lookup of its
    /// mailbox tag among the tags our sessions, prekeys and groups expect.
    pub fn is_mine(&self, envelope: &[u8]) -> MResult<bool> {
        let env = Envelope::decode(envelope)?;
        Ok(self
            .store
            .read(|c| db::lookup_tag(c, &env.tag).map_err(Into::into))?
            .is_some())
    }

    /// Processes one envelope. `Ok(None)`: not ours (pass it on). Otherwise
    /// the decrypted message (if any) and envelopes to send in response;
    /// the new state, the stored plaintext and the outgoing envelopes commit
    /// in one transaction. Errors leave every state untouched.
    pub fn receive(&self, envelope: &[u8]) -> MResult<Option<Received>> {
        let env = Envelope::decode(envelope)?;
        let now = self.now();
        self.write(|tx| {
            let Some((kind, reference)) = db::lookup_tag(tx, &env.tag)? else {
                return Ok(None);
            };
            if env.expiry_ms < now {
                return Err(MessagingError::Expired);
            }
            let outer = Envelope::header_bytes(&env.tag, env.expiry_ms, &env.drop_hash);
            let mut out = Received::default();
            match kind {
                db::TAG_SESSION => {
                    let id = i64::from_be_bytes(fixed(&reference)?);
                    self.receive_session(tx, id, &outer, &env.body, now, &mut out)?;
                }
                db::TAG_PREKEY => {
                    let spk_id = u32::from_be_bytes(fixed(&reference)?);
                    self.receive_setup(tx, spk_id, &outer, &env.body, now, &mut out)?;
                }
                db::TAG_GROUP => {
                    self.receive_group(tx, &reference, &outer, &env.body, now, &mut out)?;
                }
                _ => return Ok(None),
            }
            Ok(Some(out))
        })
    }

    fn receive_session(
        &self,
        tx: &Transaction<'_>,
        id: i64,
        outer: &[u8],
        body: &[u8],
        now: u64,
        out: &mut Received,
    ) -> MResult<()> {
        let mut rec = db::load_session(tx, &self.key, id)?.ok_or(MessagingError::Undecryptable)?;
        let (st, padded) = {
            let mut rng = self.rng.borrow_mut();
            rec.ratchet.decrypt(&rec.ad, outer, body, now, &mut rng)?
        };
        rec.ratchet = st;
        // A reply arrived: the responder has our session, stop sending setup.
        rec.setup = None;
        rec.setup_drops.clear();
        db::update_session(tx, &self.key, id, &rec, Some(now))?;
        self.refresh_session_tags(tx, id, &rec)?;
        let content = split_ack(unpad(&padded)?, outer, out)?;
        self.handle_content(tx, &rec.peer, content, now, out)
    }

    fn receive_setup(
        &self,
        tx: &Transaction<'_>,
        spk_id: u32,
        outer: &[u8],
        body: &[u8],
        now: u64,
        out: &mut Received,
    ) -> MResult<()> {
        let spk = db::get_prekey(tx, &self.key, db::SIGNED_PREKEY, spk_id)?
            .ok_or(MessagingError::PrekeyUnavailable("signed prekey"))?;
        let (h, rest) = x3dh::open_init(&spk, body)?;
        if h.spk_id != spk_id {
            return Err(MessagingError::Undecryptable);
        }
        if let Some(sid) = db::seen_setup(tx, &h.ek)? {
            // The initiator repeats the setup prefix until we reply: route
            // to the session it created. Anything else is a replay.
            return match db::load_session(tx, &self.key, sid)? {
                Some(rec) if rec.peer == h.initiator && rec.peer_ik == h.ik => {
                    self.receive_session(tx, sid, outer, rest, now, out)
                }
                _ => Err(MessagingError::ReplayedSetup),
            };
        }
        let opk = match h.opk_id {
            Some(id) => Some(
                db::get_prekey(tx, &self.key, db::ONE_TIME_PREKEY, id)?
                    .ok_or(MessagingError::PrekeyUnavailable("one-time prekey"))?,
            ),
            None => None,
        };
        let (keys, ad) = x3dh::respond(self.me, &spk, opk.as_ref(), &h)?;
        let ratchet = RatchetState::init_bob(&keys.sk, spk, keys.hka, keys.nhkb);
        let (st, padded) = {
            let mut rng = self.rng.borrow_mut();
            ratchet.decrypt(&ad, outer, rest, now, &mut rng)?
        };
        let rec = SessionRecord {
            peer: h.initiator,
            peer_ik: h.ik,
            ad,
            ratchet: st,
            setup: None,
            origin: None,
            setup_drops: Vec::new(),
            delivered: false,
        };
        self.observe_identity(tx, &h.initiator, &h.ik, now)?;
        let id = db::insert_session(tx, &self.key, &rec, now)?;
        db::record_setup(tx, &h.ek, id, now)?;
        if let Some(otk) = h.opk_id {
            // Forward secrecy of the one-time prekey: gone once used.
            db::delete_prekey(tx, db::ONE_TIME_PREKEY, otk)?;
        }
        self.refresh_session_tags(tx, id, &rec)?;
        let content = split_ack(unpad(&padded)?, outer, out)?;
        self.handle_content(tx, &rec.peer, content, now, out)
    }

    fn handle_content(
        &self,
        tx: &Transaction<'_>,
        from: &AuthorId,
        content: &[u8],
        now: u64,
        out: &mut Received,
    ) -> MResult<()> {
        let mut r = Reader::new(content);
        let kind = r.u8("content type")?;
        let sent_at = r.u64("sent at")?;
        match kind {
            CONTENT_TEXT => {
                let text = r.text(r.remaining(), MAX_TEXT, "message text")?;
                let trust =
                    db::contact(tx, from)?.map_or(TrustState::Unverified, |c| trust_from(c.1));
                let id = db::insert_message(
                    tx,
                    &self.key,
                    from.as_bytes(),
                    false,
                    from,
                    false,
                    sent_at,
                    &text,
                )?;
                out.message = Some(ReceivedMessage {
                    id,
                    conversation: Conversation::Direct(*from),
                    sender: *from,
                    text,
                    sent_at_ms: sent_at,
                    sender_trust: trust,
                });
                Ok(())
            }
            CONTENT_SENDER_KEY => {
                let group: [u8; 32] = r.array("group")?;
                let d = Distribution::read(&mut r)?;
                r.finish()?;
                self.accept_sender_key(tx, from, &group, d, now)
            }
            CONTENT_CONTROL => {
                let group: [u8; 32] = r.array("group")?;
                let count = r.u16("entries")? as usize;
                let mut entries = Vec::with_capacity(count.min(CONTROL_CHUNK));
                for _ in 0..count {
                    let len = r.u16("entry length")? as usize;
                    entries.push(ControlEntry::decode(r.take(len, "control entry")?)?);
                }
                r.finish()?;
                self.accept_control(tx, &group, entries, now, out)
            }
            _ => Err(MessagingError::InvalidInput("unknown content type".into())),
        }
    }

    // ----- history, verification ------------------------------------------

    /// Conversations with messages, most recent first.
    pub fn conversations(&self) -> MResult<Vec<ConversationSummary>> {
        let rows = self
            .store
            .read(|c| db::conversations(c).map_err(Into::into))?;
        Ok(rows
            .into_iter()
            .map(|(id, is_group, at, n)| ConversationSummary {
                conversation: if is_group {
                    Conversation::Group(GroupId(id))
                } else {
                    Conversation::Direct(AuthorId::from_bytes(id))
                },
                last_at_ms: at,
                messages: n,
            })
            .collect())
    }

    /// The history of one conversation, oldest first.
    pub fn messages(&self, conversation: Conversation) -> MResult<Vec<StoredMessage>> {
        let (id, _) = conv_key(conversation);
        let rows = self
            .store
            .read(|c| db::messages(c, &self.key, &id).map_err(Into::into))?;
        Ok(rows
            .into_iter()
            .map(|m| StoredMessage {
                id: m.id,
                conversation: if m.is_group {
                    Conversation::Group(GroupId(m.conversation))
                } else {
                    Conversation::Direct(AuthorId::from_bytes(m.conversation))
                },
                sender: m.sender,
                outgoing: m.outgoing,
                at_ms: m.at,
                text: m.text,
            })
            .collect())
    }

    /// The contact's trust state (`None` if we never saw their key).
    pub fn trust(&self, peer: &AuthorId) -> MResult<Option<TrustState>> {
        Ok(self
            .store
            .read(|c| db::contact(c, peer).map_err(Into::into))?
            .map(|(_, code, _)| trust_from(code)))
    }

    fn pinned_key(&self, peer: &AuthorId) -> MResult<[u8; 32]> {
        self.store
            .read(|c| db::contact(c, peer).map_err(Into::into))?
            .map(|(ik, _, _)| ik)
            .ok_or(MessagingError::NoBundle(*peer))
    }

    /// The 60-digit safety number with `peer` (over the pinned key).
    pub fn safety_number(&self, peer: &AuthorId) -> MResult<String> {
        let theirs = self.pinned_key(peer)?;
        let me = self.me.author_id();
        Ok(safety::safety_number(
            (&me, &self.me.x25519_public()),
            (peer, &theirs),
        ))
    }

    /// The string to show as a QR code for `peer` to scan.
    pub fn safety_qr(&self, peer: &AuthorId) -> MResult<String> {
        let theirs = self.pinned_key(peer)?;
        let me = self.me.author_id();
        Ok(safety::safety_qr(
            (&me, &self.me.x25519_public()),
            (peer, &theirs),
        ))
    }

    /// Marks `peer` verified after the user compared safety numbers (for a
    /// changed key: the new key, which is then pinned).
    pub fn mark_verified(&self, peer: &AuthorId) -> MResult<()> {
        self.set_trust(peer, TRUST_VERIFIED)
    }

    /// Accepts a changed identity key without verifying (pins it, state
    /// becomes unverified) so sending works again.
    pub fn accept_identity_change(&self, peer: &AuthorId) -> MResult<()> {
        self.set_trust(peer, TRUST_UNVERIFIED)
    }

    fn set_trust(&self, peer: &AuthorId, code: i64) -> MResult<()> {
        let now = self.now();
        self.write(|tx| {
            let (pinned, _, pending) =
                db::contact(tx, peer)?.ok_or(MessagingError::NoBundle(*peer))?;
            let key = pending.unwrap_or(pinned);
            db::put_contact(tx, peer, &key, code, None, now)?;
            Ok(())
        })
    }

    // ----- outbox ------------------------------------------------------------

    /// Envelopes waiting for delivery, oldest first: (outbox id, bytes).
    pub fn outbox(&self) -> MResult<Vec<(i64, Vec<u8>)>> {
        Ok(self.store.read(|c| db::outbox(c).map_err(Into::into))?)
    }

    /// Removes an envelope from the outbox once delivered (to a relay).
    pub fn outbox_delivered(&self, id: i64) -> MResult<()> {
        self.write(|tx| db::delete_outbox(tx, id))
    }

    // ----- groups --------------------------------------------------------------

    /// Creates a group with us as its only member and admin.
    pub fn create_group(&self, name: &str) -> MResult<GroupId> {
        if name.len() > super::membership::GROUP_NAME_MAX {
            return Err(MessagingError::InvalidInput("group name too long".into()));
        }
        let now = self.now();
        self.write(|tx| {
            let mut rng = self.rng.borrow_mut();
            let id: [u8; 32] = rng.array()?;
            let create = ControlEntry::sign(
                self.me,
                id,
                [0; 32],
                ControlKind::Create,
                self.me.author_id(),
                now,
                name.to_owned(),
            );
            let state = GroupState {
                membership: Membership::new(create)?,
                my_key: Some(SenderKey::generate(0, &mut rng)?),
                peers: Vec::new(),
                pending: Vec::new(),
            };
            db::put_group(tx, &self.key, &state, now)?;
            Ok(GroupId(id))
        })
    }

    /// What we know of a group.
    pub fn group_info(&self, group: &GroupId) -> MResult<GroupInfo> {
        let state = self
            .store
            .read(|c| db::load_group(c, &self.key, &group.0).map_err(Into::into))?
            .ok_or(MessagingError::UnknownGroup)?;
        let v = state.membership.view();
        Ok(GroupInfo {
            id: *group,
            name: v.name.clone(),
            is_member: v.members.contains(&self.me.author_id()),
            members: v.members.into_iter().collect(),
            admins: v.admins.into_iter().collect(),
            epoch: v.epoch,
        })
    }

    /// Our groups, most recently changed first.
    pub fn groups(&self) -> MResult<Vec<GroupId>> {
        Ok(self
            .store
            .read(|c| db::group_ids(c).map_err(Into::into))?
            .into_iter()
            .map(GroupId)
            .collect())
    }

    /// Adds `member` (we must be an admin). Returns the envelopes to deliver:
    /// the new entry to every member, the whole chain and our sender key to
    /// the new member (over 1:1 sessions; the member's bundle must be in the
    /// store or a session exist).
    pub fn add_member(&self, group: &GroupId, member: &AuthorId) -> MResult<Vec<Vec<u8>>> {
        self.change_membership(group, ControlKind::Add, member)
    }

    /// Removes `member` (we must be an admin, or `member` is us: leaving).
    /// Starts a new epoch: we make a fresh sender key and send it to the
    /// remaining members; every other member does the same on receipt.
    pub fn remove_member(&self, group: &GroupId, member: &AuthorId) -> MResult<Vec<Vec<u8>>> {
        self.change_membership(group, ControlKind::Remove, member)
    }

    /// Makes `member` an admin.
    pub fn promote_admin(&self, group: &GroupId, member: &AuthorId) -> MResult<Vec<Vec<u8>>> {
        self.change_membership(group, ControlKind::Promote, member)
    }

    fn change_membership(
        &self,
        group: &GroupId,
        kind: ControlKind,
        target: &AuthorId,
    ) -> MResult<Vec<Vec<u8>>> {
        let now = self.now();
        self.write(|tx| {
            let mut state =
                db::load_group(tx, &self.key, &group.0)?.ok_or(MessagingError::UnknownGroup)?;
            let before = state.membership.view();
            let me = self.me.author_id();
            if !before.admins.contains(&me) && (kind != ControlKind::Remove || target != &me) {
                return Err(MessagingError::Forbidden(
                    "only admins change membership".into(),
                ));
            }
            let entry = ControlEntry::sign(
                self.me,
                group.0,
                before.head,
                kind,
                *target,
                now,
                String::new(),
            );
            state.membership.insert(entry.clone())?;
            let after = state.membership.view();
            if after == before || (kind == ControlKind::Add && !after.members.contains(target)) {
                return Err(MessagingError::Forbidden("the change has no effect".into()));
            }
            let mut out = Received::default();
            // Everyone who was or is a member learns of the entry; a new
            // member gets the whole chain instead.
            let mut recipients: Vec<AuthorId> =
                before.members.union(&after.members).copied().collect();
            recipients.retain(|m| m != &me);
            for m in &recipients {
                if kind == ControlKind::Add && m == target {
                    let all: Vec<ControlEntry> = topo_entries(&state.membership);
                    for chunk in all.chunks(CONTROL_CHUNK) {
                        let c = content_control(now, &group.0, chunk);
                        out.outgoing.push(self.send_content(tx, m, None, &c, now)?);
                    }
                } else {
                    let c = content_control(now, &group.0, std::slice::from_ref(&entry));
                    out.outgoing.push(self.send_content(tx, m, None, &c, now)?);
                }
            }
            self.after_membership_change(tx, &mut state, &before, &after, now, &mut out)?;
            db::put_group(tx, &self.key, &state, now)?;
            self.refresh_group_tags(tx, &state)?;
            Ok(out.outgoing)
        })
    }

    /// Reacts to a new membership view: re-key on a new epoch, send our
    /// sender key to new members, forget everything if we were removed.
    fn after_membership_change(
        &self,
        tx: &Transaction<'_>,
        state: &mut GroupState,
        before: &MembershipView,
        after: &MembershipView,
        now: u64,
        out: &mut Received,
    ) -> MResult<()> {
        let me = self.me.author_id();
        let group = state.membership.group;
        if !after.members.contains(&me) {
            state.my_key = None;
            state.peers.clear();
            state.pending.clear();
            return Ok(());
        }
        state
            .peers
            .retain(|p| after.members.contains(&p.sender) && p.epoch == after.epoch);
        let recipients: Vec<AuthorId> = if after.epoch != before.epoch
            || state.my_key.as_ref().is_none_or(|k| k.epoch != after.epoch)
        {
            let mut rng = self.rng.borrow_mut();
            state.my_key = Some(SenderKey::generate(after.epoch, &mut rng)?);
            drop(rng);
            // Sender keys that arrived before the removal reached us.
            let pending = std::mem::take(&mut state.pending);
            for (sender, d) in pending {
                if d.epoch == after.epoch && after.members.contains(&sender) {
                    state.peers.retain(|p| p.sender != sender);
                    state
                        .peers
                        .push(PeerSenderKey::from_distribution(sender, &d));
                } else if d.epoch > after.epoch {
                    state.pending.push((sender, d));
                }
            }
            after
                .members
                .iter()
                .filter(|m| *m != &me)
                .copied()
                .collect()
        } else {
            after
                .members
                .difference(&before.members)
                .filter(|m| *m != &me)
                .copied()
                .collect()
        };
        if let Some(k) = &state.my_key {
            let c = content_sender_key(now, &group, &k.distribution());
            for m in recipients {
                out.outgoing.push(self.send_content(tx, &m, None, &c, now)?);
            }
        }
        Ok(())
    }

    fn accept_control(
        &self,
        tx: &Transaction<'_>,
        group: &[u8; 32],
        entries: Vec<ControlEntry>,
        now: u64,
        out: &mut Received,
    ) -> MResult<()> {
        let existing = db::load_group(tx, &self.key, group)?;
        let (mut state, before) = match existing {
            Some(s) => {
                let v = s.membership.view();
                (s, v)
            }
            None => {
                let create = entries
                    .iter()
                    .find(|e| e.kind == ControlKind::Create)
                    .ok_or(MessagingError::UnknownGroup)?
                    .clone();
                if &create.group != group {
                    return Err(MessagingError::Forbidden("entry of another group".into()));
                }
                let s = GroupState {
                    membership: Membership::new(create)?,
                    my_key: None,
                    peers: Vec::new(),
                    pending: Vec::new(),
                };
                (s, MembershipView::default())
            }
        };
        // Entries may come in any order: insert those whose predecessor is
        // known until nothing changes; any forged entry fails the message.
        let mut rest: Vec<ControlEntry> = entries
            .into_iter()
            .filter(|e| e.kind != ControlKind::Create)
            .collect();
        while !rest.is_empty() {
            let len = rest.len();
            let mut still = Vec::new();
            for e in rest {
                match state.membership.insert(e.clone()) {
                    Ok(_) => {}
                    Err(MessagingError::Forbidden(_)) if e.group == *group => still.push(e),
                    Err(err) => return Err(err),
                }
            }
            if still.len() == len {
                return Err(MessagingError::Forbidden(
                    "control entry names an unknown previous entry".into(),
                ));
            }
            rest = still;
        }
        let after = state.membership.view();
        let me = self.me.author_id();
        if !after.members.contains(&me) && !before.members.contains(&me) {
            // Not our group: keep nothing.
            return Ok(());
        }
        self.after_membership_change(tx, &mut state, &before, &after, now, out)?;
        db::put_group(tx, &self.key, &state, now)?;
        self.refresh_group_tags(tx, &state)?;
        Ok(())
    }

    fn accept_sender_key(
        &self,
        tx: &Transaction<'_>,
        from: &AuthorId,
        group: &[u8; 32],
        d: Distribution,
        now: u64,
    ) -> MResult<()> {
        let Some(mut state) = db::load_group(tx, &self.key, group)? else {
            return Err(MessagingError::UnknownGroup);
        };
        let v = state.membership.view();
        if !v.members.contains(&self.me.author_id()) {
            return Ok(());
        }
        if d.epoch > v.epoch {
            if state.pending.len() < db::MAX_PENDING {
                state.pending.push((*from, d));
            }
        } else if d.epoch == v.epoch && v.members.contains(from) {
            state.peers.retain(|p| &p.sender != from);
            state
                .peers
                .push(PeerSenderKey::from_distribution(*from, &d));
        } else {
            // An old epoch's key, or a non-member's: gives nothing.
            return Ok(());
        }
        db::put_group(tx, &self.key, &state, now)?;
        self.refresh_group_tags(tx, &state)
    }

    fn refresh_group_tags(&self, tx: &Transaction<'_>, state: &GroupState) -> MResult<()> {
        let group = state.membership.group;
        db::delete_group_tags(tx, &group)?;
        for p in &state.peers {
            let r = [&group[..], p.sender.as_bytes(), &p.epoch.to_be_bytes()].concat();
            db::put_tag(
                tx,
                &group_tag(&p.header_key, &group, p.epoch),
                db::TAG_GROUP,
                &r,
            )?;
        }
        Ok(())
    }

    /// Encrypts `text` to the group: one envelope under our sender key's
    /// mailbox tag, which every member holding our sender key recognises.
    pub fn encrypt_group(&self, group: &GroupId, text: &str) -> MResult<Vec<Vec<u8>>> {
        if text.len() > MAX_TEXT {
            return Err(MessagingError::InvalidInput(format!(
                "a message is at most {MAX_TEXT} bytes"
            )));
        }
        let now = self.now();
        self.write(|tx| {
            let mut state =
                db::load_group(tx, &self.key, &group.0)?.ok_or(MessagingError::UnknownGroup)?;
            let v = state.membership.view();
            let me = self.me.author_id();
            if !v.members.contains(&me) {
                return Err(MessagingError::Forbidden("not a member".into()));
            }
            let key = state
                .my_key
                .as_ref()
                .filter(|k| k.epoch == v.epoch)
                .ok_or_else(|| MessagingError::Forbidden("no sender key for this epoch".into()))?;
            let content = content_text(now, text);
            let bucket = bucket_for(GROUP_OVERHEAD, content.len())?;
            let padded = pad(&content, bucket - GROUP_OVERHEAD);
            let tag = group_tag(&key.header_key, &group.0, key.epoch);
            let expiry = now.saturating_add(DEFAULT_TTL_MS);
            // Group envelopes are read by several members, so none may drop
            // them for the others: a random drop hash (no known preimage)
            // that looks like a 1:1 one; they expire instead.
            let (next, body, drop_hash) = {
                let mut rng = self.rng.borrow_mut();
                let drop_hash: [u8; 32] = rng.array()?;
                let outer = Envelope::header_bytes(&tag, expiry, &drop_hash);
                let (next, body) = key.encrypt(&group.0, &me, &outer, &padded, &mut rng)?;
                (next, body, drop_hash)
            };
            state.my_key = Some(next);
            db::put_group(tx, &self.key, &state, now)?;
            db::insert_message(tx, &self.key, &group.0, true, &me, true, now, text)?;
            let env = Envelope {
                tag,
                expiry_ms: expiry,
                drop_hash,
                body,
            }
            .encode();
            db::push_outbox(tx, &env, now)?;
            Ok(vec![env])
        })
    }

    fn receive_group(
        &self,
        tx: &Transaction<'_>,
        reference: &[u8],
        outer: &[u8],
        body: &[u8],
        now: u64,
        out: &mut Received,
    ) -> MResult<()> {
        if reference.len() != 68 {
            return Err(MessagingError::Undecryptable);
        }
        let group: [u8; 32] = fixed(&reference[..32])?;
        let sender = AuthorId::from_bytes(fixed(&reference[32..64])?);
        let epoch = u32::from_be_bytes(fixed(&reference[64..])?);
        let mut state =
            db::load_group(tx, &self.key, &group)?.ok_or(MessagingError::UnknownGroup)?;
        let pos = state
            .peers
            .iter()
            .position(|p| p.sender == sender && p.epoch == epoch)
            .ok_or(MessagingError::Undecryptable)?;
        let (next, padded) = state.peers[pos].decrypt(&group, outer, body, now)?;
        state.peers[pos] = next;
        let content = unpad(&padded)?;
        let mut r = Reader::new(content);
        if r.u8("content type")? != CONTENT_TEXT {
            return Err(MessagingError::InvalidInput(
                "unexpected group content".into(),
            ));
        }
        let sent_at = r.u64("sent at")?;
        let text = r.text(r.remaining(), MAX_TEXT, "message text")?;
        db::put_group(tx, &self.key, &state, now)?;
        let id = db::insert_message(tx, &self.key, &group, true, &sender, false, sent_at, &text)?;
        let trust = db::contact(tx, &sender)?.map_or(TrustState::Unverified, |c| trust_from(c.1));
        out.message = Some(ReceivedMessage {
            id,
            conversation: Conversation::Group(GroupId(group)),
            sender,
            text,
            sent_at_ms: sent_at,
            sender_trust: trust,
        });
        Ok(())
    }

    /// Test-only: the sealed bytes of the active session with `peer`.
    #[cfg(test)]
    pub(crate) fn sealed_session_bytes(&self, peer: &AuthorId) -> MResult<Option<Vec<u8>>> {
        Ok(self.store.read(|c| {
            let Some(id) = db::active_session(c, peer).map_err(crate::Error::from)? else {
                return Ok(None);
            };
            db::sealed_session(c, id).map_err(Into::into)
        })?)
    }

    /// Test-only: sends a group control message with arbitrary entries.
    #[cfg(test)]
    pub(crate) fn test_send_control(
        &self,
        peer: &AuthorId,
        group: &GroupId,
        entries: &[ControlEntry],
    ) -> MResult<Vec<u8>> {
        let now = self.now();
        self.write(|tx| {
            self.send_content(
                tx,
                peer,
                None,
                &content_control(now, &group.0, entries),
                now,
            )
        })
    }

    /// Test-only: the active session with `peer`.
    #[cfg(test)]
    pub(crate) fn session(&self, peer: &AuthorId) -> MResult<Option<SessionRecord>> {
        Ok(self.store.read(|c| {
            let Some(id) = db::active_session(c, peer).map_err(crate::Error::from)? else {
                return Ok(None);
            };
            db::load_session(c, &self.key, id).map_err(Into::into)
        })?)
    }
}

/// Splits the ack secret off a 1:1 plaintext and checks it against the
/// drop hash in the (authenticated) envelope header `outer`.
fn split_ack<'c>(content: &'c [u8], outer: &[u8], out: &mut Received) -> MResult<&'c [u8]> {
    if content.len() < ACK_SECRET_LEN || outer.len() != ENVELOPE_HEADER_LEN {
        return Err(MessagingError::Undecryptable);
    }
    let (ack, rest) = content.split_at(ACK_SECRET_LEN);
    let ack: [u8; ACK_SECRET_LEN] = fixed(ack)?;
    if drop_hash_of(&ack)[..] != outer[ENVELOPE_HEADER_LEN - 32..] {
        return Err(MessagingError::Undecryptable);
    }
    out.ack = Some(ack);
    Ok(rest)
}

fn fixed<const N: usize>(b: &[u8]) -> MResult<[u8; N]> {
    b.try_into()
        .map_err(|_| MessagingError::InvalidInput("stored reference has the wrong length".into()))
}

fn conv_key(c: Conversation) -> ([u8; 32], bool) {
    match c {
        Conversation::Direct(a) => (*a.as_bytes(), false),
        Conversation::Group(g) => (g.0, true),
    }
}

/// Entries in an order where each one's predecessor comes first.
fn topo_entries(m: &Membership) -> Vec<ControlEntry> {
    let mut pending: Vec<ControlEntry> = m.entries().cloned().collect();
    let mut known: Vec<[u8; 32]> = Vec::new();
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|e| {
            if e.kind == ControlKind::Create || known.contains(&e.prev) {
                known.push(e.hash());
                out.push(e.clone());
                false
            } else {
                true
            }
        });
        if pending.len() == before {
            break;
        }
    }
    out
}

fn content_text(now: u64, text: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(9 + text.len());
    c.push(CONTENT_TEXT);
    c.extend_from_slice(&now.to_be_bytes());
    c.extend_from_slice(text.as_bytes());
    c
}

fn content_sender_key(now: u64, group: &[u8; 32], d: &Distribution) -> zeroize::Zeroizing<Vec<u8>> {
    let mut w = SecretBuf::with_capacity(200);
    w.u8(CONTENT_SENDER_KEY).u64(now).bytes(group);
    d.write(&mut w);
    w.0
}

fn content_control(now: u64, group: &[u8; 32], entries: &[ControlEntry]) -> Vec<u8> {
    let mut c = Vec::with_capacity(64 + entries.len() * 250);
    c.push(CONTENT_CONTROL);
    c.extend_from_slice(&now.to_be_bytes());
    c.extend_from_slice(group);
    c.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for e in entries {
        let b = e.encode();
        c.extend_from_slice(&(b.len() as u16).to_be_bytes());
        c.extend_from_slice(&b);
    }
    c
}
