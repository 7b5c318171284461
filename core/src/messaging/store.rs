//! Persistence of the messaging state in the node's SQLite store (tables in
//! `store/schema/0003_messaging.sql`), every secret sealed under the
//! embedder's at-rest key.
//!
//! Guarantees: prekey secrets, sessions (with their skipped keys), group
//! states and message texts only ever reach SQLite sealed by
//! [`crate::identity::at_rest::seal`] under a label naming their slot;
//! these helpers run inside the caller's transaction so a state change, the
//! plaintext it produced and the expected mailbox tags commit together.

use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use super::error::{MResult, MessagingError};
use super::membership::Membership;
use super::primitives::{DhPair, SecretBuf, read_key};
use super::ratchet::RatchetState;
use super::sender_keys::{Distribution, PeerSenderKey, SenderKey};
use crate::encoding::Reader;
use crate::feed::payload::{Payload, PrekeyBundle};
use crate::identity::at_rest::{AtRestKey, open, seal};
use crate::identity::id::AuthorId;
use crate::store::{from_sql_int, to_sql_int};

/// Tag kinds in `msg_tags`.
pub(crate) const TAG_SESSION: i64 = 1;
pub(crate) const TAG_PREKEY: i64 = 2;
pub(crate) const TAG_GROUP: i64 = 3;
/// Prekey kinds in `msg_prekeys`.
pub(crate) const SIGNED_PREKEY: i64 = 1;
pub(crate) const ONE_TIME_PREKEY: i64 = 2;

fn sql(v: u64) -> MResult<i64> {
    Ok(to_sql_int(v)?)
}

// ----- counters ------------------------------------------------------------

/// A contact row: pinned identity key, trust code, pending (changed) key.
pub(crate) type Contact = ([u8; 32], i64, Option<[u8; 32]>);
/// A conversation row: id, is_group, last message time, message count.
pub(crate) type ConversationRow = ([u8; 32], bool, u64, u64);

/// Returns the next value of a named counter (starting at 1).
pub(crate) fn next_counter(conn: &Connection, name: &str) -> MResult<u32> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT value FROM msg_counters WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let next = v.unwrap_or(0) + 1;
    conn.prepare_cached("INSERT OR REPLACE INTO msg_counters (name, value) VALUES (?1, ?2)")?
        .execute(params![name, next])?;
    u32::try_from(next).map_err(|_| MessagingError::InvalidInput("prekey ids exhausted".into()))
}

// ----- prekeys -------------------------------------------------------------

pub(crate) fn put_prekey(
    conn: &Connection,
    key: &AtRestKey,
    kind: i64,
    id: u32,
    pair: &DhPair,
    now: u64,
) -> MResult<()> {
    let sealed = seal(
        key,
        &format!("msg/prekey/{kind}/{id}"),
        pair.secret.as_bytes(),
    )?;
    conn.prepare_cached(
        "INSERT INTO msg_prekeys (kind, id, public, sealed, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![kind, id, pair.public.as_slice(), sealed, sql(now)?])?;
    Ok(())
}

pub(crate) fn get_prekey(
    conn: &Connection,
    key: &AtRestKey,
    kind: i64,
    id: u32,
) -> MResult<Option<DhPair>> {
    let sealed: Option<Vec<u8>> = conn
        .prepare_cached("SELECT sealed FROM msg_prekeys WHERE kind = ?1 AND id = ?2")?
        .query_row(params![kind, id], |r| r.get(0))
        .optional()?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let secret = open(key, &format!("msg/prekey/{kind}/{id}"), &sealed)?;
    let mut r = Reader::new(&secret);
    let k = read_key(&mut r, "prekey secret")?;
    Ok(Some(DhPair::from_secret(*k.bytes())))
}

pub(crate) fn delete_prekey(conn: &Connection, kind: i64, id: u32) -> MResult<()> {
    conn.prepare_cached("DELETE FROM msg_prekeys WHERE kind = ?1 AND id = ?2")?
        .execute(params![kind, id])?;
    Ok(())
}

/// The current (not retired) signed prekey: id, public, created_at.
pub(crate) fn current_signed_prekey(conn: &Connection) -> MResult<Option<(u32, [u8; 32], u64)>> {
    let row: Option<(i64, Vec<u8>, i64)> = conn
        .prepare_cached(
            "SELECT id, public, created_at FROM msg_prekeys
             WHERE kind = 1 AND retired_at IS NULL ORDER BY id DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        Some((id, public, at)) => Some((
            u32::try_from(id).unwrap_or(0),
            public
                .as_slice()
                .try_into()
                .map_err(|_| MessagingError::InvalidInput("stored prekey length".into()))?,
            from_sql_int(at),
        )),
        None => None,
    })
}

