//! Writing one validated entry into the store: the `entries` row, the feed
//! tip, the payload and the decoded index rows it implies. Shared by ingest
//! (foreign entries) and publish (own entries), so both index identically.
//!
//! Every function here takes the caller's transaction; none commits.
//!
//! Order independence: derived state (follows, blocks, profiles) records the
//! seq that set it and only a higher seq overrides it, and a delete is
//! remembered even when its target is not stored yet, so the result does not
//! depend on the order in which entries (or their payloads) arrive.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::encoding::{Reader, Writer};
use crate::error::Result;
use crate::feed::{BlobRef, Entry, Payload};
use crate::identity::id::{AuthorId, BlobId, EntryId};
use crate::store::{from_sql_int, to_sql_int};

/// The newest entry of a stored feed.
#[derive(Clone, Debug)]
pub(crate) struct Tip {
    pub seq: u64,
    pub id: EntryId,
    /// The newest entry's timestamp (ms since the Unix epoch).
    pub timestamp_ms: u64,
}

/// What applying an entry changed beyond plain inserts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Effects {
    /// Content was removed (a delete applied, a blocked feed purged): the
    /// caller should truncate the WAL after committing.
    pub erased_content: bool,
    /// A follow or block relation changed (or a feed's were purged): the
    /// replication scope may have changed.
    pub graph_changed: bool,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.erased_content |= other.erased_content;
        self.graph_changed |= other.graph_changed;
    }
}

/// Brings the full-text index up to date with the `posts` table.
///
/// The index holds exactly the posts whose rowid is at most
/// `search_progress.indexed_through`; rows above it were stored since and
/// are indexed here by one `INSERT .. SELECT` (rowids only grow, see
/// [`purge_author`]). Why not index each post as it is stored:
///
/// - Ingest: inside a transaction every statement that may abort opens a
///   statement savepoint, and FTS5 writes its pending terms to disk as a new
///   index segment at each one; indexing post by post made one segment per
///   post (and the merges to match), a third of ingest time. A batch now
///   makes one segment.
/// - Publish: a segment, its structure record and the document size are
///   about three of the eleven pages a post's commit wrote, and every page
///   is paid for in the commit's fsync. Own posts wait for the next catch-up
///   instead: an ingested batch, a search ([`crate::Node::search`] catches up
///   first), a delete or block, or a publish that finds
///   [`OWN_POSTS_PER_INDEX_BATCH`] posts waiting. The text waits in
///   `posts.text`, where it is stored anyway, so a crash loses nothing and
///   the next catch-up indexes it.
///
/// Content erasure ([`apply_delete`], [`purge_author`]) catches up first:
/// FTS5 can only remove terms it has indexed. Returns how many posts were
/// indexed.
pub(crate) fn index_pending_posts(tx: &rusqlite::Connection) -> Result<usize> {
    let (through, newest) = search_index_bounds(tx)?;
    if newest <= through {
        return Ok(0);
    }
    let indexed = tx
        .prepare_cached(
            "INSERT INTO posts_fts (rowid, text)
             SELECT rowid, text FROM posts
             WHERE rowid > ?1 AND rowid <= ?2 AND deleted = 0 AND text IS NOT NULL
             ORDER BY rowid",
        )?
        .execute(params![through, newest])?;
    tx.prepare_cached("UPDATE search_progress SET indexed_through = ?1 WHERE id = 1")?
        .execute([newest])?;
    Ok(indexed)
}

/// How many own posts may wait for the full-text index before a publish
/// indexes them (see [`index_pending_posts`]): one index segment per this
/// many posts instead of one per post.
pub(crate) const OWN_POSTS_PER_INDEX_BATCH: i64 = 64;

