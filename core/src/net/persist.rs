//! What the network layer keeps in the node's store: its tables
//! (`schema/0004_net.sql`, `schema/0008_net_relays.sql`), the device's
//! network key (sealed at rest), the peers it knows with their penalties,
//! invite tokens, and the relays it keeps a reservation at.
//!
//! Guarantees: the network key exists on disk only sealed with the app's
//! at-rest key (label `net-key`), like the identity's root seed; invite
//! tokens are stored only as hashes and are redeemed at most once, inside
//! one write transaction.

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rusqlite::{OptionalExtension, params};

use crate::Node;
use crate::error::{Error, Result};
use crate::identity::at_rest;
use crate::identity::id::AuthorId;
use crate::store::{now_ms, secrets, to_sql_int};

/// Slot (and sealing label) of the network key in the `secrets` table.
const NET_KEY: &str = "net-key";
/// The table definitions.
const SCHEMA: &str = include_str!("../store/schema/0004_net.sql");
/// The relay table (a later migration, also `IF NOT EXISTS`).
const SCHEMA_RELAYS: &str = include_str!("../store/schema/0008_net_relays.sql");
/// Most addresses remembered per peer.
const MAX_ADDRS: usize = 8;
/// Most relays remembered. Each costs a reservation (and a connection
/// kept open to the relay), so a handful is plenty.
pub(crate) const MAX_RELAYS: u32 = 8;

/// Creates the network tables if the store's migrations did not.
pub fn ensure_schema(node: &Node) -> Result<()> {
    node.store().write(|tx| {
        tx.execute_batch(SCHEMA)?;
        Ok(tx.execute_batch(SCHEMA_RELAYS)?)
    })
}

/// This device's network key: loaded (unsealed) from the store, or created
/// and stored sealed on first use. Needs the at-rest key.
pub fn network_key(node: &Node) -> Result<Keypair> {
    let key = node.at_rest_key()?;
    if let Some(sealed) = node.store().read(|c| secrets::get_sealed(c, NET_KEY))? {
        let mut secret = at_rest::open(&key, NET_KEY, &sealed)?;
        return Keypair::ed25519_from_bytes(secret.as_mut_slice())
            .map_err(|e| Error::Crypto(format!("stored network key is unusable: {e}")));
    }
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut())
        .map_err(|e| Error::Crypto(format!("the system random generator failed: {e}")))?;
    let sealed = at_rest::seal(&key, NET_KEY, secret.as_ref())?;
    node.store().write(|tx| {
        // Another process may have created one meanwhile: keep the first.
        if secrets::get_sealed(tx, NET_KEY)?.is_none() {
            secrets::put_sealed(tx, NET_KEY, &sealed)?;
        }
        Ok(())
    })?;
    // Re-read so both processes end up with the stored key.
    network_key_stored(node, &key)
}

fn network_key_stored(node: &Node, key: &at_rest::AtRestKey) -> Result<Keypair> {
    let sealed = node
        .store()
        .read(|c| secrets::get_sealed(c, NET_KEY))?
        .ok_or_else(|| Error::NotFound("network key".into()))?;
    let mut secret = at_rest::open(key, NET_KEY, &sealed)?;
    Keypair::ed25519_from_bytes(secret.as_mut_slice())
        .map_err(|e| Error::Crypto(format!("stored network key is unusable: {e}")))
}

/// A remembered peer.
#[derive(Debug, Clone)]
pub struct KnownPeer {
    /// Its network id.
    pub peer: PeerId,
    /// Last known addresses.
    pub addrs: Vec<Multiaddr>,
    /// Banned until this time (ms), 0 if not banned.
    pub banned_until_ms: u64,
}

/// Records that `peer` was reachable at `addrs` just now.
pub fn remember_peer(node: &Node, peer: &PeerId, addrs: &[Multiaddr]) -> Result<()> {
    let mut lines: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    lines.dedup();
    lines.truncate(MAX_ADDRS);
    let joined = lines.join("\n");
    node.store().write(|tx| {
        tx.prepare_cached(
            "INSERT INTO net_peers (peer_id, addrs, last_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer_id) DO UPDATE SET
               addrs = CASE WHEN excluded.addrs = '' THEN addrs ELSE excluded.addrs END,
               last_seen = excluded.last_seen",
        )?
        .execute(params![peer.to_string(), joined, to_sql_int(now_ms())?])?;
        Ok(())
    })
}

