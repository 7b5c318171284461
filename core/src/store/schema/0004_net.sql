-- Network layer state (core/src/net). Written with IF NOT EXISTS because the
-- network layer also applies this file itself when it starts, so it works on
-- stores whose migrations predate it.

-- Peers this node was connected to: where to redial them, and penalties.
CREATE TABLE IF NOT EXISTS net_peers (
    peer_id      TEXT PRIMARY KEY,          -- libp2p PeerId, base58
    addrs        TEXT NOT NULL DEFAULT '',  -- last known multiaddrs, one per line
    last_seen    INTEGER NOT NULL,          -- ms since the Unix epoch
    strikes      INTEGER NOT NULL DEFAULT 0,-- sessions ended by a penalty
    banned_until INTEGER NOT NULL DEFAULT 0 -- ms; 0 = not banned
) WITHOUT ROWID;

-- One-time invite tokens. Only BLAKE3(token) is stored, so a copy of the
-- database does not let anyone redeem an open invite.
CREATE TABLE IF NOT EXISTS net_invites (
    token_hash BLOB PRIMARY KEY,            -- BLAKE3 of the 16 random bytes
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,                     -- NULL while unused
    used_by    BLOB                         -- author id of the newcomer
) WITHOUT ROWID;