/// `(indexed_through, newest post rowid)`: the posts in between are not in
/// the full-text index yet.
pub(crate) fn search_index_bounds(conn: &rusqlite::Connection) -> Result<(i64, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT indexed_through, COALESCE((SELECT MAX(rowid) FROM posts), 0)
             FROM search_progress WHERE id = 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// The tip of `author`'s feed, if any of it is stored.
pub(crate) fn feed_tip(tx: &rusqlite::Connection, author: &AuthorId) -> Result<Option<Tip>> {
    // The highest stored seq (schema 9: `entries` holds the main chain of
    // the held suffix only), found by the (author, seq) index.
    let mut stmt = tx.prepare_cached(
        "SELECT seq, id, timestamp FROM entries WHERE author = ?1 ORDER BY seq DESC LIMIT 1",
    )?;
    let tip = stmt
        .query_row([author.as_bytes()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    Ok(match tip {
        Some((seq, id, timestamp)) => Some(Tip {
            seq: from_sql_int(seq),
            id: EntryId::from_slice(&id)?,
            timestamp_ms: from_sql_int(timestamp),
        }),
        None => None,
    })
}

/// The stored (main-chain) entry of `author` at `seq`, decoded.
pub(crate) fn entry_at(
    tx: &rusqlite::Connection,
    author: &AuthorId,
    seq: u64,
) -> Result<Option<Entry>> {
    let mut stmt =
        tx.prepare_cached("SELECT encoded FROM entries WHERE author = ?1 AND seq = ?2")?;
    let bytes: Option<Vec<u8>> = stmt
        .query_row(params![author.as_bytes(), to_sql_int(seq)?], |r| r.get(0))
        .optional()?;
    Ok(match bytes {
        Some(b) => Some(Entry::decode(&b)?),
        None => None,
    })
}

/// Whether `author`'s feed is blocked by the local user `me`.
pub(crate) fn is_blocked(
    tx: &rusqlite::Connection,
    me: Option<&AuthorId>,
    author: &AuthorId,
) -> Result<bool> {
    let Some(me) = me else { return Ok(false) };
    if me == author {
        return Ok(false);
    }
    let mut stmt =
        tx.prepare_cached("SELECT 1 FROM blocks WHERE author = ?1 AND target = ?2 AND active = 1")?;
    Ok(stmt.exists([me.as_bytes(), author.as_bytes()])?)
}

/// Inserts a validated entry that extends its feed (seq = tip + 1), moves the
/// feed tip, and applies the payload if given. `me` is the local identity
/// (its blocks purge feeds).
pub(crate) fn insert_entry(
    tx: &Transaction<'_>,
    entry: &Entry,
    id: &EntryId,
    encoded: &[u8],
    payload: Option<(&[u8], &Payload)>,
    me: Option<&AuthorId>,
) -> Result<Effects> {
    let seq = to_sql_int(entry.seq)?;
    let (rowid, tombstoned) = insert_entry_row(tx, entry, id, encoded, payload)?;
    // The tip moves with the new `entries` row; `feeds` only learns of a
    // feed's first stored entry, whose seq is the low end of the held
    // suffix (1, or a sync head's); an existing row is left unwritten.
    tx.prepare_cached("INSERT OR IGNORE INTO feeds (author, low_seq) VALUES (?1, ?2)")?
        .execute(params![entry.author.as_bytes(), seq])?;
    match payload {
        Some((_, decoded)) => index_payload(tx, entry, rowid, id, decoded, tombstoned, me),
        None => Ok(Effects::default()),
    }
}

/// Inserts a validated entry below the held suffix of its feed (sync's
/// backfill): the `entries` row and the payload's index rows, without moving
/// the feed tip.
pub(crate) fn insert_backfilled_entry(
    tx: &Transaction<'_>,
    entry: &Entry,
    id: &EntryId,
    encoded: &[u8],
    payload: Option<(&[u8], &Payload)>,
    me: Option<&AuthorId>,
) -> Result<Effects> {
    let (rowid, tombstoned) = insert_entry_row(tx, entry, id, encoded, payload)?;
    match payload {
        Some((_, decoded)) => index_payload(tx, entry, rowid, id, decoded, tombstoned, me),
        None => Ok(Effects::default()),
    }
}

/// Inserts the `entries` row of a validated entry, with its payload bytes
/// unless the author already deleted the entry (a delete that arrived
/// first). Returns the row's rowid (its post, if it is one, shares it) and
/// whether the entry had been deleted so.
fn insert_entry_row(
    tx: &Transaction<'_>,
    entry: &Entry,
    id: &EntryId,
    encoded: &[u8],
    payload: Option<(&[u8], &Payload)>,
) -> Result<(i64, bool)> {
    let tombstoned = payload.is_some() && is_tombstoned(tx, &entry.author, id)?;
    let kept = payload.filter(|_| !tombstoned).map(|(bytes, _)| bytes);
    tx.prepare_cached(
        "INSERT INTO entries (id, author, seq, prev, timestamp, encoded, payload_len, payload_hash, tag, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id.as_bytes(),
        entry.author.as_bytes(),
        to_sql_int(entry.seq)?,
        entry.prev.as_ref().map(|p| p.as_bytes().as_slice()),
        to_sql_int(entry.timestamp_ms)?,
        encoded,
        entry.payload_len,
        entry.payload_hash.as_slice(),
        payload.map(|(_, p)| p.tag()),
        kept,
    ])?;
    Ok((tx.last_insert_rowid(), tombstoned))
}

/// Stores a fork: a second validly signed entry for an existing
/// (author, seq). The stored entry stays; the feed is flagged.
pub(crate) fn record_fork(
    tx: &Transaction<'_>,
    stored: &Entry,
    conflicting: &Entry,
    conflicting_id: &EntryId,
) -> Result<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO forks (conflicting_id, author, seq, stored_encoded, conflicting_encoded, detected_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            conflicting_id.as_bytes(),
            conflicting.author.as_bytes(),
            to_sql_int(conflicting.seq)?,
            stored.encode(),
            conflicting.encode(),
            to_sql_int(crate::store::now_ms())?,
        ])?;
    tx.prepare_cached("UPDATE feeds SET forked = 1 WHERE author = ?1")?
        .execute([conflicting.author.as_bytes()])?;
    Ok(inserted > 0)
}

