//! Ingest: validating and storing batches of foreign entries.
//!
//! A batch is atomic. It is first validated completely without writing —
//! decoding, payload length/hash/decoding, the timestamp window, chain
//! continuity against the store *and* against earlier entries of the same
//! batch, payload rules, then one Ed25519 batch verification of all new
//! signatures — and only then written, inside the caller's transaction. Any
//! invalid entry fails the whole batch with [`Error::BatchRejected`], so a
//! peer can never get half of a batch stored.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction};

use crate::error::{Error, Result};
use crate::feed::validate::{self, ValidationError};
use crate::feed::{Entry, Payload};
use crate::identity::id::{AuthorId, EntryId};
use crate::store::apply::{self, Effects};

/// One entry offered for ingest: its encoded bytes and, if the sender has
/// it, the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingEntry {
    /// The canonical entry bytes (149 or 181 bytes).
    pub entry_bytes: Vec<u8>,
    /// The payload bytes; `None` if the sender does not have them (for
    /// example because the author deleted them).
    pub payload: Option<Vec<u8>>,
}

/// What an ingest (or import) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// New entries stored.
    pub accepted: u64,
    /// Entries already held (identical bytes); skipped.
    pub duplicates: u64,
    /// Valid second entries for an already stored (author, seq): kept as
    /// fork evidence, the feed is flagged as forked.
    pub forks: u64,
    /// Entries of authors the local user blocks: refused quietly, not stored.
    pub blocked: u64,
}

impl IngestReport {
    pub(crate) fn add(&mut self, other: &IngestReport) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.forks += other.forks;
        self.blocked += other.blocked;
    }
}

/// How an ingest treats entries that do not extend the held feed forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IngestMode {
    /// [`crate::Node::ingest`]: a feed we hold nothing of must start at
    /// seq 1, and every entry must fit the chain.
    Strict,
    /// Feed files ([`crate::Node::import`]): as strict, except that a feed
    /// we hold nothing of may start at any seq, as a tentative head. A
    /// node exports what it holds, which is a suffix of a feed still
    /// backfilling from its peers; the file lists it oldest first, so the
    /// head is its first entry and the rest extend it forward.
    Import,
    /// Peer sync: a feed we hold nothing of may start with a *tentative
    /// head* (any seq, accepted on its signature), and a validly signed entry
    /// that no longer fits the held chain (a gap, or another session stored
    /// that position first) is skipped instead of failing the batch.
    Sync,
}

/// What an ingest did, in detail (for sync and the node's events).
#[derive(Debug, Default)]
pub(crate) struct IngestOutcome {
    pub report: IngestReport,
    pub effects: Effects,
    /// Entries newly stored: (id, author, seq), in batch order.
    pub added: Vec<(EntryId, AuthorId, u64)>,
    /// Authors of validly signed entries skipped in [`IngestMode::Sync`].
    pub skipped: Vec<AuthorId>,
}

/// What to do with one validated entry.
enum Action {
    Append,
    /// The newest entry of a feed we hold nothing of (sync only): becomes
    /// both the tip and the low end of the held suffix.
    Head,
    /// The entry just below the held suffix, whose id is the `prev` of the
    /// lowest held entry (backward chain verification).
    Backfill,
    Fork {
        stored: Entry,
    },
    Duplicate,
    Blocked,
    /// Sync only: validly signed, but does not fit the chain we hold now.
    Skip,
}

struct Planned<'a> {
    entry: Entry,
    id: EntryId,
    encoded: &'a [u8],
    payload: Option<(&'a [u8], Payload)>,
    action: Action,
}

/// The newest entry of a feed as seen by this batch (store plus earlier
/// entries of the batch).
#[derive(Clone)]
struct BatchTip {
    entry: Entry,
    id: EntryId,
}

/// Validation state shared across the entries of one batch.
struct Validator<'t, 'c> {
    tx: &'t Transaction<'c>,
    me: Option<AuthorId>,
    now_ms: u64,
    tips: HashMap<AuthorId, Option<BatchTip>>,
    /// The lowest held entry of each feed (store plus this batch).
    lows: HashMap<AuthorId, Option<BatchTip>>,
    mode: IngestMode,
    /// Entries appended by this batch, by (author, seq).
    appended: HashMap<(AuthorId, u64), (EntryId, Entry)>,
    /// Authors of entries appended by this batch, by id (for delete rules).
    appended_authors: HashMap<EntryId, AuthorId>,
    blocked: HashMap<AuthorId, bool>,
}

