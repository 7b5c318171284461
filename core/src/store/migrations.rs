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
    fn versions_6_and_7_move_payloads_keep_post_rowids_and_count_them_indexed() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut conn = Connection::open(dir.path().join("v5.db"))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", 5)?;
        // Two entries (one with its payload, one whose payload was deleted)
        // and a post whose rowid is not 1, indexed for search.
        for (n, id) in [(1u8, [1u8; 32]), (2, [2; 32])] {
            conn.execute(
                "INSERT INTO entries (id, author, seq, prev, timestamp, encoded, payload_len, payload_hash, tag)
                 VALUES (?1, ?2, ?3, NULL, 1, x'00', 3, x'00', 1)",
                rusqlite::params![id, [9u8; 32], n],
            )?;
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
        assert_eq!(found, (7, "heron".to_owned()));
        conn.execute(
            "INSERT INTO posts_fts (posts_fts) VALUES ('integrity-check')",
            [],
        )?;
        // Posts are unique by (author, seq) now.
        let dup = conn.execute(
            "INSERT INTO posts (entry_id, author, seq, ts, text) VALUES (?1, ?2, 1, 1, 'again')",
            rusqlite::params![[3u8; 32], [9u8; 32]],
        );
        assert!(dup.is_err());
        // Version 7: every post stored before it counts as indexed, and the
        // time-ordered author index is gone.
        let through: i64 = conn.query_row(
            "SELECT indexed_through FROM search_progress WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(through, 7);
        let index: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'posts_author_time'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(index, 0);
        Ok(())
    }
}
