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
}