/// Retires every current signed prekey at `now` and deletes those retired
/// before `now - grace` (with their mailbox tags).
pub(crate) fn rotate_signed_prekeys(conn: &Connection, now: u64, grace: u64) -> MResult<()> {
    conn.prepare_cached(
        "UPDATE msg_prekeys SET retired_at = ?1 WHERE kind = 1 AND retired_at IS NULL",
    )?
    .execute([sql(now)?])?;
    let cutoff = sql(now.saturating_sub(grace))?;
    let old: Vec<i64> = conn
        .prepare_cached("SELECT id FROM msg_prekeys WHERE kind = 1 AND retired_at < ?1")?
        .query_map([cutoff], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in old {
        let id = u32::try_from(id).unwrap_or(0);
        delete_tags(conn, TAG_PREKEY, &id.to_be_bytes())?;
        delete_prekey(conn, SIGNED_PREKEY, id)?;
    }
    Ok(())
}

/// Unused one-time prekeys (id, public), oldest first.
pub(crate) fn one_time_prekeys(conn: &Connection) -> MResult<Vec<(u32, [u8; 32])>> {
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT id, public FROM msg_prekeys WHERE kind = 2 ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, p)| Some((u32::try_from(id).ok()?, p.as_slice().try_into().ok()?)))
        .collect())
}

// ----- mailbox tags ----------------------------------------------------------

pub(crate) fn put_tag(
    conn: &Connection,
    tag: &[u8; 32],
    kind: i64,
    reference: &[u8],
) -> MResult<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO msg_tags (tag, kind, ref) VALUES (?1, ?2, ?3)")?
        .execute(params![tag.as_slice(), kind, reference])?;
    Ok(())
}

pub(crate) fn delete_tags(conn: &Connection, kind: i64, reference: &[u8]) -> MResult<()> {
    conn.prepare_cached("DELETE FROM msg_tags WHERE kind = ?1 AND ref = ?2")?
        .execute(params![kind, reference])?;
    Ok(())
}

/// Deletes every group tag of one group (refs start with the group id).
pub(crate) fn delete_group_tags(conn: &Connection, group: &[u8; 32]) -> MResult<()> {
    conn.prepare_cached("DELETE FROM msg_tags WHERE kind = 3 AND substr(ref, 1, 32) = ?1")?
        .execute([group.as_slice()])?;
    Ok(())
}

