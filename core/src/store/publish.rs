//! Publishing the local user's own entries: numbering, chaining, dating and
//! signing them, then storing them exactly like ingested ones.

use ed25519_dalek::SigningKey;
use rusqlite::{OptionalExtension, Transaction};

use crate::error::{Error, Result};
use crate::feed::{Entry, Payload};
use crate::identity::id::{AuthorId, EntryId};
use crate::store::apply::{self, Effects};

/// What publishing one entry wrote.
#[derive(Debug)]
pub(crate) struct Published {
    /// The new entry's id.
    pub id: EntryId,
    /// Its sequence number in the local feed.
    pub seq: u64,
    /// What storing it changed beyond plain inserts.
    pub effects: Effects,
}

/// Signs `payload` as the next entry of `signing`'s feed and stores it in
/// `tx`. The timestamp is `max(now, previous timestamp)`: if the device clock
/// went back, the entry reuses the previous time instead of rewinding the
/// feed (which peers would reject).
pub(crate) fn publish_in_tx(
    tx: &Transaction<'_>,
    signing: &SigningKey,
    payload: &Payload,
    now_ms: u64,
) -> Result<Published> {
    let me = AuthorId::from_bytes(signing.verifying_key().to_bytes());
    let bytes = payload
        .encode()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    check_own_rules(tx, &me, payload)?;
    let (seq, prev, prev_ts) = match apply::feed_tip(tx, &me)? {
        Some(tip) => (tip.seq + 1, Some(tip.id), tip.timestamp_ms),
        None => (1, None, 0),
    };
    let entry = Entry::sign(signing, seq, prev, now_ms.max(prev_ts), &bytes);
    let encoded = entry.encode();
    let id = EntryId::from_bytes(*blake3::hash(&encoded).as_bytes());
    let effects = apply::insert_entry(
        tx,
        &entry,
        &id,
        &encoded,
        Some((&bytes, payload)),
        Some(&me),
    )?;
    // A post's text waits for the search index until enough are waiting
    // (see `apply::index_pending_posts`): each commit writes fewer pages.
    if matches!(payload, Payload::Post(_)) {
        let (through, newest) = apply::search_index_bounds(tx)?;
        if newest - through >= apply::OWN_POSTS_PER_INDEX_BATCH {
            apply::index_pending_posts(tx)?;
        }
    }
    Ok(Published { id, seq, effects })
}

/// Rules the app must respect before we sign anything: a delete targets one
/// of our own stored entries; we do not follow or block ourselves.
fn check_own_rules(tx: &Transaction<'_>, me: &AuthorId, payload: &Payload) -> Result<()> {
    match payload {
        Payload::Delete(target) => {
            let author: Option<Vec<u8>> = tx
                .prepare_cached("SELECT author FROM entries WHERE id = ?1")?
                .query_row([target.as_bytes()], |r| r.get(0))
                .optional()?;
            match author {
                None => Err(Error::NotFound(format!("entry {target}"))),
                Some(a) if a.as_slice() != me.as_bytes() => Err(Error::InvalidInput(
                    "only your own entries can be deleted; hide others' instead".into(),
                )),
                Some(_) => Ok(()),
            }
        }
        Payload::Follow(t) | Payload::Unfollow(t) | Payload::Block(t) | Payload::Unblock(t)
            if t == me =>
        {
            Err(Error::InvalidInput(
                "cannot follow or block yourself".into(),
            ))
        }
        _ => Ok(()),
    }
}