/// Attaches a payload that arrives after its entry was stored without one
/// (a duplicate entry that now carries the payload). Returns `None` if the
/// entry already had its payload (or had it deleted) and nothing changed.
pub(crate) fn attach_late_payload(
    tx: &Transaction<'_>,
    entry: &Entry,
    id: &EntryId,
    bytes: &[u8],
    payload: &Payload,
    me: Option<&AuthorId>,
) -> Result<Option<Effects>> {
    let tombstoned = is_tombstoned(tx, &entry.author, id)?;
    // `tag` is set exactly when a payload was applied once.
    let rowid: Option<i64> = tx
        .prepare_cached(
            "UPDATE entries SET tag = ?2, payload = ?3 WHERE id = ?1 AND tag IS NULL RETURNING rowid",
        )?
        .query_row(
            params![id.as_bytes(), payload.tag(), (!tombstoned).then_some(bytes)],
            |r| r.get(0),
        )
        .optional()?;
    let Some(rowid) = rowid else {
        return Ok(None);
    };
    let effects = index_payload(tx, entry, rowid, id, payload, tombstoned, me)?;
    // The post takes its entry's rowid, which may be one the search index
    // already counts as indexed: then it enters the index here.
    if let Payload::Post(post) = payload
        && !tombstoned
        && rowid <= search_index_bounds(tx)?.0
    {
        tx.prepare_cached("INSERT INTO posts_fts (rowid, text) VALUES (?1, ?2)")?
            .execute(params![rowid, post.text])?;
    }
    Ok(Some(effects))
}

/// Whether a delete by the target's own author exists for `target`.
fn is_tombstoned(tx: &Transaction<'_>, author: &AuthorId, target: &EntryId) -> Result<bool> {
    let mut stmt = tx.prepare_cached("SELECT 1 FROM deletes WHERE target = ?1 AND author = ?2")?;
    Ok(stmt.exists([target.as_bytes(), author.as_bytes()])?)
}