/// The owner of an expected tag: one primary-key lookup.
pub(crate) fn lookup_tag(conn: &Connection, tag: &[u8; 32]) -> MResult<Option<(i64, Vec<u8>)>> {
    Ok(conn
        .prepare_cached("SELECT kind, ref FROM msg_tags WHERE tag = ?1")?
        .query_row([tag.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

// ----- sessions --------------------------------------------------------------

/// One 1:1 session as stored (sealed).
#[derive(Clone)]
pub(crate) struct SessionRecord {
    pub(crate) peer: AuthorId,
    pub(crate) peer_ik: [u8; 32],
    pub(crate) ad: Vec<u8>,
    pub(crate) ratchet: RatchetState,
    /// Initiator only, until the first reply: the setup prefix to put in
    /// front of every message and the responder's prekey mailbox tag.
    pub(crate) setup: Option<(Vec<u8>, [u8; 32])>,
    /// Initiator only: the bundle the session was built from (`None` for
    /// sessions stored by version 1 of this record, and for responders).
    pub(crate) origin: Option<BundleOrigin>,
    /// Initiator only, until the first reply: drop hashes of the latest
    /// envelopes sent with the setup prefix (at most [`MAX_SETUP_DROPS`]);
    /// an ack of one proves the peer accepted the setup.
    pub(crate) setup_drops: Vec<[u8; 32]>,
    /// Initiator only: an ack of a setup envelope was seen, so the peer holds
    /// this session even if it never answered.
    pub(crate) delivered: bool,
}

/// Most setup-envelope drop hashes remembered per session.
pub(crate) const MAX_SETUP_DROPS: usize = 32;

/// The prekey bundle an initiator session was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BundleOrigin {
    pub(crate) created_at_ms: u64,
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey: Option<u32>,
}

impl BundleOrigin {
    /// `bundle`, of which the one-time prekey `opk` was used.
    pub(crate) fn of(bundle: &PrekeyBundle, opk: Option<u32>) -> Self {
        BundleOrigin {
            created_at_ms: bundle.created_at_ms,
            signed_prekey_id: bundle.signed_prekey_id,
            one_time_prekey: opk,
        }
    }
}

/// Version of the sealed session record (1: without origin, delivered
/// flag and setup drops; still read).
const SESSION_VERSION: u8 = 2;

impl SessionRecord {
    /// Whether a new setup from `bundle` should take over from this session:
    /// we initiated it, the peer never answered it and no ack of it was seen,
    /// and `bundle` is newer than the one it was built from (not older, and
    /// another signed prekey, or the one-time prekey we used is no longer
    /// listed: consumed, possibly by another initiator, whose setup then won
    /// and ours was refused). Sessions stored by version 1 know only the
    /// signed prekey (from the setup tag). The caller still checks acks
    /// ([`any_acked`]) before replacing.
    pub(crate) fn superseded_by(&self, bundle: &PrekeyBundle) -> bool {
        let Some((_, tag)) = &self.setup else {
            return false;
        };
        if self.delivered {
            return false;
        }
        match &self.origin {
            Some(o) => {
                bundle.created_at_ms >= o.created_at_ms
                    && (bundle.signed_prekey_id != o.signed_prekey_id
                        || o.one_time_prekey
                            .is_some_and(|id| bundle.one_time_prekeys.iter().all(|k| k.id != id)))
            }
            None => super::envelope::prekey_tag(&bundle.signed_prekey) != *tag,
        }
    }

    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let st = self.ratchet.to_bytes();
        let mut w = SecretBuf::with_capacity(st.len() + 512 + 32 * self.setup_drops.len());
        w.u8(SESSION_VERSION)
            .bytes(self.peer.as_bytes())
            .bytes(&self.peer_ik)
            .u32(self.ad.len() as u32)
            .bytes(&self.ad)
            .u32(st.len() as u32)
            .bytes(&st);
        match &self.setup {
            None => w.u8(0),
            Some((prefix, tag)) => w.u8(1).u32(prefix.len() as u32).bytes(prefix).bytes(tag),
        };
        // Version 2: origin bundle, delivered flag, setup drop hashes.
        match &self.origin {
            None => w.u8(0),
            Some(o) => w
                .u8(1)
                .u64(o.created_at_ms)
                .u32(o.signed_prekey_id)
                .u8(u8::from(o.one_time_prekey.is_some()))
                .u32(o.one_time_prekey.unwrap_or(0)),
        };
        w.u8(u8::from(self.delivered))
            .u32(self.setup_drops.len() as u32);
        for d in &self.setup_drops {
            w.bytes(d);
        }
        w.0
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> MResult<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("session version")?;
        let peer = AuthorId::from_bytes(r.array("peer")?);
        let peer_ik = r.array("peer ik")?;
        let len = r.u32("ad len")? as usize;
        let ad = r.take(len, "ad")?.to_vec();
        let len = r.u32("state len")? as usize;
        let ratchet = RatchetState::from_bytes(r.take(len, "state")?)?;
        let setup = if r.flag("setup")? {
            let len = r.u32("prefix len")? as usize;
            let prefix = r.take(len, "prefix")?.to_vec();
            Some((prefix, r.array("setup tag")?))
        } else {
            None
        };
        let (mut origin, mut delivered, mut setup_drops) = (None, false, Vec::new());
        if version >= 2 {
            if r.flag("origin")? {
                let created_at_ms = r.u64("origin created at")?;
                let signed_prekey_id = r.u32("origin signed prekey")?;
                let has_opk = r.flag("origin one-time prekey flag")?;
                let opk = r.u32("origin one-time prekey")?;
                origin = Some(BundleOrigin {
                    created_at_ms,
                    signed_prekey_id,
                    one_time_prekey: has_opk.then_some(opk),
                });
            }
            delivered = r.flag("delivered")?;
            let n = r.u32("setup drops")? as usize;
            if n > MAX_SETUP_DROPS {
                return Err(MessagingError::InvalidInput("too many setup drops".into()));
            }
            for _ in 0..n {
                setup_drops.push(r.array("setup drop")?);
            }
        }
        r.finish()?;
        Ok(SessionRecord {
            peer,
            peer_ik,
            ad,
            ratchet,
            setup,
            origin,
            setup_drops,
            delivered,
        })
    }
}

fn session_label(peer: &AuthorId) -> String {
    format!("msg/session/{peer}")
}

pub(crate) fn insert_session(
    conn: &Connection,
    key: &AtRestKey,
    rec: &SessionRecord,
    now: u64,
) -> MResult<i64> {
    let sealed = seal(key, &session_label(&rec.peer), &rec.to_bytes())?;
    conn.prepare_cached(
        "INSERT INTO msg_sessions (peer, sealed, created_at, active_at) VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![rec.peer.as_bytes(), sealed, sql(now)?])?;
    Ok(conn.last_insert_rowid())
}

/// Rewrites a session; `active` makes it the one used for sending.
pub(crate) fn update_session(
    conn: &Connection,
    key: &AtRestKey,
    id: i64,
    rec: &SessionRecord,
    active_at: Option<u64>,
) -> MResult<()> {
    let sealed = seal(key, &session_label(&rec.peer), &rec.to_bytes())?;
    conn.prepare_cached("UPDATE msg_sessions SET sealed = ?2 WHERE id = ?1")?
        .execute(params![id, sealed])?;
    if let Some(at) = active_at {
        conn.prepare_cached(
            "UPDATE msg_sessions SET active_at = max(active_at + 1, ?2) WHERE id = ?1",
        )?
        .execute(params![id, sql(at)?])?;
    }
    Ok(())
}

/// The sealed bytes of a session (for byte-identity checks in tests).
#[cfg(test)]
pub(crate) fn sealed_session(conn: &Connection, id: i64) -> MResult<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT sealed FROM msg_sessions WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

pub(crate) fn load_session(
    conn: &Connection,
    key: &AtRestKey,
    id: i64,
) -> MResult<Option<SessionRecord>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT peer, sealed FROM msg_sessions WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((peer, sealed)) = row else {
        return Ok(None);
    };
    let peer = AuthorId::from_slice(&peer)?;
    let clear = open(key, &session_label(&peer), &sealed)?;
    Ok(Some(SessionRecord::from_bytes(&clear)?))
}

/// The session used to send to `peer`: the most recently active.
pub(crate) fn active_session(conn: &Connection, peer: &AuthorId) -> MResult<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM msg_sessions WHERE peer = ?1 ORDER BY active_at DESC, id DESC LIMIT 1",
        )?
        .query_row([peer.as_bytes()], |r| r.get(0))
        .optional()?)
}

