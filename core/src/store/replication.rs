//! Store queries the sync engine needs: the held range of each feed, ranges
//! of entries to serve, fork evidence, hosted feeds and new-row scans.
//!
//! Guarantees: everything here reads or writes inside the caller's
//! connection or transaction, and a deleted payload is never returned (the
//! entry is served without it).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::Result;
use crate::identity::id::{AuthorId, EntryId};
use crate::store::ingest::IncomingEntry;
use crate::store::{from_sql_int, to_sql_int};

/// What this node holds of one feed: the verified contiguous suffix
/// `[low ..= latest]`, and whether fork evidence exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FeedState {
    /// Newest held seq; 0 when nothing is held.
    pub latest: u64,
    /// Lowest held seq (1 once the feed is complete); 0 when nothing is held.
    pub low: u64,
    /// Fork evidence is stored for this feed.
    pub forked: bool,
}

/// The seq of the lowest held entry of `author`'s feed.
pub(crate) fn feed_low(conn: &Connection, author: &AuthorId) -> Result<Option<u64>> {
    let low: Option<i64> = conn
        .prepare_cached("SELECT low_seq FROM feeds WHERE author = ?1")?
        .query_row([author.as_bytes()], |r| r.get(0))
        .optional()?;
    Ok(low.map(from_sql_int))
}

/// Moves the low end of `author`'s held suffix to `seq`.
pub(crate) fn set_low(tx: &Transaction<'_>, author: &AuthorId, seq: u64) -> Result<()> {
    tx.prepare_cached("UPDATE feeds SET low_seq = ?2 WHERE author = ?1")?
        .execute(params![author.as_bytes(), to_sql_int(seq)?])?;
    Ok(())
}

/// The held range of one feed (all zero when nothing is held).
pub(crate) fn feed_state(conn: &Connection, author: &AuthorId) -> Result<FeedState> {
    let row: Option<(i64, i64, bool)> = conn
        .prepare_cached(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM entries WHERE author = ?1), low_seq, forked
             FROM feeds WHERE author = ?1",
        )?
        .query_row([author.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(
        row.map_or(FeedState::default(), |(latest, low, forked)| FeedState {
            latest: from_sql_int(latest),
            low: from_sql_int(low),
            forked,
        }),
    )
}

/// Every held feed with its range.
pub(crate) fn all_feed_states(conn: &Connection) -> Result<Vec<(AuthorId, FeedState)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.author, (SELECT COALESCE(MAX(e.seq), 0) FROM entries e WHERE e.author = f.author),
                f.low_seq, f.forked
         FROM feeds f",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, bool>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (a, latest, low, forked) = row?;
        out.push((
            AuthorId::from_slice(&a)?,
            FeedState {
                latest: from_sql_int(latest),
                low: from_sql_int(low),
                forked,
            },
        ));
    }
    Ok(out)
}

/// The main-chain entries of `author` with `from <= seq <= to`, ascending,
/// each with its payload if this node still holds it.
pub(crate) fn entries_range(
    conn: &Connection,
    author: &AuthorId,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, IncomingEntry)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, encoded, payload FROM entries
         WHERE author = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
    )?;
    let rows = stmt.query_map(
        params![author.as_bytes(), to_sql_int(from)?, to_sql_int(to)?],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, entry_bytes, payload) = row?;
        out.push((
            from_sql_int(seq),
            IncomingEntry {
                entry_bytes,
                payload,
            },
        ));
    }
    Ok(out)
}

/// One stored fork: (seq, stored entry bytes, conflicting entry bytes).
pub(crate) type ForkEvidence = (u64, Vec<u8>, Vec<u8>);

/// Fork evidence of `author`, by seq.
pub(crate) fn fork_evidence(conn: &Connection, author: &AuthorId) -> Result<Vec<ForkEvidence>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, stored_encoded, conflicting_encoded FROM forks WHERE author = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([author.as_bytes()], |r| {
        Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, stored, conflicting) = row?;
        out.push((from_sql_int(seq), stored, conflicting));
    }
    Ok(out)
}

/// Records that this node keeps `author`'s feed for others (idempotent).
pub(crate) fn host_feed(tx: &Transaction<'_>, author: &AuthorId, now_ms: u64) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO hosted_feeds (author, added_at) VALUES (?1, ?2)")?
        .execute(params![author.as_bytes(), to_sql_int(now_ms)?])?;
    Ok(())
}

/// Stops hosting `author`'s feed (what is stored stays until pruned).
pub(crate) fn unhost_feed(tx: &Transaction<'_>, author: &AuthorId) -> Result<bool> {
    let n = tx
        .prepare_cached("DELETE FROM hosted_feeds WHERE author = ?1")?
        .execute([author.as_bytes()])?;
    Ok(n > 0)
}

/// The feeds this node hosts for others, sorted.
pub(crate) fn hosted_feeds(conn: &Connection) -> Result<Vec<AuthorId>> {
    let mut stmt = conn.prepare_cached("SELECT author FROM hosted_feeds ORDER BY author")?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(AuthorId::from_slice(&row?)?);
    }
    Ok(out)
}

/// The highest rowid of `entries` (0 when empty).
pub(crate) fn max_entry_rowid(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(rowid), 0) FROM entries", [], |r| {
            r.get(0)
        })?,
    )
}

/// Entries stored after `rowid` (by any connection or process), oldest
/// first: (rowid, id, author, seq).
pub(crate) fn entries_after_rowid(
    conn: &Connection,
    rowid: i64,
    limit: u32,
) -> Result<Vec<(i64, EntryId, AuthorId, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT rowid, id, author, seq FROM entries WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![rowid, limit], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rowid, id, author, seq) = row?;
        out.push((
            rowid,
            EntryId::from_slice(&id)?,
            AuthorId::from_slice(&author)?,
            from_sql_int(seq),
        ));
    }
    Ok(out)
}

/// The payload type tag of a stored entry, once its payload was seen.
pub(crate) fn entry_tag(conn: &Connection, author: &AuthorId, seq: u64) -> Result<Option<u8>> {
    let tag: Option<Option<u8>> = conn
        .prepare_cached("SELECT tag FROM entries WHERE author = ?1 AND seq = ?2")?
        .query_row(params![author.as_bytes(), to_sql_int(seq)?], |r| r.get(0))
        .optional()?;
    Ok(tag.flatten())
}
