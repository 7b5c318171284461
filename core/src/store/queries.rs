//! Read queries behind the app's views: timelines, feeds, threads,
//! notifications, search, profiles and reactions. All lists are newest first
//! and paginated by `(timestamp, entry id)` cursors (see [`super::cursor`]).
//!
//! Every post list leaves out entries the local user hid and authors they
//! block (blocked feeds are also purged, so that filter is belt and braces).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::feed::BlobRef;
use crate::identity::id::{AuthorId, EntryId};
use crate::store::apply::{decode_attachments, decode_mentions};
use crate::store::cursor::{Page, PageRequest};
use crate::store::from_sql_int;

/// A post as shown in a list or thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostView {
    /// The post's entry id.
    pub id: EntryId,
    /// Who wrote it.
    pub author: AuthorId,
    /// The author's current display name, if they published a profile.
    pub author_name: Option<String>,
    /// Position in the author's feed.
    pub seq: u64,
    /// When the author wrote it (ms since the Unix epoch, author's clock).
    pub timestamp_ms: u64,
    /// The text; `None` when the author deleted the post.
    pub text: Option<String>,
    /// The post this replies to.
    pub reply_to: Option<EntryId>,
    /// The root of its thread.
    pub root: Option<EntryId>,
    /// Mentioned authors.
    pub mentions: Vec<AuthorId>,
    /// Attachments (blobs are fetched separately by id).
    pub attachments: Vec<BlobRef>,
    /// `true` when the author deleted it: only this placeholder remains.
    pub deleted: bool,
    /// Reaction counts, `(emoji, number of distinct reacting authors)`,
    /// most frequent first.
    pub reactions: Vec<(String, u64)>,
}

/// Why a notification was raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationKind {
    /// Someone replied to one of your posts.
    Reply,
    /// Someone mentioned you in a post.
    Mention,
    /// Someone reacted to one of your entries.
    Reaction {
        /// The reaction.
        emoji: String,
    },
}

/// Something another author did that concerns you.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// What happened.
    pub kind: NotificationKind,
    /// The entry that caused it (the reply, the mentioning post, the reaction).
    pub entry: EntryId,
    /// Its author.
    pub from: AuthorId,
    /// What it is about: your post that was replied or reacted to; for a
    /// mention, the mentioning post itself.
    pub subject: EntryId,
    /// When it was written (author's clock).
    pub timestamp_ms: u64,
}

/// An author's profile and graph summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileView {
    /// The author.
    pub author: AuthorId,
    /// Latest display name, `None` if no profile was published (or it is empty).
    pub name: Option<String>,
    /// Latest about text, `None` if none.
    pub about: Option<String>,
    /// Latest avatar.
    pub avatar: Option<BlobRef>,
    /// How many authors this author currently follows.
    pub following: u64,
    /// How many authors known to this node currently follow this author.
    pub followers: u64,
    /// `true` if this node holds proof that the author's feed forked (two
    /// different signed entries at the same position).
    pub forked: bool,
}

/// Columns selected for a post, in the order [`post_from_row`] reads them.
const POST_COLUMNS: &str = "p.entry_id, p.author, p.seq, p.ts, p.text, p.reply_to, p.root, p.mentions, \
     p.attachments, p.deleted, (SELECT name FROM profiles pr WHERE pr.author = p.author)";

/// Filter shared by all post lists: not hidden, author not blocked by ?3.
const VISIBLE: &str = "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.entry_id = p.entry_id) \
     AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.author = ?3 AND b.target = p.author AND b.active = 1)";

fn id_col<T>(row: &Row<'_>, i: usize, make: fn([u8; 32]) -> T) -> rusqlite::Result<T> {
    let bytes: Vec<u8> = row.get(i)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(make)
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, bytes.len() as i64))
}

fn opt_entry_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<EntryId>> {
    let bytes: Option<Vec<u8>> = row.get(i)?;
    Ok(bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .map(EntryId::from_bytes))
}