/// Writes the index rows a stored entry's payload implies. For an entry its
/// author deleted (`tombstoned`) only the structural tombstone is indexed.
/// A post's text enters the full-text index at the next
/// [`index_pending_posts`].
fn index_payload(
    tx: &Transaction<'_>,
    entry: &Entry,
    rowid: i64,
    id: &EntryId,
    payload: &Payload,
    tombstoned: bool,
    me: Option<&AuthorId>,
) -> Result<Effects> {
    let author = entry.author.as_bytes();
    let seq = to_sql_int(entry.seq)?;
    let ts = to_sql_int(entry.timestamp_ms)?;
    let mut effects = Effects::default();
    match payload {
        Payload::Post(post) => {
            if tombstoned {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO posts (rowid, entry_id, author, seq, ts, reply_to, root, deleted)
                     VALUES (?7, ?1, ?2, ?3, ?4, ?5, ?6, 1)",
                )?
                .execute(params![
                    id.as_bytes(),
                    author,
                    seq,
                    ts,
                    post.reply_to.as_ref().map(|e| e.as_bytes().as_slice()),
                    post.root.as_ref().map(|e| e.as_bytes().as_slice()),
                    rowid,
                ])?;
                return Ok(effects);
            }
            let mentions: Vec<u8> = post
                .mentions
                .iter()
                .flat_map(|m| m.as_bytes().iter().copied())
                .collect();
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO posts (rowid, entry_id, author, seq, ts, text, reply_to, root, mentions, attachments)
                     VALUES (?10, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    id.as_bytes(),
                    author,
                    seq,
                    ts,
                    post.text,
                    post.reply_to.as_ref().map(|e| e.as_bytes().as_slice()),
                    post.root.as_ref().map(|e| e.as_bytes().as_slice()),
                    (!mentions.is_empty()).then_some(mentions),
                    encode_attachments(&post.attachments),
                    rowid,
                ])?;
            if inserted == 0 {
                return Ok(effects);
            }
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO mentions (entry_id, target, author, ts) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for m in &post.mentions {
                stmt.execute(params![id.as_bytes(), m.as_bytes(), author, ts])?;
            }
        }
        Payload::Reaction { target, emoji } if !tombstoned => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO reactions (entry_id, author, target, emoji, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id.as_bytes(), author, target.as_bytes(), emoji, ts])?;
        }
        Payload::Reaction { .. } => {}
        // Graph and profile state is derived regardless of deletes: an
        // author undoes a follow with an unfollow, not by deleting it.
        Payload::Follow(target) | Payload::Unfollow(target) => {
            let active = matches!(payload, Payload::Follow(_));
            effects.graph_changed |=
                set_relation(tx, "follows", &entry.author, target, active, seq)?;
        }
        Payload::Block(target) | Payload::Unblock(target) => {
            let active = matches!(payload, Payload::Block(_));
            let changed = set_relation(tx, "blocks", &entry.author, target, active, seq)?;
            effects.graph_changed |= changed;
            if changed && active && me == Some(&entry.author) && target != &entry.author {
                // "A blocked feed is never stored": drop what we already hold.
                effects.merge(purge_author(tx, target)?);
            }
        }
        Payload::Profile(p) => {
            tx.prepare_cached(
                "INSERT INTO profiles (author, seq, name, about, avatar) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (author) DO UPDATE SET seq = excluded.seq, name = excluded.name,
                     about = excluded.about, avatar = excluded.avatar
                 WHERE excluded.seq > profiles.seq",
            )?
            .execute(params![
                author,
                seq,
                p.name,
                p.about,
                p.avatar.as_ref().map(|a| encode_attachments(std::slice::from_ref(a))),
            ])?;
        }
        Payload::Delete(target) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO deletes (delete_id, author, target) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id.as_bytes(), author, target.as_bytes()])?;
            effects.merge(apply_delete(tx, &entry.author, target)?);
        }
        Payload::EncryptionKey(k) => {
            // Only keys whose binding verifies are usable; others are kept
            // in the feed (it is signed) but not indexed.
            let ok = crate::identity::binding::verify_x25519_binding(
                &entry.author,
                &k.x25519_public,
                k.created_at_ms,
                &k.binding_signature,
            )
            .is_ok();
            if ok {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO encryption_keys (author, seq, x25519, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![author, seq, k.x25519_public.as_slice(), to_sql_int(k.created_at_ms)?])?;
            }
        }
        // Prekey bundles are read by `messaging` straight from `entries`.
        Payload::PrekeyBundle(_) => {}
        // Newer payload types: stored and forwarded, not indexed.
        Payload::Unknown { .. } => {}
    }
    Ok(effects)
}