fn reject(index: usize) -> impl Fn(ValidationError) -> Error {
    move |reason| Error::BatchRejected { index, reason }
}

impl Validator<'_, '_> {
    fn tip(&mut self, author: &AuthorId) -> Result<Option<BatchTip>> {
        if let Some(t) = self.tips.get(author) {
            return Ok(t.clone());
        }
        let tip = match apply::feed_tip(self.tx, author)? {
            Some(t) => {
                apply::entry_at(self.tx, author, t.seq)?.map(|entry| BatchTip { entry, id: t.id })
            }
            None => None,
        };
        self.tips.insert(*author, tip.clone());
        Ok(tip)
    }

    /// The lowest held entry of `author`'s feed (the low end of its suffix).
    fn low(&mut self, author: &AuthorId) -> Result<Option<BatchTip>> {
        if let Some(t) = self.lows.get(author) {
            return Ok(t.clone());
        }
        let low = match crate::store::replication::feed_low(self.tx, author)? {
            Some(seq) => apply::entry_at(self.tx, author, seq)?.map(|entry| BatchTip {
                id: entry.id(),
                entry,
            }),
            None => None,
        };
        self.lows.insert(*author, low.clone());
        Ok(low)
    }

    /// A chain-position error: fatal in strict mode, a skip in sync mode.
    fn positional(&self, index: usize, err: ValidationError) -> Result<Action> {
        match self.mode {
            IngestMode::Sync => Ok(Action::Skip),
            IngestMode::Strict | IngestMode::Import => Err(reject(index)(err)),
        }
    }

    /// The main-chain entry at (author, seq), from this batch or the store.
    fn entry_at(&self, author: &AuthorId, seq: u64) -> Result<Option<(EntryId, Entry)>> {
        if let Some((id, e)) = self.appended.get(&(*author, seq)) {
            return Ok(Some((*id, e.clone())));
        }
        Ok(apply::entry_at(self.tx, author, seq)?.map(|e| (e.id(), e)))
    }

    fn is_blocked(&mut self, author: &AuthorId) -> Result<bool> {
        if let Some(b) = self.blocked.get(author) {
            return Ok(*b);
        }
        let b = apply::is_blocked(self.tx, self.me.as_ref(), author)?;
        self.blocked.insert(*author, b);
        Ok(b)
    }

    fn author_of(&self, id: &EntryId) -> Result<Option<AuthorId>> {
        if let Some(a) = self.appended_authors.get(id) {
            return Ok(Some(*a));
        }
        let a: Option<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT author FROM entries WHERE id = ?1")?
            .query_row([id.as_bytes()], |r| r.get(0))
            .optional()?;
        a.map(|a| AuthorId::from_slice(&a)).transpose()
    }