fn post_from_row(row: &Row<'_>) -> rusqlite::Result<PostView> {
    let mentions: Option<Vec<u8>> = row.get(7)?;
    let attachments: Option<Vec<u8>> = row.get(8)?;
    let name: Option<String> = row.get(10)?;
    Ok(PostView {
        id: id_col(row, 0, EntryId::from_bytes)?,
        author: id_col(row, 1, AuthorId::from_bytes)?,
        author_name: name.filter(|n| !n.is_empty()),
        seq: from_sql_int(row.get(2)?),
        timestamp_ms: from_sql_int(row.get(3)?),
        text: row.get(4)?,
        reply_to: opt_entry_col(row, 5)?,
        root: opt_entry_col(row, 6)?,
        mentions: decode_mentions(mentions.as_deref()),
        attachments: decode_attachments(attachments.as_deref()),
        deleted: row.get(9)?,
        reactions: Vec::new(),
    })
}

/// Fills in reaction counts for each post.
///
/// One query per [`REACTION_CHUNK`] posts rather than one per post: on a
/// page of 50 that is what keeps hydration small next to the page scan.
fn hydrate(conn: &Connection, posts: &mut [PostView]) -> Result<()> {
    let sql = reaction_chunk_sql();
    let mut stmt = conn.prepare_cached(&sql)?;
    for chunk in posts.chunks_mut(REACTION_CHUNK) {
        // Unused slots repeat the first id; duplicates in IN are harmless.
        let ids: Vec<&[u8; 32]> = (0..REACTION_CHUNK)
            .map(|i| chunk.get(i).unwrap_or(&chunk[0]).id.as_bytes())
            .collect();
        let mut counts: HashMap<[u8; 32], Vec<(String, u64)>> = HashMap::new();
        let rows = stmt.query_map(rusqlite::params_from_iter(ids), |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                from_sql_int(r.get(2)?),
            ))
        })?;
        for row in rows {
            let (target, emoji, n) = row?;
            if let Ok(target) = <[u8; 32]>::try_from(target.as_slice()) {
                counts.entry(target).or_default().push((emoji, n));
            }
        }
        for post in chunk.iter_mut() {
            post.reactions = counts.remove(post.id.as_bytes()).unwrap_or_default();
        }
    }
    Ok(())
}

/// Posts whose reactions one hydration query fetches.
const REACTION_CHUNK: usize = 50;

fn reaction_chunk_sql() -> String {
    let marks: Vec<String> = (1..=REACTION_CHUNK).map(|i| format!("?{i}")).collect();
    format!(
        "SELECT target, emoji, COUNT(DISTINCT author) AS n FROM reactions
         WHERE target IN ({}) GROUP BY target, emoji ORDER BY target, n DESC, emoji",
        marks.join(", ")
    )
}

/// Runs a post-list query whose parameters are ?1 cursor ts, ?2 cursor id,
/// ?3 the local user, ?4 limit + 1, then `extra` as ?5, ?6...
fn post_page(
    conn: &Connection,
    sql: &str,
    me: &AuthorId,
    page: &PageRequest,
    extra: &[&dyn rusqlite::ToSql],
) -> Result<Page<PostView>> {
    let (limit, ts, id) = page.bounds()?;
    let mut stmt = conn.prepare_cached(sql)?;
    let fetch = limit + 1;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&ts, &id, me.as_bytes(), &fetch];
    args.extend_from_slice(extra);
    let items: Vec<PostView> = stmt
        .query_map(args.as_slice(), post_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut page = Page::from_overfetch(items, limit, |p| (p.timestamp_ms, p.id));
    hydrate(conn, &mut page.items)?;
    Ok(page)
}

/// The home timeline: posts by the local user and the authors they follow,
/// newest first.
pub(crate) fn timeline(
    conn: &Connection,
    me: &AuthorId,
    page: &PageRequest,
) -> Result<Page<PostView>> {
    // Scans posts_time newest first; the author test is answered from the
    // index (it holds `author`) plus one follows lookup, so a page costs a
    // bounded number of index steps however big the store is.
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts p INDEXED BY posts_time
         WHERE (p.ts, p.entry_id) < (?1, ?2)
           AND (p.author = ?3 OR EXISTS (SELECT 1 FROM follows f
                WHERE f.author = ?3 AND f.target = p.author AND f.active = 1))
           AND {VISIBLE}
         ORDER BY p.ts DESC, p.entry_id DESC LIMIT ?4"
    );
    post_page(conn, &sql, me, page, &[])
}

/// The raw SQL the home timeline is built on, without hydration: the
/// benchmark's baseline. Returns the page's entry ids.
#[doc(hidden)]
pub fn raw_timeline_ids(conn: &Connection, me: &AuthorId, limit: u32) -> Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.entry_id, p.text FROM posts p INDEXED BY posts_time
         WHERE (p.author = ?1 OR EXISTS (SELECT 1 FROM follows f
                WHERE f.author = ?1 AND f.target = p.author AND f.active = 1))
         ORDER BY p.ts DESC, p.entry_id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![me.as_bytes(), limit], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
    Ok(rows)
}

