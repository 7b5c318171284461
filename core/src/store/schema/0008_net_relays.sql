-- Relays this node asked for a reservation (relay v2), so the network layer
-- asks them again after a restart or when a reservation is lost. Written
-- with IF NOT EXISTS because the network layer also applies this file
-- itself when it starts (like 0004_net.sql). The network layer keeps at
-- most 8 rows: the least recently used relay is dropped first.
CREATE TABLE IF NOT EXISTS net_relays (
    peer_id   TEXT PRIMARY KEY,            -- the relay's libp2p PeerId, base58
    addrs     TEXT NOT NULL DEFAULT '',    -- its multiaddrs, one per line
    added_at  INTEGER NOT NULL,            -- ms since the Unix epoch
    last_used INTEGER NOT NULL             -- ms; last asked for or granted
) WITHOUT ROWID;
