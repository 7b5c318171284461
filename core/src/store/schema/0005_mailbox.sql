-- The envelope carrier (core/src/mailbox): envelopes this node stores and
-- forwards for others (and its own, until acked or expired), and the acks
-- that drop them.
--
-- Nothing here is secret: envelopes are end-to-end ciphertexts that reveal
-- neither sender, recipients nor content (docs/PRIVACY.md, "Messaging"),
-- and an ack secret is published on purpose. Plaintexts and session
-- secrets stay sealed in the msg_* tables.

-- Carried envelopes. hash = BLAKE3(envelope bytes); expiry is the envelope's
-- own expiry capped at received_at + 7 days. Bounded by count and bytes,
-- the soonest-expiring evicted first.
CREATE TABLE IF NOT EXISTS mailbox_envelopes (
    hash        BLOB PRIMARY KEY NOT NULL,
    drop_hash   BLOB NOT NULL,
    expiry      INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    envelope    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS mailbox_envelopes_drop ON mailbox_envelopes (drop_hash);
CREATE INDEX IF NOT EXISTS mailbox_envelopes_expiry ON mailbox_envelopes (expiry);

-- Acks seen (the tombstones): an envelope whose drop hash is here is
-- deleted and never accepted again. Kept 7 days (the longest an envelope
-- lives), bounded by count; forwarded to peers like envelopes.
CREATE TABLE IF NOT EXISTS mailbox_acks (
    drop_hash  BLOB PRIMARY KEY NOT NULL,
    secret     BLOB NOT NULL,
    expiry     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mailbox_acks_expiry ON mailbox_acks (expiry);