/// Records a penalty; returns the new strike count.
pub fn add_strike(node: &Node, peer: &PeerId, banned_until_ms: u64) -> Result<u32> {
    node.store().write(|tx| {
        tx.prepare_cached(
            "INSERT INTO net_peers (peer_id, last_seen, strikes, banned_until) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (peer_id) DO UPDATE SET strikes = strikes + 1,
               banned_until = MAX(banned_until, excluded.banned_until)",
        )?
        .execute(params![
            peer.to_string(),
            to_sql_int(now_ms())?,
            to_sql_int(banned_until_ms)?
        ])?;
        let n: i64 = tx.query_row(
            "SELECT strikes FROM net_peers WHERE peer_id = ?1",
            [peer.to_string()],
            |r| r.get(0),
        )?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    })
}

/// Bans `peer` until `until_ms`.
pub fn ban(node: &Node, peer: &PeerId, until_ms: u64) -> Result<()> {
    add_strike(node, peer, until_ms).map(|_| ())
}

/// The most recently seen peers (at most `limit`), newest first.
pub fn known_peers(node: &Node, limit: u32) -> Result<Vec<KnownPeer>> {
    node.store().read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT peer_id, addrs, banned_until FROM net_peers
             ORDER BY last_seen DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (pid, addrs, banned) = row?;
            // Rows we cannot parse (hand-edited, older format) are skipped.
            let Ok(peer) = pid.parse::<PeerId>() else {
                continue;
            };
            out.push(KnownPeer {
                peer,
                addrs: addrs.lines().filter_map(|a| a.parse().ok()).collect(),
                banned_until_ms: u64::try_from(banned).unwrap_or(0),
            });
        }
        Ok(out)
    })
}

/// A peer's stored penalty state, if any.
pub fn peer_penalty(node: &Node, peer: &PeerId) -> Result<Option<(u32, u64)>> {
    node.store().read(|c| {
        Ok(
            c.prepare_cached("SELECT strikes, banned_until FROM net_peers WHERE peer_id = ?1")?
                .query_row([peer.to_string()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?
                .map(|(s, b)| (u32::try_from(s).unwrap_or(0), u64::try_from(b).unwrap_or(0))),
        )
    })
}

/// Stores a new invite token (as its hash) valid until `expires_at_ms`.
pub fn store_invite(node: &Node, token: &[u8; 16], expires_at_ms: u64) -> Result<()> {
    let hash = blake3::hash(token);
    node.store().write(|tx| {
        tx.prepare_cached(
            "INSERT INTO net_invites (token_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            hash.as_bytes().as_slice(),
            to_sql_int(now_ms())?,
            to_sql_int(expires_at_ms)?
        ])?;
        Ok(())
    })
}

/// Redeems a token for `newcomer`: succeeds once per token, before it
/// expires. Errors: [`Error::InvalidInput`] for an unknown, used or expired
/// token (not distinguished, to tell a guesser nothing).
pub fn redeem_invite(node: &Node, token: &[u8; 16], newcomer: &AuthorId) -> Result<()> {
    let hash = blake3::hash(token);
    let now = to_sql_int(now_ms())?;
    node.store().write(|tx| {
        let changed = tx
            .prepare_cached(
                "UPDATE net_invites SET used_at = ?2, used_by = ?3
                 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            )?
            .execute(params![
                hash.as_bytes().as_slice(),
                now,
                newcomer.as_bytes().as_slice()
            ])?;
        if changed == 1 {
            Ok(())
        } else {
            Err(Error::InvalidInput(
                "invite is unknown, already used or expired".into(),
            ))
        }
    })
}

/// A relay this node keeps a reservation at.
#[derive(Debug, Clone)]
pub struct KnownRelay {
    /// The relay's network id.
    pub peer: PeerId,
    /// Where to reach it.
    pub addrs: Vec<Multiaddr>,
}

fn parse_addrs(lines: &str) -> Vec<Multiaddr> {
    lines.lines().filter_map(|a| a.parse().ok()).collect()
}

/// Remembers `relay` (reachable at `addrs`) as one to keep a reservation
/// at, and forgets the least recently used relays beyond [`MAX_RELAYS`].
/// Empty `addrs` keep the stored ones.
pub fn remember_relay(node: &Node, relay: &PeerId, addrs: &[Multiaddr]) -> Result<()> {
    let mut lines: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    lines.dedup();
    lines.truncate(MAX_ADDRS);
    let joined = lines.join("\n");
    let now = to_sql_int(now_ms())?;
    node.store().write(|tx| {
        tx.prepare_cached(
            "INSERT INTO net_relays (peer_id, addrs, added_at, last_used) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (peer_id) DO UPDATE SET
               addrs = CASE WHEN excluded.addrs = '' THEN addrs ELSE excluded.addrs END,
               last_used = excluded.last_used",
        )?
        .execute(params![relay.to_string(), joined, now])?;
        tx.prepare_cached(
            "DELETE FROM net_relays WHERE peer_id NOT IN
               (SELECT peer_id FROM net_relays ORDER BY last_used DESC, peer_id LIMIT ?1)",
        )?
        .execute([MAX_RELAYS])?;
        Ok(())
    })
}

/// Records that `relay` granted a reservation just now (so it is the last
/// to be dropped when the list is full).
pub fn relay_reserved(node: &Node, relay: &PeerId) -> Result<()> {
    let now = to_sql_int(now_ms())?;
    node.store().write(|tx| {
        tx.prepare_cached("UPDATE net_relays SET last_used = ?2 WHERE peer_id = ?1")?
            .execute(params![relay.to_string(), now])?;
        Ok(())
    })
}

/// The remembered relays (at most [`MAX_RELAYS`]), most recently used
/// first. Rows that cannot be parsed are skipped.
pub fn known_relays(node: &Node) -> Result<Vec<KnownRelay>> {
    node.store().read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT peer_id, addrs FROM net_relays ORDER BY last_used DESC, peer_id LIMIT ?1",
        )?;
        let rows = stmt.query_map([MAX_RELAYS], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (pid, addrs) = row?;
            if let Ok(peer) = pid.parse::<PeerId>() {
                out.push(KnownRelay {
                    peer,
                    addrs: parse_addrs(&addrs),
                });
            }
        }
        Ok(out)
    })
}