    fn is_known_fork(&self, id: &EntryId) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM forks WHERE conflicting_id = ?1")?
            .exists([id.as_bytes()])?)
    }

    /// Validates one entry (everything but its signature) and decides its
    /// action. Errors are already `BatchRejected` for `index`.
    fn plan<'a>(&mut self, index: usize, item: &'a IncomingEntry) -> Result<Planned<'a>> {
        let rej = reject(index);
        let encoded = item.entry_bytes.as_slice();
        let entry = Entry::decode(encoded).map_err(|e| rej(ValidationError::BadEntry(e)))?;
        // Decoding is canonical, so the given bytes are the encoding.
        let id = EntryId::from_bytes(*blake3::hash(encoded).as_bytes());
        if self.is_blocked(&entry.author)? {
            // Refused quietly and before any other check: nothing of a
            // blocked feed is looked at, let alone stored.
            return Ok(Planned {
                entry,
                id,
                encoded,
                payload: None,
                action: Action::Blocked,
            });
        }
        let payload = match &item.payload {
            Some(p) => {
                validate::check_payload(&entry, p).map_err(&rej)?;
                let decoded =
                    Payload::decode(p).map_err(|e| rej(ValidationError::BadPayload(e)))?;
                Some((p.as_slice(), decoded))
            }
            None => None,
        };
        validate::check_timestamp(&entry, self.now_ms).map_err(&rej)?;

        let author = entry.author;
        let action = match self.tip(&author)? {
            None if entry.seq == 1 => Action::Append,
            // Accepted on its signature alone; see PROTOCOL.md §6 (trust).
            None if self.mode != IngestMode::Strict => Action::Head,
            None => {
                return Err(rej(ValidationError::SeqGap {
                    author,
                    have: 0,
                    got: entry.seq,
                }));
            }
            Some(tip) if entry.seq == tip.entry.seq.saturating_add(1) => {
                match validate::check_successor(&tip.entry, &tip.id, &entry) {
                    Ok(()) => Action::Append,
                    Err(e @ ValidationError::WrongPrev { .. }) => self.positional(index, e)?,
                    Err(e) => return Err(rej(e)),
                }
            }
            Some(tip) if entry.seq > tip.entry.seq => self.positional(
                index,
                ValidationError::SeqGap {
                    author,
                    have: tip.entry.seq,
                    got: entry.seq,
                },
            )?,
            Some(_) if self.low(&author)?.is_some_and(|l| entry.seq < l.entry.seq) => {
                // Below the held suffix: only the entry whose id is the
                // lowest held entry's `prev` may be added (backward chain).
                let low = self
                    .low(&author)?
                    .ok_or_else(|| Error::NotFound(format!("lowest held entry of {author}")))?;
                if entry.seq.saturating_add(1) == low.entry.seq {
                    match validate::check_successor(&entry, &id, &low.entry) {
                        Ok(()) => Action::Backfill,
                        Err(e @ ValidationError::WrongPrev { .. }) => self.positional(index, e)?,
                        Err(e) => return Err(rej(e)),
                    }
                } else {
                    self.positional(
                        index,
                        ValidationError::SeqGap {
                            author,
                            have: low.entry.seq,
                            got: entry.seq,
                        },
                    )?
                }
            }
            Some(_) => {
                let (stored_id, stored) = self
                    .entry_at(&author, entry.seq)?
                    // Feeds are stored contiguously from seq 1.
                    .ok_or_else(|| Error::NotFound(format!("entry {} of {author}", entry.seq)))?;
                if stored_id == id || self.is_known_fork(&id)? {
                    Action::Duplicate
                } else {
                    // A fork only counts if it is a valid successor of our
                    // seq - 1; anything else is just an invalid entry.
                    // At the low end of a held suffix there is no stored
                    // predecessor: two validly signed entries for one
                    // (author, seq) are fork evidence on their own.
                    let low_seq = self.low(&author)?.map_or(1, |l| l.entry.seq);
                    if entry.seq > low_seq {
                        let (prev_id, prev) =
                            self.entry_at(&author, entry.seq - 1)?.ok_or_else(|| {
                                Error::NotFound(format!("entry {} of {author}", entry.seq - 1))
                            })?;
                        validate::check_successor(&prev, &prev_id, &entry).map_err(&rej)?;
                    }
                    Action::Fork { stored }
                }
            }
        };
        if matches!(
            action,
            Action::Append | Action::Duplicate | Action::Head | Action::Backfill
        ) && let Some((_, p)) = &payload
        {
            self.check_payload_rules(&entry, p).map_err(&rej)?;
        }
        if matches!(action, Action::Append | Action::Head | Action::Backfill) {
            let held = BatchTip {
                entry: entry.clone(),
                id,
            };
            self.appended
                .insert((author, entry.seq), (id, entry.clone()));
            self.appended_authors.insert(id, author);
            match action {
                Action::Append => {
                    if entry.seq == 1 {
                        self.lows.insert(author, Some(held.clone()));
                    }
                    self.tips.insert(author, Some(held));
                }
                Action::Head => {
                    self.lows.insert(author, Some(held.clone()));
                    self.tips.insert(author, Some(held));
                }
                _ => {
                    self.lows.insert(author, Some(held));
                }
            }
        }
        Ok(Planned {
            entry,
            id,
            encoded,
            payload,
            action,
        })
    }

    /// Rules that depend on the payload's meaning.
    fn check_payload_rules(&self, entry: &Entry, payload: &Payload) -> Result<(), ValidationError> {
        match payload {
            Payload::Delete(target) => {
                // A delete of an entry we do not hold yet is kept and only
                // takes effect if the target turns out to be the author's.
                match self.author_of(target) {
                    Ok(Some(a)) if a != entry.author => Err(ValidationError::ForeignDelete),
                    _ => Ok(()),
                }
            }
            Payload::EncryptionKey(k) => crate::identity::binding::verify_x25519_binding(
                &entry.author,
                &k.x25519_public,
                k.created_at_ms,
                &k.binding_signature,
            )
            .map_err(|e| ValidationError::PayloadRule(e.to_string())),
            _ => Ok(()),
        }
    }
}