/// One author's posts, newest first: in feed order, read backwards along
/// the entries (author, seq) index (a post shares its entry's rowid). A chain's timestamps never go back, so
/// this is newest first; among posts of the same millisecond it is the
/// order the author wrote them. The cursor's entry gives the seq to
/// continue below.
pub(crate) fn feed(
    conn: &Connection,
    me: &AuthorId,
    author: &AuthorId,
    page: &PageRequest,
) -> Result<Page<PostView>> {
    let below_seq: i64 = match &page.before {
        None => i64::MAX,
        Some(cursor) => {
            let (_, id) = cursor.position();
            conn.prepare_cached("SELECT seq FROM entries WHERE id = ?1 AND author = ?2")?
                .query_row(params![id.as_bytes(), author.as_bytes()], |r| r.get(0))
                .optional()?
                .ok_or_else(|| {
                    Error::InvalidInput("this cursor does not come from this author's feed".into())
                })?
        }
    };
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM entries e JOIN posts p ON p.rowid = e.rowid
         WHERE e.author = ?5 AND e.seq < ?6 AND {VISIBLE}
         ORDER BY e.seq DESC LIMIT ?4"
    );
    post_page(conn, &sql, me, page, &[author.as_bytes(), &below_seq])
}

/// A thread: the root post, then every reply in it, oldest first.
pub(crate) fn thread(conn: &Connection, me: &AuthorId, root: &EntryId) -> Result<Vec<PostView>> {
    let root_sql = format!(
        "SELECT {POST_COLUMNS} FROM entries e JOIN posts p ON p.rowid = e.rowid
         WHERE e.id = ?1"
    );
    let mut out: Vec<PostView> = match conn
        .prepare_cached(&root_sql)?
        .query_row([root.as_bytes()], post_from_row)
        .optional()?
    {
        Some(p) => vec![p],
        None => return Err(Error::NotFound(format!("post {root}"))),
    };
    // Replies name the thread root; replies from clients that only set
    // reply_to are found through that. Ties in time keep each author's feed
    // order, so a reply written in the same millisecond as its parent by the
    // same author never sorts before it.
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts p WHERE p.rowid IN (
             SELECT rowid FROM posts WHERE root = ?1
             UNION SELECT rowid FROM posts WHERE reply_to = ?1)
           AND p.entry_id != ?1 AND {VISIBLE}
         ORDER BY p.ts, p.author, p.seq, p.entry_id"
    );
    let mut stmt = conn.prepare_cached(&sql.replace("?3", "?2"))?;
    let replies = stmt
        .query_map(params![root.as_bytes(), me.as_bytes()], post_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    out.extend(replies);
    hydrate(conn, &mut out)?;
    Ok(out)
}