/// Makes session `id` the one used for sending to `peer`: more recently
/// active than every other session with them.
pub(crate) fn make_newest_session(conn: &Connection, peer: &AuthorId, id: i64) -> MResult<()> {
    conn.prepare_cached(
        "UPDATE msg_sessions SET active_at = max(active_at, coalesce(
             (SELECT max(active_at) + 1 FROM msg_sessions WHERE peer = ?2 AND id != ?1),
             active_at))
         WHERE id = ?1",
    )?
    .execute(params![id, peer.as_bytes()])?;
    Ok(())
}

/// Whether the envelope carrier saw an ack for any of `drops` (drop
/// hashes): only the recipient, after reading the envelope, can make one.
pub(crate) fn any_acked(conn: &Connection, drops: &[[u8; 32]]) -> MResult<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM mailbox_acks WHERE drop_hash = ?1")?;
    for d in drops {
        if stmt.exists([d.as_slice()])? {
            return Ok(true);
        }
    }
    Ok(false)
}

// ----- setup replay ----------------------------------------------------------

pub(crate) fn seen_setup(conn: &Connection, ek: &[u8; 32]) -> MResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT session_id FROM msg_setup_seen WHERE ek = ?1")?
        .query_row([ek.as_slice()], |r| r.get(0))
        .optional()?)
}