/// Validates `batch` and, if every entry is acceptable, writes it into `tx`.
/// `index_offset` is added to entry positions in errors (for imports read
/// in chunks). `me` is the local identity, whose blocks refuse feeds.
/// `mode` decides how entries that do not extend a feed are treated.
///
/// On an error `tx` may hold part of the batch's writes: the caller must
/// not commit it. Every caller returns the error out of [`Store::write`],
/// which then rolls the whole transaction back.
///
/// [`Store::write`]: crate::store::Store::write
pub(crate) fn ingest_with_mode(
    tx: &Transaction<'_>,
    batch: &[IncomingEntry],
    index_offset: usize,
    me: Option<AuthorId>,
    now_ms: u64,
    mode: IngestMode,
) -> Result<IngestOutcome> {
    let mut v = Validator {
        tx,
        me,
        now_ms,
        tips: HashMap::new(),
        lows: HashMap::new(),
        mode,
        appended: HashMap::new(),
        appended_authors: HashMap::new(),
        blocked: HashMap::new(),
    };
    let mut planned = Vec::with_capacity(batch.len());
    for (i, item) in batch.iter().enumerate() {
        planned.push(v.plan(index_offset + i, item)?);
    }

    // One batch verification for every signature we have not seen before.
    let to_verify: Vec<(usize, &Entry)> = planned
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            matches!(
                p.action,
                Action::Append
                    | Action::Fork { .. }
                    | Action::Head
                    | Action::Backfill
                    | Action::Skip
            )
        })
        .map(|(i, p)| (i, &p.entry))
        .collect();
    let refs: Vec<&Entry> = to_verify.iter().map(|(_, e)| *e).collect();
    let me = me.as_ref();
    let (verified, written) = if refs.len() >= PARALLEL_VERIFY_MIN {
        // Verify on a second core while this one writes into the (still
        // uncommitted) transaction. If any signature fails, the error below
        // makes the caller drop the transaction, which rolls the writes
        // back: same atomicity, about half the wall time. (A savepoint
        // around the writes would make that rollback local, but it costs a
        // statement journal copy of every page the batch touches.)
        std::thread::scope(|s| {
            let verifier = s.spawn(|| validate::verify_batch(&refs));
            let written = write_planned(tx, &planned, me);
            (verifier.join(), written)
        })
    } else {
        // Small batches: a thread costs more than it saves. Verify first so
        // an invalid batch costs no writes.
        let verified = validate::verify_batch(&refs);
        if verified.iter().all(Result::is_ok) {
            (Ok(verified), write_planned(tx, &planned, me))
        } else {
            (Ok(verified), Ok(IngestOutcome::default()))
        }
    };
    let verified =
        verified.map_err(|_| Error::Crypto("signature verification failed unexpectedly".into()))?;
    for ((i, _), result) in to_verify.iter().zip(verified) {
        result.map_err(reject(index_offset + i))?;
    }
    written
}

/// Batches with at least this many new signatures verify them on a second
/// thread, overlapped with the writes.
const PARALLEL_VERIFY_MIN: usize = 64;