/// Replies to my posts, mentions of me and reactions to my entries, newest
/// first. A reply that also mentions me is reported once, as a reply.
pub(crate) fn notifications(
    conn: &Connection,
    me: &AuthorId,
    page: &PageRequest,
) -> Result<Page<Notification>> {
    let (limit, ts, id) = page.bounds()?;
    let not_blocked = |alias: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM blocks b WHERE b.author = ?3 AND b.target = {alias}.author AND b.active = 1)"
        )
    };
    let sql = format!(
        "SELECT kind, entry_id, author, subject, ts, emoji FROM (
             SELECT 0 AS kind, r.entry_id, r.author, r.reply_to AS subject, r.ts, NULL AS emoji
               FROM entries my JOIN posts mine ON mine.rowid = my.rowid
                    JOIN posts r ON r.reply_to = mine.entry_id
              WHERE my.author = ?3 AND r.author != ?3 AND r.deleted = 0 AND {nb_r}
             UNION ALL
             SELECT 1, m.entry_id, m.author, m.entry_id, m.ts, NULL
               FROM mentions m
              WHERE m.target = ?3 AND m.author != ?3 AND {nb_m}
                AND NOT EXISTS (SELECT 1 FROM entries er
                                   JOIN posts r ON r.rowid = er.rowid
                                   JOIN entries parent ON parent.id = r.reply_to
                                   JOIN posts mine ON mine.rowid = parent.rowid
                                 WHERE er.id = m.entry_id AND parent.author = ?3)
             UNION ALL
             SELECT 2, x.entry_id, x.author, x.target, x.ts, x.emoji
               FROM entries mine JOIN reactions x ON x.target = mine.id
              WHERE mine.author = ?3 AND x.author != ?3 AND {nb_x}
         ) AS n
         WHERE (n.ts, n.entry_id) < (?1, ?2)
           AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.entry_id = n.entry_id)
         ORDER BY n.ts DESC, n.entry_id DESC LIMIT ?4",
        nb_r = not_blocked("r"),
        nb_m = not_blocked("m"),
        nb_x = not_blocked("x"),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let items = stmt
        .query_map(
            params![ts, id.as_slice(), me.as_bytes(), limit + 1],
            |row| {
                let kind = match row.get::<_, i64>(0)? {
                    0 => NotificationKind::Reply,
                    1 => NotificationKind::Mention,
                    _ => NotificationKind::Reaction {
                        emoji: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    },
                };
                Ok(Notification {
                    kind,
                    entry: id_col(row, 1, EntryId::from_bytes)?,
                    from: id_col(row, 2, AuthorId::from_bytes)?,
                    subject: id_col(row, 3, EntryId::from_bytes)?,
                    timestamp_ms: from_sql_int(row.get(4)?),
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, limit, |n| {
        (n.timestamp_ms, n.entry)
    }))
}

/// Turns the user's search text into an FTS5 query that cannot be a syntax
/// error: every whitespace-separated word becomes a quoted phrase (inner
/// quotes doubled), and the phrases are ANDed.
pub(crate) fn fts_query(input: &str) -> Result<String> {
    let terms: Vec<String> = input
        .split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    if terms.is_empty() {
        return Err(Error::InvalidInput(
            "the search needs at least one word".into(),
        ));
    }
    if input.len() > 1024 {
        return Err(Error::InvalidInput(
            "the search text is too long (max 1024 bytes)".into(),
        ));
    }
    Ok(terms.join(" "))
}

/// Full-text search over post text, newest first.
pub(crate) fn search(
    conn: &Connection,
    me: &AuthorId,
    query: &str,
    page: &PageRequest,
) -> Result<Page<PostView>> {
    let fts = fts_query(query)?;
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts p
         WHERE p.rowid IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?5)
           AND (p.ts, p.entry_id) < (?1, ?2) AND p.deleted = 0 AND {VISIBLE}
         ORDER BY p.ts DESC, p.entry_id DESC LIMIT ?4"
    );
    post_page(conn, &sql, me, page, &[&fts]).map_err(|e| match e {
        // Quoting rules out syntax errors; anything FTS5 still refuses is
        // the query's fault, not the store's.
        Error::Storage(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("fts5") => {
            Error::InvalidInput(format!("unusable search: {msg}"))
        }
        other => other,
    })
}

