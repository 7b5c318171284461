//! Sealed secrets and small local settings.
//!
//! Secrets (the identity's root seed) are stored only as blobs sealed by
//! `identity::at_rest::seal` under the app's at-rest key; this module never
//! sees a clear secret. `meta` holds public local settings, such as the
//! local identity's author id, so read-only operations work without asking
//! the app for the key.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::Result;
use crate::identity::id::AuthorId;
use crate::store::{now_ms, to_sql_int};

/// Name of the sealed root seed in the `secrets` table (also its sealing label).
pub(crate) const ROOT_SEED: &str = "root-seed";
/// `meta` key of the local identity's author id.
const META_IDENTITY: &str = "identity";

/// Stores (or replaces) a sealed secret.
pub(crate) fn put_sealed(tx: &Transaction<'_>, name: &str, sealed: &[u8]) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO secrets (name, sealed, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
    )?
    .execute(params![name, sealed, to_sql_int(now_ms())?])?;
    Ok(())
}

/// A sealed secret by name.
pub(crate) fn get_sealed(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT sealed FROM secrets WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Records the local identity's public author id.
pub(crate) fn set_identity(tx: &Transaction<'_>, author: &AuthorId) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute(params![META_IDENTITY, author.as_bytes()])?;
    Ok(())
}

/// The local identity's author id, if one was created or restored.
pub(crate) fn identity(conn: &Connection) -> Result<Option<AuthorId>> {
    let v: Option<Vec<u8>> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([META_IDENTITY], |r| r.get(0))
        .optional()?;
    v.map(|b| AuthorId::from_slice(&b)).transpose()
}