/// Sets a follow/block relation if `seq` is newer than the one that set the
/// current state. Returns whether the state row was written.
fn set_relation(
    tx: &Transaction<'_>,
    table: &str,
    author: &AuthorId,
    target: &AuthorId,
    active: bool,
    seq: i64,
) -> Result<bool> {
    // `table` is one of two literals from this module, never user input.
    let sql = format!(
        "INSERT INTO {table} (author, target, active, seq) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (author, target) DO UPDATE SET active = excluded.active, seq = excluded.seq
         WHERE excluded.seq > {table}.seq"
    );
    let n = tx.prepare_cached(&sql)?.execute(params![
        author.as_bytes(),
        target.as_bytes(),
        active,
        seq
    ])?;
    Ok(n > 0)
}

/// Applies `author`'s delete of `target` if the target is stored and is
/// `author`'s own: removes the payload, the post text, its FTS terms,
/// mentions and a reaction. The entry itself stays, so the chain remains
/// verifiable, and the post row stays as a tombstone.
pub(crate) fn apply_delete(
    tx: &Transaction<'_>,
    author: &AuthorId,
    target: &EntryId,
) -> Result<Effects> {
    let target_author: Option<Vec<u8>> = tx
        .prepare_cached("SELECT author FROM entries WHERE id = ?1")?
        .query_row([target.as_bytes()], |r| r.get(0))
        .optional()?;
    if target_author.as_deref() != Some(author.as_bytes().as_slice()) {
        // Not here yet (the delete row waits for it) or not the author's own.
        return Ok(Effects::default());
    }
    erase_entry_content(tx, target)?;
    Ok(Effects {
        erased_content: true,
        graph_changed: false,
    })
}