/// An author's latest profile and follow counts.
pub(crate) fn profile(conn: &Connection, author: &AuthorId) -> Result<ProfileView> {
    let a = author.as_bytes();
    let row: Option<(String, String, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT name, about, avatar FROM profiles WHERE author = ?1")?
        .query_row([a], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let following: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM follows WHERE author = ?1 AND active = 1")?
        .query_row([a], |r| r.get(0))?;
    let followers: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM follows WHERE target = ?1 AND active = 1")?
        .query_row([a], |r| r.get(0))?;
    let forked: Option<bool> = conn
        .prepare_cached("SELECT forked FROM feeds WHERE author = ?1")?
        .query_row([a], |r| r.get(0))
        .optional()?;
    let (name, about, avatar) = match row {
        Some((n, ab, av)) => (
            Some(n).filter(|s| !s.is_empty()),
            Some(ab).filter(|s| !s.is_empty()),
            decode_attachments(av.as_deref()).into_iter().next(),
        ),
        None => (None, None, None),
    };
    Ok(ProfileView {
        author: *author,
        name,
        about,
        avatar,
        following: from_sql_int(following),
        followers: from_sql_int(followers),
        forked: forked.unwrap_or(false),
    })
}

/// Reaction counts for one entry, most frequent first: `(emoji, number of
/// distinct authors who reacted with it)`.
pub(crate) fn reaction_counts(conn: &Connection, entry: &EntryId) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT emoji, COUNT(DISTINCT author) AS n FROM reactions WHERE target = ?1
         GROUP BY emoji ORDER BY n DESC, emoji",
    )?;
    let counts = stmt
        .query_map([entry.as_bytes()], |r| {
            Ok((r.get::<_, String>(0)?, from_sql_int(r.get(1)?)))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(counts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::feed::Payload;
    use crate::store::testutil::{Author, node, reply};

    fn texts(page: &Page<PostView>) -> Vec<String> {
        page.items
            .iter()
            .map(|p| p.text.clone().unwrap_or_else(|| "<deleted>".into()))
            .collect()
    }

    #[test]
    fn timeline_holds_me_and_whom_i_follow_minus_blocks_and_hidden() {
        let (_d, node) = node();
        let (mut a, mut b, mut c) = (Author::new(1), Author::new(2), Author::new(3));
        let (a1, a1i) = a.post("a1");
        node.ingest(vec![a1i, b.post("b1").1, c.post("c1").1])
            .unwrap();
        node.post("mine", None).unwrap();
        // Only my own post until I follow someone.
        assert_eq!(
            texts(&node.timeline(PageRequest::first(10)).unwrap()),
            ["mine"]
        );
        node.follow(a.id()).unwrap();
        node.follow(b.id()).unwrap();
        let (_, a2) = a.post("a2");
        node.ingest(vec![a2, b.post("b2").1, c.post("c2").1])
            .unwrap();
        let t = texts(&node.timeline(PageRequest::first(10)).unwrap());
        assert_eq!(t.len(), 5, "{t:?}");
        assert!(!t.iter().any(|s| s.starts_with('c')), "{t:?}");
        // Unfollow b, block a... a's posts go, b's go.
        node.unfollow(b.id()).unwrap();
        node.hide(a1).unwrap();
        // (foreign test authors write an hour in the past, so mine is newest)
        assert_eq!(
            texts(&node.timeline(PageRequest::first(10)).unwrap()),
            ["mine", "a2"]
        );
        node.block(a.id()).unwrap();
        assert_eq!(
            texts(&node.timeline(PageRequest::first(10)).unwrap()),
            ["mine"]
        );
        // Follow state is derived in seq order even if entries of a follow
        // graph arrive late: c follows b then unfollows.
        let (_, f) = c.next(&Payload::Follow(b.id()));
        let (_, u) = c.next(&Payload::Unfollow(b.id()));
        node.ingest(vec![f, u]).unwrap();
        assert!(node.follows(c.id()).unwrap().is_empty());
    }

    #[test]
    fn pages_follow_cursors_without_gaps_or_repeats() {
        let (_d, node) = node();
        let mut a = Author::new(1);
        node.follow(a.id()).unwrap();
        let batch: Vec<_> = (0..25).map(|i| a.post(&format!("p{i:02}")).1).collect();
        node.ingest(batch).unwrap();
        let mut seen = Vec::new();
        let mut req = PageRequest::first(7);
        loop {
            let page = node.timeline(req.clone()).unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(texts(&page));
            match page.next {
                Some(c) => req.before = Some(c.to_string().parse().unwrap()),
                None => break,
            }
        }
        let expected: Vec<String> = (0..25).rev().map(|i| format!("p{i:02}")).collect();
        assert_eq!(seen, expected);
        let bad = PageRequest {
            limit: 5,
            before: "c1zz".parse().ok(),
        };
        assert!(bad.before.is_none());
        assert!(matches!(
            "nonsense".parse::<crate::store::Cursor>(),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn threads_list_root_then_replies_oldest_first() {
        let (_d, node) = node();
        let mut a = Author::new(1);
        let (root, ri) = a.post("root");
        let (_, r1) = a.next(&reply("first reply", root, root));
        node.ingest(vec![ri, r1]).unwrap();
        let mine = node.post("my reply", Some(root)).unwrap();
        node.post("reply to my reply", Some(mine)).unwrap();
        let other = node.post("unrelated", None).unwrap();
        let thread = node.thread(root).unwrap();
        let t: Vec<_> = thread.iter().map(|p| p.text.clone().unwrap()).collect();
        assert_eq!(t, ["root", "first reply", "my reply", "reply to my reply"]);
        assert!(thread[1..].iter().all(|p| p.root == Some(root)));
        assert_eq!(node.thread(other).unwrap().len(), 1);
        assert!(matches!(
            node.thread(EntryId::from_bytes([9; 32])),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn notifications_cover_replies_mentions_and_reactions() {
        let (_d, node) = node();
        let me = node.whoami().unwrap();
        let mine = node.post("hello world", None).unwrap();
        let mut a = Author::new(1);
        let (r, ri) = a.next(&reply("hi back", mine, mine));
        let (m, mi) = a.next(&Payload::Post(crate::feed::Post {
            text: format!("look @{me}"),
            mentions: vec![me],
            ..Default::default()
        }));
        let (x, xi) = a.next(&Payload::Reaction {
            target: mine,
            emoji: "🎉".into(),
        });
        node.ingest(vec![ri, mi, xi]).unwrap();
        // My own activity does not notify me.
        node.react(mine, "👍").unwrap();
        let n = node.notifications(PageRequest::first(10)).unwrap();
        assert_eq!(n.items.len(), 3, "{n:?}");
        assert_eq!(n.items[0].entry, x.id());
        assert_eq!(
            n.items[0].kind,
            NotificationKind::Reaction {
                emoji: "🎉".into()
            }
        );
        assert_eq!(n.items[0].subject, mine);
        assert_eq!(
            (n.items[1].entry, &n.items[1].kind),
            (m.id(), &NotificationKind::Mention)
        );
        assert_eq!(
            (n.items[2].entry, &n.items[2].kind, n.items[2].subject),
            (r.id(), &NotificationKind::Reply, mine)
        );
        assert!(n.items.iter().all(|i| i.from == a.id()));
        let counts = node.reaction_counts(mine).unwrap();
        assert_eq!(counts.len(), 2);
        // Paging through notifications works like other lists.
        let p1 = node.notifications(PageRequest::first(2)).unwrap();
        let p2 = node
            .notifications(PageRequest {
                limit: 2,
                before: p1.next.clone(),
            })
            .unwrap();
        assert_eq!(p2.items.len(), 1);
        assert!(p2.next.is_none());
    }

    #[test]
    fn search_finds_words_and_survives_fts_syntax() {
        let (_d, node) = node();
        node.post("The quick brown fox", None).unwrap();
        node.post("a lazy dog, quite brown", None).unwrap();
        let hits = |q: &str| texts(&node.search(q, PageRequest::first(10)).unwrap());
        assert_eq!(hits("brown").len(), 2);
        assert_eq!(hits("QUICK fox"), ["The quick brown fox"]);
        assert!(hits("cat").is_empty());
        // Operators and stray syntax are plain text: never an SQL error.
        for nasty in [
            "\"",
            "fox\"",
            "AND OR NOT",
            "fox*",
            "(brown",
            "col:fox",
            "NEAR(a b)",
            "-fox",
            "^fox",
            "'",
        ] {
            let r = node.search(nasty, PageRequest::first(10));
            assert!(
                matches!(r, Ok(_) | Err(Error::InvalidInput(_))),
                "{nasty}: {r:?}"
            );
        }
        assert_eq!(hits("fox\""), ["The quick brown fox"]);
        assert_eq!(hits("(brown"), hits("brown"));
        for empty in ["", "   ", "\"\" ()"] {
            assert!(
                matches!(
                    node.search(empty, PageRequest::first(10)),
                    Err(Error::InvalidInput(_))
                ),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn profiles_and_follow_lists() {
        let (_d, node) = node();
        let me = node.whoami().unwrap();
        let p = node.profile(me).unwrap();
        assert_eq!(p.name.as_deref(), Some("me"));
        node.set_profile(None, Some("about me".into())).unwrap();
        node.set_profile(Some("Me Myself".into()), None).unwrap();
        let p = node.profile(me).unwrap();
        assert_eq!(
            (p.name.as_deref(), p.about.as_deref()),
            (Some("Me Myself"), Some("about me"))
        );
        let a = Author::new(1);
        node.follow(a.id()).unwrap();
        assert_eq!(node.follows(me).unwrap(), [a.id()]);
        assert_eq!(node.followers(a.id()).unwrap(), [me]);
        assert_eq!(node.profile(me).unwrap().following, 1);
        assert_eq!(node.profile(a.id()).unwrap().followers, 1);
        let t = node.timeline(PageRequest::first(1)).unwrap();
        assert!(t.items.is_empty());
        node.post("named", None).unwrap();
        let t = node.timeline(PageRequest::first(1)).unwrap();
        assert_eq!(t.items[0].author_name.as_deref(), Some("Me Myself"));
    }
}
