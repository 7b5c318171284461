//! The envelope carrier: a bounded, persistent mailbox of end-to-end
//! encrypted envelopes that this node stores and forwards for everyone (its
//! own outgoing ones included), and the acks that drop them.
//!
//! Envelopes travel inside sync sessions (docs/PROTOCOL.md §5.1): on
//! session start peers exchange short inventories and send each other what
//! the other lacks; afterwards new envelopes and acks are pushed live. Every
//! envelope a node accepts is offered to its own [`Messaging`]: if it is for
//! this node it is read, deleted here and acked (its ack secret is pushed
//! to peers, so every carrier deletes it); otherwise it is carried on.
//!
//! Guarantees: the mailbox holds at most [`MAX_ENVELOPES`] envelopes and
//! [`MAX_BYTES`] bytes (the soonest-expiring are evicted first), never keeps
//! one past its expiry or longer than [`MAX_TTL_MS`] after receipt, and
//! never re-accepts an envelope whose ack it has seen (the ack table is the
//! tombstone). Nothing stored here is secret: envelopes are ciphertexts and
//! ack secrets are published on purpose; plaintexts stay sealed by
//! [`Messaging`]. Untrusted bytes never panic: decoding is total.
//!
//! [`Messaging`]: crate::messaging::Messaging

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::messaging::envelope::{ACK_SECRET_LEN, DEFAULT_TTL_MS, Envelope, drop_hash_of};
use crate::node::Node;
use crate::store::now_ms;

/// Most envelopes a node carries at once.
pub const MAX_ENVELOPES: u64 = 10_000;
/// Most envelope bytes a node carries at once (64 MiB).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Longest a node carries an envelope after receiving it (7 days), and how
/// long an ack (tombstone) is kept.
pub const MAX_TTL_MS: u64 = DEFAULT_TTL_MS;
/// Most acks (tombstones) kept; the soonest-expiring go first.
pub const MAX_ACKS: u64 = 50_000;
/// Capacity of the in-process notification channel.
const BUS_CAPACITY: usize = 1024;

/// An envelope's identity among carriers: `BLAKE3(envelope bytes)`.
pub type EnvelopeHash = [u8; 32];

/// A new envelope or ack in this node's mailbox, for the live sync sessions
/// to push. `origin` is the session it came from (0: this node), so it is
/// not echoed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxEvent {
    /// A newly stored envelope.
    Envelope {
        /// Its hash.
        hash: EnvelopeHash,
        /// Session id it came from; 0 for local ones.
        origin: u64,
    },
    /// A newly learned ack.
    Ack {
        /// The ack secret.
        secret: [u8; ACK_SECRET_LEN],
        /// Session id it came from; 0 for local ones.
        origin: u64,
    },
}

/// The in-process channel over which the mailbox tells sync sessions about
/// new envelopes and acks. One per [`Node`].
#[derive(Debug)]
pub struct MailboxBus {
    tx: broadcast::Sender<MailboxEvent>,
}

impl Default for MailboxBus {
    fn default() -> Self {
        MailboxBus {
            tx: broadcast::channel(BUS_CAPACITY).0,
        }
    }
}

impl MailboxBus {
    /// A receiver of every later event.
    pub fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        self.tx.subscribe()
    }

    /// Sends `ev` to every subscriber (none: dropped).
    pub fn emit(&self, ev: MailboxEvent) {
        let _ = self.tx.send(ev);
    }
}

/// What [`accept`] did with one envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Stored now.
    New(EnvelopeHash),
    /// Already carried.
    Known(EnvelopeHash),
    /// Not stored: expired, already acked, or evicted at once (full of
    /// envelopes expiring later).
    Refused(&'static str),
}

/// Counters of this node's mailbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Envelopes carried.
    pub envelopes: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Acks (tombstones) kept.
    pub acks: u64,
}

// ----- storage ---------------------------------------------------------------

