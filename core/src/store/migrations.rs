//! Numbered schema migrations, tracked in `PRAGMA user_version`.
//!
//! Migration `n` (1-based) lives in `schema/000n_*.sql` and is compiled into
//! the binary with `include_str!`, so a store can always be brought up to date
//! without files on disk. Each migration runs in its own transaction together
//! with the `user_version` bump, so a crash mid-migration leaves the previous
//! version intact. A store whose version is higher than this build knows is
//! refused with [`Error::SchemaTooNew`] rather than risking misreading it.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// The migrations, in order. Index `i` upgrades from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("schema/0001_init.sql"),
    include_str!("schema/0002_sync.sql"),
    include_str!("schema/0003_messaging.sql"),
    include_str!("schema/0004_net.sql"),
    include_str!("schema/0005_mailbox.sql"),
    include_str!("schema/0006_fewer_random_indexes.sql"),
    include_str!("schema/0007_deferred_search_index.sql"),
    include_str!("schema/0008_net_relays.sql"),
    include_str!("schema/0009_feed_tips_from_entries.sql"),
    include_str!("schema/0010_posts_share_entry_rowids.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads the schema version of an open database.
pub fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the database up to [`SCHEMA_VERSION`]. Idempotent: a store that is
/// already current is left untouched.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let found = schema_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        // IMMEDIATE: take the write lock before reading the version again, so
        // two processes opening the same fresh store cannot both migrate.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let target = index as i64 + 1;
        if current >= target {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database in `dir` brought to schema `version` by the first
    /// migrations only, as an older Starling left it.
    fn database_at_version(dir: &tempfile::TempDir, version: usize) -> Result<Connection> {
        let conn = Connection::open(dir.path().join(format!("v{version}.db")))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", version as i64)?;
        Ok(conn)
    }

    /// Stores a bare entry row of `author` (no payload bytes, tag: post).
    fn insert_entry_row(conn: &Connection, id: [u8; 32], author: [u8; 32], seq: u8) -> Result<()> {
        conn.execute(
            "INSERT INTO entries (id, author, seq, prev, timestamp, encoded, payload_len, payload_hash, tag)
             VALUES (?1, ?2, ?3, NULL, 1, x'00', 3, x'00', 1)",
            rusqlite::params![id, author, seq],
        )?;
        Ok(())
    }

    #[test]
    fn migrations_are_idempotent_and_newer_schemas_are_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.db");
        {
            let mut conn = Connection::open(&path)?;
            migrate(&mut conn)?;
            assert_eq!(schema_version(&conn)?, SCHEMA_VERSION);
            migrate(&mut conn)?;
            assert_eq!(schema_version(&conn)?, SCHEMA_VERSION);
        }
        let mut conn = Connection::open(&path)?;
        migrate(&mut conn)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        match migrate(&mut conn) {
            Err(Error::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn versions_6_to_10_move_payloads_and_post_rowids_and_keep_them_searchable() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut conn = database_at_version(&dir, 5)?;
        // Two entries (one with its payload, one whose payload was deleted)
        // and a post whose rowid is not 1, indexed for search.
        for (n, id) in [(1u8, [1u8; 32]), (2, [2; 32])] {
            insert_entry_row(&conn, id, [9; 32], n)?;
        }
        conn.execute("INSERT INTO payloads VALUES (?1, x'616263')", [[1u8; 32]])?;
        conn.execute(
            "INSERT INTO posts (rowid, entry_id, author, seq, ts, text) VALUES (7, ?1, ?2, 1, 1, 'heron')",
            rusqlite::params![[1u8; 32], [9u8; 32]],
        )?;
        conn.execute(
            "INSERT INTO posts_fts (rowid, text) VALUES (7, 'heron')",
            [],
        )?;

        migrate(&mut conn)?;
        assert_eq!(schema_version(&conn)?, SCHEMA_VERSION);
        let payloads: Vec<Option<Vec<u8>>> = conn
            .prepare("SELECT payload FROM entries ORDER BY seq")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        assert_eq!(payloads, vec![Some(b"abc".to_vec()), None]);
        let gone: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'payloads'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(gone, 0);
        let found: (i64, String) = conn.query_row(
            "SELECT p.rowid, p.text FROM posts p
             WHERE p.rowid IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH 'heron')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // Version 10: the post (rowid 7 before) now has its entry's rowid,
        // and the search index follows it.
        let entry_rowid: i64 =
            conn.query_row("SELECT rowid FROM entries WHERE seq = 1", [], |r| r.get(0))?;
        assert_eq!(found, (entry_rowid, "heron".to_owned()));
        conn.execute(
            "INSERT INTO posts_fts (posts_fts) VALUES ('integrity-check')",
            [],
        )?;
        // Every post stored before counts as indexed, and the time-ordered
        // author index (version 7) and the (author, seq) one (version 10)
        // are gone.
        let through: i64 = conn.query_row(
            "SELECT indexed_through FROM search_progress WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(through, entry_rowid);
        let unique: i64 = conn.query_row(
            "SELECT COUNT(*) FROM pragma_index_list('posts') WHERE \"unique\" = 1",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(unique, 0);
        let index: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'posts_author_time'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(index, 0);
        Ok(())
    }

    #[test]
    fn version_9_keeps_the_held_range_and_fork_flag_of_each_feed() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut conn = database_at_version(&dir, 8)?;
        // A feed held from seq 3 to 4 and flagged forked.
        for (seq, id) in [(3u8, [3u8; 32]), (4, [4; 32])] {
            insert_entry_row(&conn, id, [9; 32], seq)?;
        }
        conn.execute(
            "INSERT INTO feeds (author, latest_seq, latest_id, forked, low_seq) VALUES (?1, 4, ?2, 1, 3)",
            rusqlite::params![[9u8; 32], [4u8; 32]],
        )?;

        migrate(&mut conn)?;
        let kept: (i64, bool) = conn.query_row(
            "SELECT low_seq, forked FROM feeds WHERE author = ?1",
            [[9u8; 32]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        assert_eq!(kept, (3, true));
        let columns: i64 =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_info('feeds')", [], |r| {
                r.get(0)
            })?;
        assert_eq!(columns, 3, "the copied tip columns are gone");
        Ok(())
    }
}