pub(crate) fn record_setup(
    conn: &Connection,
    ek: &[u8; 32],
    session: i64,
    now: u64,
) -> MResult<()> {
    conn.prepare_cached(
        "INSERT INTO msg_setup_seen (ek, session_id, seen_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![ek.as_slice(), session, sql(now)?])?;
    Ok(())
}

// ----- contacts ----------------------------------------------------------------

/// A contact's pinned identity key, trust code and pending (changed) key.
pub(crate) fn contact(conn: &Connection, peer: &AuthorId) -> MResult<Option<Contact>> {
    let row: Option<(Vec<u8>, i64, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT identity_dh, trust, pending_dh FROM msg_contacts WHERE peer = ?1")?
        .query_row([peer.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(row.and_then(|(ik, t, p)| {
        Some((
            ik.as_slice().try_into().ok()?,
            t,
            p.and_then(|p| p.as_slice().try_into().ok()),
        ))
    }))
}

pub(crate) fn put_contact(
    conn: &Connection,
    peer: &AuthorId,
    ik: &[u8; 32],
    trust: i64,
    pending: Option<&[u8; 32]>,
    now: u64,
) -> MResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO msg_contacts (peer, identity_dh, trust, pending_dh, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        peer.as_bytes(),
        ik.as_slice(),
        trust,
        pending.map(|p| p.as_slice()),
        sql(now)?
    ])?;
    Ok(())
}

// ----- messages ------------------------------------------------------------------

/// A stored message row, text opened.
pub(crate) struct MessageRow {
    pub(crate) id: i64,
    pub(crate) conversation: [u8; 32],
    pub(crate) is_group: bool,
    pub(crate) sender: AuthorId,
    pub(crate) outgoing: bool,
    pub(crate) at: u64,
    pub(crate) text: String,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_message(
    conn: &Connection,
    key: &AtRestKey,
    conversation: &[u8; 32],
    is_group: bool,
    sender: &AuthorId,
    outgoing: bool,
    at: u64,
    text: &str,
) -> MResult<i64> {
    let sealed = seal(key, "msg/message", text.as_bytes())?;
    conn.prepare_cached(
        "INSERT INTO msg_messages (conversation, is_group, sender, outgoing, at, sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        conversation.as_slice(),
        is_group,
        sender.as_bytes(),
        outgoing,
        sql(at)?,
        sealed
    ])?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn messages(
    conn: &Connection,
    key: &AtRestKey,
    conversation: &[u8; 32],
) -> MResult<Vec<MessageRow>> {
    type Row = (i64, Vec<u8>, bool, Vec<u8>, bool, i64, Vec<u8>);
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT id, conversation, is_group, sender, outgoing, at, sealed FROM msg_messages
             WHERE conversation = ?1 ORDER BY id",
        )?
        .query_map([conversation.as_slice()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, conv, is_group, sender, outgoing, at, sealed) in rows {
        let text = open(key, "msg/message", &sealed)?;
        out.push(MessageRow {
            id,
            conversation: conv.as_slice().try_into().unwrap_or([0; 32]),
            is_group,
            sender: AuthorId::from_slice(&sender)?,
            outgoing,
            at: from_sql_int(at),
            text: String::from_utf8_lossy(&text).into_owned(),
        });
    }
    Ok(out)
}

/// Conversations: (id, is_group, last message time, message count), newest first.
pub(crate) fn conversations(conn: &Connection) -> MResult<Vec<ConversationRow>> {
    let rows: Vec<(Vec<u8>, bool, i64, i64)> = conn
        .prepare_cached(
            "SELECT conversation, is_group, max(at), count(*) FROM msg_messages
             GROUP BY conversation ORDER BY max(id) DESC",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(c, g, at, n)| {
            Some((
                c.as_slice().try_into().ok()?,
                g,
                from_sql_int(at),
                from_sql_int(n),
            ))
        })
        .collect())
}

// ----- groups ------------------------------------------------------------------------

/// One group's state, sealed as a whole.
#[derive(Clone)]
pub(crate) struct GroupState {
    pub(crate) membership: Membership,
    pub(crate) my_key: Option<SenderKey>,
    pub(crate) peers: Vec<PeerSenderKey>,
    /// Sender keys for a later epoch than we know yet (their removal entry
    /// has not reached us), bounded.
    pub(crate) pending: Vec<(AuthorId, Distribution)>,
}

/// Most pending (future-epoch) sender keys kept per group.
pub(crate) const MAX_PENDING: usize = 200;

impl GroupState {
    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = SecretBuf::with_capacity(4096);
        w.u8(1);
        self.membership.write(&mut w);
        match &self.my_key {
            None => w.u8(0),
            Some(k) => {
                w.u8(1);
                k.write(&mut w);
                &mut w
            }
        };
        w.u32(self.peers.len() as u32);
        for p in &self.peers {
            p.write(&mut w);
        }
        w.u32(self.pending.len() as u32);
        for (a, d) in &self.pending {
            w.bytes(a.as_bytes());
            d.write(&mut w);
        }
        w.0
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> MResult<Self> {
        let mut r = Reader::new(bytes);
        let _version = r.u8("group version")?;
        let membership = Membership::read(&mut r)?;
        let my_key = if r.flag("my key")? {
            Some(SenderKey::read(&mut r)?)
        } else {
            None
        };
        let n = r.u32("peers")? as usize;
        let mut peers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            peers.push(PeerSenderKey::read(&mut r)?);
        }
        let n = r.u32("pending")? as usize;
        let mut pending = Vec::with_capacity(n.min(MAX_PENDING));
        for _ in 0..n {
            let a = AuthorId::from_bytes(r.array("pending sender")?);
            pending.push((a, Distribution::read(&mut r)?));
        }
        r.finish()?;
        Ok(GroupState {
            membership,
            my_key,
            peers,
            pending,
        })
    }
}