/// Writes the planned entries of a fully validated batch (signatures aside,
/// see [`ingest_with_mode`]).
fn write_planned(
    tx: &Transaction<'_>,
    planned: &[Planned<'_>],
    me: Option<&AuthorId>,
) -> Result<IngestOutcome> {
    let mut out = IngestOutcome::default();
    let (report, effects) = (&mut out.report, &mut out.effects);
    for p in planned {
        let payload = p.payload.as_ref().map(|(b, d)| (*b, d));
        match &p.action {
            // A head's feed row is new: `insert_entry` records its first
            // stored seq as the held suffix's low end.
            Action::Append | Action::Head => {
                effects.merge(apply::insert_entry(
                    tx, &p.entry, &p.id, p.encoded, payload, me,
                )?);
                report.accepted += 1;
                out.added.push((p.id, p.entry.author, p.entry.seq));
            }
            Action::Backfill => {
                effects.merge(apply::insert_backfilled_entry(
                    tx, &p.entry, &p.id, p.encoded, payload, me,
                )?);
                crate::store::replication::set_low(tx, &p.entry.author, p.entry.seq)?;
                report.accepted += 1;
                out.added.push((p.id, p.entry.author, p.entry.seq));
            }
            Action::Skip => out.skipped.push(p.entry.author),
            Action::Fork { stored } => {
                if apply::record_fork(tx, stored, &p.entry, &p.id)? {
                    report.forks += 1;
                } else {
                    report.duplicates += 1;
                }
            }
            Action::Duplicate => {
                if let Some((bytes, decoded)) = payload
                    && let Some(e) =
                        apply::attach_late_payload(tx, &p.entry, &p.id, bytes, decoded, me)?
                {
                    effects.merge(e);
                }
                report.duplicates += 1;
            }
            Action::Blocked => report.blocked += 1,
        }
    }
    // One index segment for the batch's posts (and own posts waiting).
    apply::index_pending_posts(tx)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::feed::MAX_PAYLOAD_LEN;
    use crate::node::{Node, PageRequest};
    use crate::store::testutil::{Author, dump, node, post};

    /// Ingests `batch`, expects rejection of entry `index` for a reason
    /// matching `check`, and that the store did not change at all.
    fn assert_rejected(
        node: &Node,
        batch: Vec<IncomingEntry>,
        index: usize,
        check: impl Fn(&ValidationError) -> bool,
    ) {
        let before = dump(node.store());
        match node.ingest(batch) {
            Err(Error::BatchRejected { index: i, reason }) => {
                assert_eq!(i, index, "rejected entry index ({reason})");
                assert!(check(&reason), "unexpected reason {reason:?}");
            }
            other => panic!("expected BatchRejected, got {other:?}"),
        }
        assert_eq!(
            before,
            dump(node.store()),
            "a rejected batch changed the store"
        );
    }

    /// A node that already holds two entries of author `a`.
    fn setup() -> (tempfile::TempDir, Node, Author) {
        let (dir, node) = node();
        let mut a = Author::new(7);
        let batch = vec![a.post("one").1, a.post("two").1];
        assert_eq!(node.ingest(batch).unwrap().accepted, 2);
        (dir, node, a)
    }

    #[test]
    fn a_valid_batch_from_several_authors_is_stored() {
        let (_d, node, mut a) = setup();
        let mut b = Author::new(8);
        let batch = vec![
            a.post("three").1,
            b.post("b1").1,
            b.post("b2").1,
            a.post("four").1,
        ];
        let report = node.ingest(batch.clone()).unwrap();
        assert_eq!(
            report,
            IngestReport {
                accepted: 4,
                ..Default::default()
            }
        );
        let again = node.ingest(batch).unwrap();
        assert_eq!(
            again,
            IngestReport {
                duplicates: 4,
                ..Default::default()
            }
        );
        let feed = node.feed(a.id(), PageRequest::first(10)).unwrap();
        assert_eq!(feed.items.len(), 4);
    }

    #[test]
    fn bad_signature_is_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        let mut bad = a.post("four").1;
        bad.entry_bytes[150] ^= 1; // inside the signature
        assert_rejected(&node, vec![good, bad], 1, |r| {
            matches!(r, ValidationError::BadSignature { .. })
        });
    }

    #[test]
    fn a_bad_signature_in_a_large_batch_is_rejected() {
        // Large enough for the overlapped verify-while-writing path.
        let (_d, node, mut a) = setup();
        let mut batch: Vec<IncomingEntry> = (0..PARALLEL_VERIFY_MIN * 2)
            .map(|i| a.post(&format!("n{i}")).1)
            .collect();
        // The last one: corrupting an earlier entry would also break the
        // next entry's `prev` and fail in planning, before verification.
        let last = batch.len() - 1;
        batch[last].entry_bytes[160] ^= 1;
        assert_rejected(&node, batch, last, |r| {
            matches!(r, ValidationError::BadSignature { .. })
        });
    }

    #[test]
    fn weak_key_is_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        // The identity point (small order) as author key.
        let mut weak_author = [0u8; 32];
        weak_author[0] = 1;
        let payload = post("x").encode().unwrap();
        let mut entry = Entry::sign(&a.key, 1, None, a.ts, &payload);
        entry.author = AuthorId::from_bytes(weak_author);
        let bad = IncomingEntry {
            entry_bytes: entry.encode(),
            payload: Some(payload),
        };
        assert_rejected(&node, vec![good, bad], 1, |r| {
            matches!(r, ValidationError::WeakKey(_))
        });
    }

    #[test]
    fn seq_gap_is_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        let _skipped = a.post("four");
        let gap = a.post("five").1;
        assert_rejected(&node, vec![good, gap], 1, |r| {
            matches!(
                r,
                ValidationError::SeqGap {
                    have: 3,
                    got: 5,
                    ..
                }
            )
        });
        // A first entry of an unknown feed must be seq 1.
        let mut c = Author::new(9);
        let _ = c.post("c1");
        assert_rejected(&node, vec![c.post("c2").1], 0, |r| {
            matches!(r, ValidationError::SeqGap { have: 0, .. })
        });
    }

    #[test]
    fn timestamp_rewind_is_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        a.ts -= 10_000;
        let rewound = a.post("four").1;
        assert_rejected(&node, vec![good, rewound], 1, |r| {
            matches!(r, ValidationError::Rewind { .. })
        });
    }

    #[test]
    fn timestamp_outside_the_window_is_rejected() {
        let (_d, node, mut a) = setup();
        a.ts = crate::store::now_ms() + 3_600_000;
        let future = a.post("later").1;
        assert_rejected(&node, vec![future], 0, |r| {
            matches!(r, ValidationError::TimestampOutOfWindow { .. })
        });
    }

    #[test]
    fn wrong_prev_is_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        let payload = post("four").encode().unwrap();
        let last = a.last.clone().unwrap();
        let entry = Entry::sign(
            &a.key,
            last.seq + 1,
            Some(EntryId::from_bytes([5; 32])),
            a.ts + 1,
            &payload,
        );
        let bad = IncomingEntry {
            entry_bytes: entry.encode(),
            payload: Some(payload),
        };
        assert_rejected(&node, vec![good, bad], 1, |r| {
            matches!(r, ValidationError::WrongPrev { .. })
        });
    }

    #[test]
    fn oversized_payload_is_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        let (_, mut big) = a.post("four");
        big.payload = Some(vec![1; MAX_PAYLOAD_LEN as usize + 1]);
        assert_rejected(&node, vec![good.clone(), big], 1, |r| {
            matches!(r, ValidationError::Oversized { .. })
        });
        // An entry announcing an oversized payload does not even decode.
        let payload = vec![1u8; MAX_PAYLOAD_LEN as usize + 1];
        let last = a.last.clone().unwrap();
        let entry = Entry::sign(&a.key, last.seq + 1, Some(last.id()), a.ts + 1, &payload);
        let bad = IncomingEntry {
            entry_bytes: entry.encode(),
            payload: Some(payload),
        };
        assert_rejected(&node, vec![good, bad], 1, |r| {
            matches!(r, ValidationError::BadEntry(_))
        });
    }

    #[test]
    fn payload_hash_and_length_mismatches_are_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        let (_, mut bad) = a.post("four");
        let p = bad.payload.as_mut().unwrap();
        let last = p.len() - 1;
        p[last] ^= 0x01; // same length, different bytes
        assert_rejected(&node, vec![good.clone(), bad.clone()], 1, |r| {
            matches!(r, ValidationError::PayloadHashMismatch)
        });
        bad.payload.as_mut().unwrap().push(b'x');
        assert_rejected(&node, vec![good, bad], 1, |r| {
            matches!(r, ValidationError::PayloadLengthMismatch { .. })
        });
    }

    #[test]
    fn undecodable_entries_and_payloads_are_rejected() {
        let (_d, node, mut a) = setup();
        let good = a.post("three").1;
        let garbage = IncomingEntry {
            entry_bytes: vec![1, 2, 3],
            payload: None,
        };
        assert_rejected(&node, vec![good.clone(), garbage], 1, |r| {
            matches!(r, ValidationError::BadEntry(_))
        });
        // Correctly hashed and signed, but not a valid payload (bad flag).
        let mut payload = post("x").encode().unwrap();
        let n = payload.len();
        payload[n - 3] = 7;
        let last = a.last.clone().unwrap();
        let entry = Entry::sign(&a.key, last.seq + 1, Some(last.id()), a.ts + 1, &payload);
        let bad = IncomingEntry {
            entry_bytes: entry.encode(),
            payload: Some(payload),
        };
        assert_rejected(&node, vec![good, bad], 1, |r| {
            matches!(r, ValidationError::BadPayload(_))
        });
    }

    #[test]
    fn a_delete_of_another_authors_entry_is_rejected() {
        let (_d, node, mut a) = setup();
        let mut b = Author::new(8);
        let (b1, inc) = b.post("mine");
        node.ingest(vec![inc]).unwrap();
        let (_, del) = a.next(&Payload::Delete(b1));
        assert_rejected(&node, vec![del], 0, |r| {
            matches!(r, ValidationError::ForeignDelete)
        });
    }

    #[test]
    fn a_valid_second_entry_at_a_position_is_a_fork() {
        let (_d, node, a) = setup();
        let first_two = dump(node.store());
        let seq1 = node
            .store()
            .read(|c| crate::store::apply::entry_at(c, &a.id(), 1))
            .unwrap()
            .unwrap();
        // Another entry 2, chaining correctly from entry 1.
        let payload = post("other two").encode().unwrap();
        let fork = Entry::sign(&a.key, 2, Some(seq1.id()), a.ts, &payload);
        let inc = IncomingEntry {
            entry_bytes: fork.encode(),
            payload: Some(payload),
        };
        let report = node.ingest(vec![inc.clone()]).unwrap();
        assert_eq!(
            report,
            IngestReport {
                forks: 1,
                ..Default::default()
            }
        );
        assert!(node.profile(a.id()).unwrap().forked);
        // The first entry 2 stays.
        let feed = node.feed(a.id(), PageRequest::first(10)).unwrap();
        assert_eq!(feed.items[0].text.as_deref(), Some("two"));
        assert_ne!(first_two, dump(node.store()));
        // The same fork again is a duplicate.
        assert_eq!(
            node.ingest(vec![inc]).unwrap(),
            IngestReport {
                duplicates: 1,
                ..Default::default()
            }
        );
        // A forged fork (bad signature) is rejected, not recorded.
        let mut forged = Entry::sign(&a.key, 2, Some(seq1.id()), a.ts + 5, b"zz");
        forged.signature[3] ^= 1;
        let inc = IncomingEntry {
            entry_bytes: forged.encode(),
            payload: None,
        };
        assert_rejected(&node, vec![inc], 0, |r| {
            matches!(r, ValidationError::BadSignature { .. })
        });
    }

    #[test]
    fn chains_are_checked_within_the_batch() {
        let (_d, node) = node();
        let mut a = Author::new(7);
        let one = a.post("1").1;
        let two = a.post("2").1;
        // Out of order inside one batch: entry 2 before entry 1.
        assert_rejected(&node, vec![two.clone(), one.clone()], 0, |r| {
            matches!(r, ValidationError::SeqGap { .. })
        });
        assert_eq!(node.ingest(vec![one, two]).unwrap().accepted, 2);
    }

    #[test]
    fn entries_without_payload_are_stored_and_payloads_can_follow() {
        let (_d, node) = node();
        let mut a = Author::new(7);
        let (id, full) = a.post("later payload");
        let bare = IncomingEntry {
            entry_bytes: full.entry_bytes.clone(),
            payload: None,
        };
        assert_eq!(node.ingest(vec![bare]).unwrap().accepted, 1);
        assert!(
            node.feed(a.id(), PageRequest::first(5))
                .unwrap()
                .items
                .is_empty()
        );
        assert_eq!(node.ingest(vec![full]).unwrap().duplicates, 1);
        let feed = node.feed(a.id(), PageRequest::first(5)).unwrap();
        assert_eq!(feed.items[0].id, id);
    }

    #[test]
    fn blocked_authors_are_refused_quietly() {
        let (_d, node) = node();
        let mut a = Author::new(7);
        node.ingest(vec![a.post("before the block").1]).unwrap();
        node.block(a.id()).unwrap();
        // The block purged what we held of the feed.
        let held: i64 = node
            .store()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM entries WHERE author = ?1",
                    [a.id().as_bytes()],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(held, 0);
        let report = node.ingest(vec![a.post("after").1]).unwrap();
        assert_eq!(
            report,
            IngestReport {
                blocked: 1,
                ..Default::default()
            }
        );
        assert!(
            node.feed(a.id(), PageRequest::first(5))
                .unwrap()
                .items
                .is_empty()
        );
    }
}