/// Stores a decoded envelope (`bytes` = its encoding) unless expired, acked
/// or already held; evicts over the caps.
pub fn accept(tx: &Transaction<'_>, bytes: &[u8], env: &Envelope, now: u64) -> Result<Accepted> {
    if env.expiry_ms <= now {
        return Ok(Accepted::Refused("expired"));
    }
    let acked: bool = tx
        .query_row(
            "SELECT 1 FROM mailbox_acks WHERE drop_hash = ?1",
            params![&env.drop_hash[..]],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if acked {
        return Ok(Accepted::Refused("acked"));
    }
    let hash = Envelope::hash_bytes(bytes);
    let held: bool = tx
        .query_row(
            "SELECT 1 FROM mailbox_envelopes WHERE hash = ?1",
            params![&hash[..]],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if held {
        return Ok(Accepted::Known(hash));
    }
    let expiry = env.expiry_ms.min(now.saturating_add(MAX_TTL_MS));
    tx.execute(
        "INSERT INTO mailbox_envelopes (hash, drop_hash, expiry, size, received_at, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &hash[..],
            &env.drop_hash[..],
            sql_u64(expiry),
            bytes.len() as i64,
            sql_u64(now),
            bytes
        ],
    )?;
    evict(tx)?;
    let kept: bool = tx
        .query_row(
            "SELECT 1 FROM mailbox_envelopes WHERE hash = ?1",
            params![&hash[..]],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    Ok(if kept {
        Accepted::New(hash)
    } else {
        Accepted::Refused("mailbox full")
    })
}

fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Deletes the soonest-expiring envelopes until both caps hold.
fn evict(tx: &Transaction<'_>) -> Result<()> {
    loop {
        let (n, bytes): (i64, i64) = tx.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM mailbox_envelopes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if (n as u64) <= MAX_ENVELOPES && (bytes as u64) <= MAX_BYTES {
            return Ok(());
        }
        tx.execute(
            "DELETE FROM mailbox_envelopes WHERE hash =
               (SELECT hash FROM mailbox_envelopes ORDER BY expiry, hash LIMIT 1)",
            [],
        )?;
    }
}

/// Deletes expired envelopes and acks, and the oldest acks over the cap.
pub fn sweep(tx: &Transaction<'_>, now: u64) -> Result<()> {
    tx.execute(
        "DELETE FROM mailbox_envelopes WHERE expiry <= ?1",
        params![sql_u64(now)],
    )?;
    tx.execute(
        "DELETE FROM mailbox_acks WHERE expiry <= ?1",
        params![sql_u64(now)],
    )?;
    tx.execute(
        "DELETE FROM mailbox_acks WHERE drop_hash IN
           (SELECT drop_hash FROM mailbox_acks ORDER BY expiry DESC LIMIT -1 OFFSET ?1)",
        params![MAX_ACKS as i64],
    )?;
    Ok(())
}

/// Records an ack and deletes the envelope(s) it drops. `false` if the ack
/// was known already.
pub fn apply_ack(tx: &Transaction<'_>, secret: &[u8; ACK_SECRET_LEN], now: u64) -> Result<bool> {
    let drop_hash = drop_hash_of(secret);
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO mailbox_acks (drop_hash, secret, expiry) VALUES (?1, ?2, ?3)",
        params![
            &drop_hash[..],
            &secret[..],
            sql_u64(now.saturating_add(MAX_TTL_MS))
        ],
    )?;
    tx.execute(
        "DELETE FROM mailbox_envelopes WHERE drop_hash = ?1",
        params![&drop_hash[..]],
    )?;
    Ok(inserted > 0)
}

/// Hashes of every unexpired envelope carried, oldest received first (so
/// a catch-up delivers in sending order).
pub fn inventory(conn: &Connection, now: u64) -> Result<Vec<EnvelopeHash>> {
    let mut st = conn.prepare_cached(
        "SELECT hash FROM mailbox_envelopes WHERE expiry > ?1 ORDER BY received_at, rowid",
    )?;
    let rows = st.query_map(params![sql_u64(now)], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(h) = <[u8; 32]>::try_from(row?.as_slice()) {
            out.push(h);
        }
    }
    Ok(out)
}

/// The bytes of a carried, unexpired envelope.
pub fn get(conn: &Connection, hash: &EnvelopeHash, now: u64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT envelope FROM mailbox_envelopes WHERE hash = ?1 AND expiry > ?2")?
        .query_row(params![&hash[..], sql_u64(now)], |r| r.get(0))
        .optional()?)
}