/// The stored addresses of `relay`, or `None` if it is not remembered
/// (never was, or was forgotten).
pub fn relay_addrs(node: &Node, relay: &PeerId) -> Result<Option<Vec<Multiaddr>>> {
    node.store().read(|c| {
        Ok(
            c.prepare_cached("SELECT addrs FROM net_relays WHERE peer_id = ?1")?
                .query_row([relay.to_string()], |r| r.get::<_, String>(0))
                .optional()?
                .map(|a| parse_addrs(&a)),
        )
    })
}

/// Forgets `relay`; returns whether it was remembered.
pub fn forget_relay(node: &Node, relay: &PeerId) -> Result<bool> {
    node.store().write(|tx| {
        Ok(tx
            .prepare_cached("DELETE FROM net_relays WHERE peer_id = ?1")?
            .execute([relay.to_string()])?
            == 1)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::testutil;

    fn relay(n: u8) -> (PeerId, Multiaddr) {
        let peer = Keypair::ed25519_from_bytes([n; 32])
            .unwrap()
            .public()
            .to_peer_id();
        (peer, format!("/ip4/10.0.0.{n}/tcp/4001").parse().unwrap())
    }

    #[test]
    fn relays_are_bounded_and_can_be_forgotten() {
        let (_dir, node) = testutil::node();
        ensure_schema(&node).unwrap();
        let count = u8::try_from(MAX_RELAYS).unwrap() + 2;
        for n in 1..=count {
            let (peer, addr) = relay(n);
            remember_relay(&node, &peer, &[addr]).unwrap();
            // Distinct `last_used` times, so the oldest is well defined.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let known = known_relays(&node).unwrap();
        assert_eq!(known.len(), MAX_RELAYS as usize);
        assert!(
            known
                .iter()
                .all(|k| k.peer != relay(1).0 && k.peer != relay(2).0)
        );
        assert_eq!(known[0].peer, relay(count).0, "newest first");
        assert_eq!(known[0].addrs, vec![relay(count).1]);

        // Empty addresses keep the stored ones.
        let (peer, addr) = relay(count);
        remember_relay(&node, &peer, &[]).unwrap();
        assert_eq!(relay_addrs(&node, &peer).unwrap(), Some(vec![addr]));

        assert!(forget_relay(&node, &peer).unwrap());
        assert!(!forget_relay(&node, &peer).unwrap());
        assert_eq!(relay_addrs(&node, &peer).unwrap(), None);
    }
}