fn group_label(group: &[u8; 32]) -> String {
    format!("msg/group/{}", super::primitives::hex32(group))
}

pub(crate) fn put_group(
    conn: &Connection,
    key: &AtRestKey,
    g: &GroupState,
    now: u64,
) -> MResult<()> {
    let id = g.membership.group;
    let sealed = seal(key, &group_label(&id), &g.to_bytes())?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO msg_groups (group_id, sealed, updated_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![id.as_slice(), sealed, sql(now)?])?;
    Ok(())
}

pub(crate) fn load_group(
    conn: &Connection,
    key: &AtRestKey,
    group: &[u8; 32],
) -> MResult<Option<GroupState>> {
    let sealed: Option<Vec<u8>> = conn
        .prepare_cached("SELECT sealed FROM msg_groups WHERE group_id = ?1")?
        .query_row([group.as_slice()], |r| r.get(0))
        .optional()?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let clear = open(key, &group_label(group), &sealed)?;
    Ok(Some(GroupState::from_bytes(&clear)?))
}

pub(crate) fn group_ids(conn: &Connection) -> MResult<Vec<[u8; 32]>> {
    let rows: Vec<Vec<u8>> = conn
        .prepare_cached("SELECT group_id FROM msg_groups ORDER BY updated_at DESC")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|g| g.as_slice().try_into().ok())
        .collect())
}

// ----- outbox ------------------------------------------------------------------------

pub(crate) fn push_outbox(conn: &Connection, envelope: &[u8], now: u64) -> MResult<i64> {
    conn.prepare_cached("INSERT INTO msg_outbox (envelope, created_at) VALUES (?1, ?2)")?
        .execute(params![envelope, sql(now)?])?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn outbox(conn: &Connection) -> MResult<Vec<(i64, Vec<u8>)>> {
    Ok(conn
        .prepare_cached("SELECT id, envelope FROM msg_outbox ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

pub(crate) fn delete_outbox(conn: &Connection, id: i64) -> MResult<()> {
    conn.prepare_cached("DELETE FROM msg_outbox WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

// ----- published bundles ----------------------------------------------------------------

/// The latest prekey bundle `author` published in their feed, if we hold it.
pub(crate) fn latest_bundle(conn: &Connection, author: &AuthorId) -> MResult<Option<PrekeyBundle>> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT payload FROM entries
             WHERE author = ?1 AND tag = 11 AND payload IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([author.as_bytes()], |r| r.get(0))
        .optional()?;
    Ok(match bytes.map(|b| Payload::decode(&b)) {
        Some(Ok(Payload::PrekeyBundle(b))) => Some(b),
        _ => None,
    })
}