/// Whether an envelope with this hash is carried.
pub fn holds(conn: &Connection, hash: &EnvelopeHash) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM mailbox_envelopes WHERE hash = ?1")?
        .query_row(params![&hash[..]], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Unexpired ack secrets, newest first, at most `limit`.
pub fn acks(conn: &Connection, now: u64, limit: u32) -> Result<Vec<[u8; ACK_SECRET_LEN]>> {
    let mut st = conn.prepare_cached(
        "SELECT secret FROM mailbox_acks WHERE expiry > ?1 ORDER BY expiry DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![sql_u64(now), limit], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(s) = <[u8; ACK_SECRET_LEN]>::try_from(row?.as_slice()) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Counters.
pub fn stats_in(conn: &Connection) -> Result<MailboxStats> {
    let (n, bytes): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(size), 0) FROM mailbox_envelopes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let acks: i64 = conn.query_row("SELECT count(*) FROM mailbox_acks", [], |r| r.get(0))?;
    Ok(MailboxStats {
        envelopes: n as u64,
        bytes: bytes as u64,
        acks: acks as u64,
    })
}

/// Moves every envelope of the messaging outbox into the mailbox (in one
/// transaction, so none is lost or sent twice). Returns the new ones.
fn import_outbox_tx(tx: &Transaction<'_>, now: u64) -> Result<Vec<EnvelopeHash>> {
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut st = tx.prepare_cached("SELECT id, envelope FROM msg_outbox ORDER BY id")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut new = Vec::new();
    for (id, bytes) in rows {
        // An envelope the messaging layer wrote always decodes; anything
        // else cannot be delivered and is dropped.
        if let Ok(env) = Envelope::decode(&bytes)
            && let Accepted::New(h) = accept(tx, &bytes, &env, now)?
        {
            new.push(h);
        }
        tx.execute("DELETE FROM msg_outbox WHERE id = ?1", params![id])?;
    }
    Ok(new)
}

// ----- node-level operations ---------------------------------------------------

/// Hands every queued outgoing envelope (the messaging outbox, possibly
/// filled by another process on the same data dir) to the carrier and tells
/// live sessions. Returns how many were new. Needs no key.
pub fn flush_outbox(node: &Node) -> Result<usize> {
    let now = now_ms();
    let pending: i64 = node
        .store()
        .read(|c| Ok(c.query_row("SELECT count(*) FROM msg_outbox", [], |r| r.get(0))?))?;
    if pending == 0 {
        return Ok(0);
    }
    let new = node.store().write(|tx| import_outbox_tx(tx, now))?;
    for hash in &new {
        node.mailbox_bus().emit(MailboxEvent::Envelope {
            hash: *hash,
            origin: 0,
        });
    }
    Ok(new.len())
}

/// Publishes a fresh prekey bundle if none was published yet or one-time
/// prekeys ran low or the signed prekey is due. Needs the at-rest key;
/// returns `Ok(false)` without it.
pub fn refresh_prekeys(node: &Node) -> Result<bool> {
    let payload = match node.with_messaging(|m| {
        if m.prekeys_need_refresh()? {
            m.publish_prekeys().map(Some)
        } else {
            Ok(None)
        }
    }) {
        Ok(r) => r?,
        Err(crate::Error::Locked(_)) | Err(crate::Error::NoIdentity) => return Ok(false),
        Err(e) => return Err(e),
    };
    match payload {
        Some(p) => {
            node.publish(p)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Housekeeping when a sync session starts: expiry sweep, the outbox, and
/// envelopes for us that arrived while the at-rest key was unavailable.
/// Never touches the feed.
pub fn maintain_carrier(node: &Node) -> Result<()> {
    let now = now_ms();
    node.store().write(|tx| sweep(tx, now))?;
    flush_outbox(node)?;
    reoffer_mine(node, now)
}

/// Offers carried envelopes addressed to us (one tag lookup each) to
/// messaging again: those that arrived while the key was locked are read
/// and acked now. Without the key this does nothing.
fn reoffer_mine(node: &Node, now: u64) -> Result<()> {
    let held = node.store().read(|c| inventory(c, now))?;
    let mine: Vec<Vec<u8>> = match node.with_messaging(|m| {
        let mut out = Vec::new();
        for h in &held {
            if let Some(bytes) = node.store().read(|c| get(c, h, now))?
                && matches!(m.is_mine(&bytes), Ok(true))
            {
                out.push(bytes);
            }
        }
        Ok::<_, crate::Error>(out)
    }) {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    for bytes in mine {
        if let Some(Read {
            ack: Some(secret), ..
        }) = open_locally(node, &bytes)
        {
            node.store().write(|tx| apply_ack(tx, &secret, now))?;
            node.mailbox_bus()
                .emit(MailboxEvent::Ack { secret, origin: 0 });
        }
    }
    if !held.is_empty() {
        flush_outbox(node)?;
    }
    Ok(())
}

/// Subscribes to `node`'s mailbox events (new envelopes and acks, e.g. an
/// `Ack` with origin 0 right after this node read a message).
pub fn subscribe(node: &Node) -> broadcast::Receiver<MailboxEvent> {
    node.mailbox_bus().subscribe()
}

/// Counters of `node`'s mailbox.
pub fn stats(node: &Node) -> Result<MailboxStats> {
    node.store().read(stats_in)
}

/// An envelope came from a peer (session `origin`): store it, offer it to
/// this node's messaging, and tell the other sessions. `Ok(true)` if it was
/// new. `Err` only for a local failure; bad envelopes are refused by the
/// caller's decoding.
pub fn receive_from_peer(node: &Node, bytes: &[u8], env: &Envelope, origin: u64) -> Result<bool> {
    let now = now_ms();
    let hash = match node.store().write(|tx| accept(tx, bytes, env, now))? {
        Accepted::New(h) => h,
        Accepted::Known(_) | Accepted::Refused(_) => return Ok(false),
    };
    match open_locally(node, bytes) {
        Some(Read {
            ack: Some(secret),
            control,
        }) => {
            // Ours and acked: nobody needs to carry it any more.
            node.store().write(|tx| apply_ack(tx, &secret, now))?;
            node.mailbox_bus()
                .emit(MailboxEvent::Ack { secret, origin: 0 });
            // Responses (sender keys, re-keys) and a prekey top-up.
            flush_outbox(node)?;
            if let Err(e) = refresh_prekeys(node) {
                tracing::debug!(error = %e, "prekey refresh failed");
            }
            if control {
                // A group invite, membership change or sender key: group
                // envelopes carried here that were not ours, or not
                // readable, a moment ago may be now. Read them at once
                // rather than at the next session's start.
                reoffer_mine(node, now)?;
            }
        }
        // A group envelope we read: other members may still need it.
        Some(Read { ack: None, .. }) | None => {
            flush_outbox(node)?;
            node.mailbox_bus()
                .emit(MailboxEvent::Envelope { hash, origin });
        }
    }
    Ok(true)
}

/// An envelope of ours that messaging read.
struct Read {
    /// Its ack secret (`None` for group envelopes, which are never acked).
    ack: Option<[u8; ACK_SECRET_LEN]>,
    /// It carried no message to show: a group invite, membership change or
    /// sender key, which may make other carried envelopes readable.
    control: bool,
}

/// Offers an envelope to this node's messaging: `Some` if it was ours and
/// read, `None` if not ours, not readable, or the key is unavailable (then
/// it is only carried).
fn open_locally(node: &Node, bytes: &[u8]) -> Option<Read> {
    let result = node.with_messaging(|m| {
        if !m.is_mine(bytes)? {
            return Ok(None);
        }
        m.receive(bytes)
    });
    match result {
        Ok(Ok(Some(r))) => {
            // Stored (committed) by `receive`: apps may read it now.
            if let Some(msg) = &r.message {
                node.emit(crate::events::NodeEvent::MessageReceived {
                    message_id: msg.id,
                    conversation: msg.conversation,
                    sender: msg.sender,
                });
            }
            Some(Read {
                ack: r.ack,
                control: r.message.is_none(),
            })
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "an envelope for us could not be read");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "messaging unavailable; carrying the envelope");
            None
        }
    }
}

/// An ack came from a peer (session `origin`): drop what it names and tell
/// the other sessions. `Ok(true)` if it was new.
pub fn ack_from_peer(node: &Node, secret: &[u8; ACK_SECRET_LEN], origin: u64) -> Result<bool> {
    let now = now_ms();
    let new = node.store().write(|tx| apply_ack(tx, secret, now))?;
    if new {
        node.mailbox_bus().emit(MailboxEvent::Ack {
            secret: *secret,
            origin,
        });
    }
    Ok(new)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn env(seed: u8, expiry: u64, secret: &[u8; 32]) -> (Vec<u8>, Envelope) {
        let e = Envelope {
            tag: [seed; 32],
            expiry_ms: expiry,
            drop_hash: drop_hash_of(secret),
            body: vec![seed; 256],
        };
        (e.encode(), e)
    }

    #[test]
    fn accept_evict_ack_and_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let now = 1_000_000;
        let (b1, e1) = env(1, now + 10, &[1; 32]);
        let (b2, e2) = env(2, now + 20, &[2; 32]);
        let (b3, e3) = env(3, now - 1, &[3; 32]);
        store
            .write(|tx| {
                assert!(matches!(accept(tx, &b1, &e1, now)?, Accepted::New(_)));
                assert!(matches!(accept(tx, &b1, &e1, now)?, Accepted::Known(_)));
                assert!(matches!(accept(tx, &b2, &e2, now)?, Accepted::New(_)));
                assert_eq!(accept(tx, &b3, &e3, now)?, Accepted::Refused("expired"));
                // Only the right secret drops; the drop is a tombstone.
                assert!(apply_ack(tx, &[9; 32], now)?);
                assert_eq!(inventory(tx, now)?.len(), 2);
                assert!(apply_ack(tx, &[1; 32], now)?);
                assert!(!apply_ack(tx, &[1; 32], now)?);
                assert_eq!(inventory(tx, now)?.len(), 1);
                assert_eq!(accept(tx, &b1, &e1, now)?, Accepted::Refused("acked"));
                // Expiry sweep.
                sweep(tx, now + 20)?;
                assert!(inventory(tx, now)?.is_empty());
                Ok(())
            })
            .unwrap();
        let s = store.read(stats_in).unwrap();
        assert_eq!((s.envelopes, s.acks), (0, 2));
    }

    #[test]
    fn carrying_is_capped_at_seven_days() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let now = 1_000_000;
        let (b, e) = env(1, u64::MAX, &[1; 32]);
        store
            .write(|tx| {
                accept(tx, &b, &e, now)?;
                assert_eq!(inventory(tx, now + MAX_TTL_MS - 1)?.len(), 1);
                sweep(tx, now + MAX_TTL_MS)?;
                assert!(inventory(tx, now)?.is_empty());
                Ok(())
            })
            .unwrap();
    }

    /// Delivers `envelopes` to `node` as if a peer sent them.
    fn deliver(node: &Node, envelopes: &[Vec<u8>]) {
        for bytes in envelopes {
            let env = Envelope::decode(bytes).unwrap();
            receive_from_peer(node, bytes, &env, 1).unwrap();
        }
    }

    #[test]
    fn a_group_message_that_overtook_its_invite_is_read_when_the_invite_arrives() {
        use crate::messaging::Conversation;
        let (_da, a) = crate::store::testutil::node();
        let (_db, b) = crate::store::testutil::node();
        let b_id = b.whoami().unwrap();
        refresh_prekeys(&b).unwrap();
        let feed = tempfile::NamedTempFile::new().unwrap();
        b.export_feed(b_id, feed.path()).unwrap();
        a.import(feed.path()).unwrap();

        let group = a
            .with_messaging(|m| m.create_group("friends"))
            .unwrap()
            .unwrap();
        let invite = a
            .with_messaging(|m| m.add_member(&group, &b_id))
            .unwrap()
            .unwrap();
        let message = a
            .with_messaging(|m| m.encrypt_group(&group, "overtaking hello"))
            .unwrap()
            .unwrap();
        let texts = || -> Vec<String> {
            b.with_messaging(|m| m.messages(Conversation::Group(group)))
                .unwrap()
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.text)
                .collect()
        };
        // The group's messages (with the sender key they need) come first:
        // B knows no such group yet and only carries what is addressed to it.
        let (pairwise, group_only): (Vec<Vec<u8>>, Vec<Vec<u8>>) = message
            .into_iter()
            .partition(|e| b.with_messaging(|m| m.is_mine(e)).unwrap().unwrap_or(false));
        deliver(&b, &group_only);
        assert!(texts().is_empty());
        // The invite and the sender key arrive: the carried message is read
        // then, not at the next session's start.
        deliver(&b, &invite);
        deliver(&b, &pairwise);
        assert_eq!(texts(), ["overtaking hello"]);
    }
}