/// Removes every decoded trace of an entry's payload, keeping the entry row
/// and a post tombstone.
fn erase_entry_content(tx: &Transaction<'_>, target: &EntryId) -> Result<()> {
    let t = target.as_bytes();
    // FTS5 can only remove terms it has indexed.
    index_pending_posts(tx)?;
    tx.prepare_cached("UPDATE entries SET payload = NULL WHERE id = ?1 AND payload IS NOT NULL")?
        .execute([t])?;
    let post: Option<(i64, bool)> = tx
        .prepare_cached(
            "SELECT p.rowid, p.deleted FROM entries e JOIN posts p ON p.rowid = e.rowid
             WHERE e.id = ?1",
        )?
        .query_row([t], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((rowid, deleted)) = post
        && !deleted
    {
        // Must run while posts.text still holds the indexed text: FTS5 reads
        // it from the content table to find the terms, and 'secure-delete'
        // then erases them from the index pages.
        tx.prepare_cached("DELETE FROM posts_fts WHERE rowid = ?1")?
            .execute([rowid])?;
        tx.prepare_cached(
            "UPDATE posts SET text = NULL, mentions = NULL, attachments = NULL, deleted = 1 WHERE rowid = ?1",
        )?
        .execute([rowid])?;
    }
    tx.prepare_cached("DELETE FROM mentions WHERE entry_id = ?1")?
        .execute([t])?;
    tx.prepare_cached("DELETE FROM reactions WHERE entry_id = ?1")?
        .execute([t])?;
    Ok(())
}

/// Removes everything stored of `author`'s feed: entries and payloads, index
/// rows, FTS terms, fork evidence and the state the feed derived. Used when
/// the local user blocks `author`.
pub(crate) fn purge_author(tx: &Transaction<'_>, author: &AuthorId) -> Result<Effects> {
    let a = author.as_bytes();
    // FTS5 can only remove terms it has indexed.
    index_pending_posts(tx)?;
    {
        let mut rows = tx.prepare_cached(
            "SELECT p.rowid FROM entries e JOIN posts p ON p.rowid = e.rowid
                 WHERE e.author = ?1 AND p.deleted = 0",
        )?;
        let rowids: Vec<i64> = rows
            .query_map([a], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        // Before the posts rows go (see erase_entry_content).
        let mut del = tx.prepare_cached("DELETE FROM posts_fts WHERE rowid = ?1")?;
        for rowid in rowids {
            del.execute([rowid])?;
        }
    }
    for sql in [
        "DELETE FROM posts WHERE rowid IN (SELECT rowid FROM entries WHERE author = ?1)",
        "DELETE FROM feeds WHERE author = ?1",
        "DELETE FROM forks WHERE author = ?1",
        "DELETE FROM follows WHERE author = ?1",
        "DELETE FROM blocks WHERE author = ?1",
        "DELETE FROM profiles WHERE author = ?1",
        "DELETE FROM encryption_keys WHERE author = ?1",
        // With their payloads; cascades to mentions, reactions and deletes.
        "DELETE FROM entries WHERE author = ?1",
    ] {
        tx.prepare_cached(sql)?.execute([a])?;
    }
    // The purged rows may have been the newest: the next post then reuses
    // a rowid at or below the old watermark, which must not count as
    // indexed. Everything left is indexed, so the watermark drops to it.
    tx.prepare_cached(
        "UPDATE search_progress SET indexed_through =
             MIN(indexed_through, COALESCE((SELECT MAX(rowid) FROM posts), 0)) WHERE id = 1",
    )?
    .execute([])?;
    Ok(Effects {
        erased_content: true,
        graph_changed: true,
    })
}

/// Store-private encoding of attachment lists: u8 count, then per blob
/// 32-byte id, u64 size, u8-length mime. `None` for an empty list.
pub(crate) fn encode_attachments(list: &[BlobRef]) -> Option<Vec<u8>> {
    if list.is_empty() {
        return None;
    }
    let mut w = Writer::with_capacity(1 + list.len() * 48);
    w.u8(u8::try_from(list.len()).unwrap_or(u8::MAX));
    for b in list.iter().take(usize::from(u8::MAX)) {
        let mime = &b.mime.as_bytes()[..b.mime.len().min(usize::from(u8::MAX))];
        w.bytes(b.id.as_bytes())
            .u64(b.size)
            .u8(mime.len() as u8)
            .bytes(mime);
    }
    Some(w.into_bytes())
}

/// Inverse of [`encode_attachments`]; an unreadable value yields an empty list
/// (it was written by this module, so that would mean a corrupted file).
pub(crate) fn decode_attachments(bytes: Option<&[u8]>) -> Vec<BlobRef> {
    let Some(bytes) = bytes else {
        return Vec::new();
    };
    let read = || -> Result<Vec<BlobRef>, crate::encoding::DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.u8("attachments")?;
        let mut out = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let id = BlobId::from_bytes(r.array("blob id")?);
            let size = r.u64("blob size")?;
            let len = r.u8("mime length")?;
            let mime = r.text(usize::from(len), usize::from(u8::MAX), "mime")?;
            out.push(BlobRef { id, size, mime });
        }
        r.finish()?;
        Ok(out)
    };
    read().unwrap_or_default()
}

/// Splits a stored concatenation of 32-byte author ids.
pub(crate) fn decode_mentions(bytes: Option<&[u8]>) -> Vec<AuthorId> {
    bytes
        .map(|b| {
            b.chunks_exact(32)
                .filter_map(|c| AuthorId::from_slice(c).ok())
                .collect()
        })
        .unwrap_or_default()
}
