//! The social graph as derived from follow/unfollow and block/unblock
//! entries: whom an author follows, who follows them, and the set of feeds
//! within N follow hops of the local user — the replication scope sync uses.

use std::collections::HashSet;

use rusqlite::Connection;

use crate::error::Result;
use crate::identity::id::AuthorId;

fn authors(conn: &Connection, sql: &str, author: &AuthorId) -> Result<Vec<AuthorId>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([author.as_bytes()], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(AuthorId::from_slice(&row?)?);
    }
    Ok(out)
}

/// Authors `author` currently follows.
pub(crate) fn follows(conn: &Connection, author: &AuthorId) -> Result<Vec<AuthorId>> {
    authors(
        conn,
        "SELECT target FROM follows WHERE author = ?1 AND active = 1 ORDER BY target",
        author,
    )
}

/// Authors known to this node that currently follow `author`.
pub(crate) fn followers(conn: &Connection, author: &AuthorId) -> Result<Vec<AuthorId>> {
    authors(
        conn,
        "SELECT author FROM follows WHERE target = ?1 AND active = 1 ORDER BY author",
        author,
    )
}

/// Authors the local user `me` currently blocks.
pub(crate) fn blocked_by(conn: &Connection, me: &AuthorId) -> Result<Vec<AuthorId>> {
    authors(
        conn,
        "SELECT target FROM blocks WHERE author = ?1 AND active = 1 ORDER BY target",
        me,
    )
}

/// Every feed within `hops` follow hops of `me`: `me` itself (hop 0), whom
/// `me` follows (hop 1), whom they follow (hop 2), and so on. Authors `me`
/// blocks are excluded everywhere: they are neither included nor traversed,
/// so following only goes "through" authors the user accepts. Other
/// authors' blocks do not matter. Sorted, `me` first.
pub(crate) fn feeds_within_hops(
    conn: &Connection,
    me: &AuthorId,
    hops: u32,
) -> Result<Vec<AuthorId>> {
    let blocked: HashSet<AuthorId> = blocked_by(conn, me)?.into_iter().collect();
    let mut seen: HashSet<AuthorId> = HashSet::from([*me]);
    let mut frontier = vec![*me];
    for _ in 0..hops {
        let mut next = Vec::new();
        for author in &frontier {
            for target in follows(conn, author)? {
                if !blocked.contains(&target) && seen.insert(target) {
                    next.push(target);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    seen.remove(me);
    let mut out: Vec<AuthorId> = seen.into_iter().collect();
    out.sort();
    out.insert(0, *me);
    Ok(out)
}
