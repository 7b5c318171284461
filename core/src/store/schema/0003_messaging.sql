-- Starling store: end-to-end encrypted messaging (core/src/messaging).
--
-- Every secret (prekey secrets, ratchet sessions with their skipped keys,
-- group states with sender keys, message plaintexts) is stored only as a
-- blob sealed by identity::at_rest::seal under the embedder's at-rest key.
-- What is in the clear: who we have sessions / conversations with, when,
-- and the mailbox tags we expect (see docs/PRIVACY.md, "Messaging").

-- Our X25519 prekeys: kind 1 = signed prekey, 2 = one-time prekey.
CREATE TABLE msg_prekeys (
    kind       INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    public     BLOB NOT NULL,
    sealed     BLOB NOT NULL,          -- sealed X25519 secret
    created_at INTEGER NOT NULL,
    retired_at INTEGER,                -- signed prekey superseded at (ms)
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

-- Ephemeral keys of session-setup messages already processed: a replayed
-- setup message is refused, a repeated one (sent before our first reply) is
-- routed to the session it created.
CREATE TABLE msg_setup_seen (
    ek         BLOB PRIMARY KEY NOT NULL,
    session_id INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Pinned identity keys of contacts. trust: 0 unverified (first seen),
-- 1 verified, 2 changed (sending blocked; pending_dh is the new key).
CREATE TABLE msg_contacts (
    peer        BLOB PRIMARY KEY NOT NULL,
    identity_dh BLOB NOT NULL,
    trust       INTEGER NOT NULL,
    pending_dh  BLOB,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- 1:1 Double Ratchet sessions; several per peer may exist (simultaneous
-- setup, re-setup), the most recently active one sends.
CREATE TABLE msg_sessions (
    id         INTEGER PRIMARY KEY,
    peer       BLOB NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    active_at  INTEGER NOT NULL
);
CREATE INDEX msg_sessions_peer ON msg_sessions (peer, active_at);

-- Mailbox tags we expect, for an O(1) "is this envelope mine?".
-- kind 1 = session (ref = session id, 8 bytes BE), 2 = signed prekey
-- (ref = prekey id, 4 bytes BE), 3 = group sender chain
-- (ref = group id || sender || epoch).
CREATE TABLE msg_tags (
    tag  BLOB PRIMARY KEY NOT NULL,
    kind INTEGER NOT NULL,
    ref  BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX msg_tags_ref ON msg_tags (kind, ref);

-- Message history. conversation = peer author id or group id.
CREATE TABLE msg_messages (
    id           INTEGER PRIMARY KEY,
    conversation BLOB NOT NULL,
    is_group     INTEGER NOT NULL,
    sender       BLOB NOT NULL,
    outgoing     INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    sealed       BLOB NOT NULL          -- sealed text
);
CREATE INDEX msg_messages_conversation ON msg_messages (conversation, id);

-- Group states (membership chain, sender keys), sealed as one blob each.
CREATE TABLE msg_groups (
    group_id   BLOB PRIMARY KEY NOT NULL,
    sealed     BLOB NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Envelopes waiting for delivery, written in the same transaction as the
-- state change that produced them.
CREATE TABLE msg_outbox (
    id         INTEGER PRIMARY KEY,
    envelope   BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Counters (next prekey ids).
CREATE TABLE msg_counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
