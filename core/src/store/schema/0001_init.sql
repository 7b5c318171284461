-- Starling store, schema version 1.
--
-- Ids (authors, entries, blobs) are raw 32-byte BLOBs. Integers that are u64
-- on the wire (seq, timestamps) are stored as INTEGER; ingest only accepts
-- values that fit in i64 (timestamps are window-checked, seqs are contiguous).

-- Every accepted entry of every feed, exactly as signed. The chain is
-- verifiable from this table alone, even after payloads are deleted.
CREATE TABLE entries (
    id           BLOB PRIMARY KEY NOT NULL,   -- BLAKE3 of `encoded`
    author       BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    prev         BLOB,                        -- NULL iff seq = 1
    timestamp    INTEGER NOT NULL,            -- ms since the Unix epoch
    encoded      BLOB NOT NULL,               -- canonical entry bytes
    payload_len  INTEGER NOT NULL,
    payload_hash BLOB NOT NULL,
    tag          INTEGER,                     -- payload type tag, once the payload was seen
    UNIQUE (author, seq)
);

-- Payload bytes by entry. Deleting a payload deletes this row only.
CREATE TABLE payloads (
    entry_id BLOB PRIMARY KEY NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    bytes    BLOB NOT NULL
);

-- The tip of each feed we hold. Feeds are stored contiguously from seq 1.
CREATE TABLE feeds (
    author     BLOB PRIMARY KEY NOT NULL,
    latest_seq INTEGER NOT NULL,
    latest_id  BLOB NOT NULL REFERENCES entries (id),
    forked     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Fork evidence: two validly signed entries for the same (author, seq).
-- The first one stays in `entries`; it is never overwritten.
CREATE TABLE forks (
    conflicting_id      BLOB PRIMARY KEY NOT NULL,
    author              BLOB NOT NULL,
    seq                 INTEGER NOT NULL,
    stored_encoded      BLOB NOT NULL,
    conflicting_encoded BLOB NOT NULL,
    detected_at         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX forks_author ON forks (author, seq);

-- Decoded posts. The row stays as a tombstone when the post is deleted
-- (text, attachments and mentions cleared, deleted = 1).
CREATE TABLE posts (
    entry_id    BLOB NOT NULL UNIQUE REFERENCES entries (id) ON DELETE CASCADE,
    author      BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    text        TEXT,
    reply_to    BLOB,
    root        BLOB,
    mentions    BLOB,      -- concatenated 32-byte author ids, for cheap page hydration
    attachments BLOB,      -- store-private encoding of the BlobRefs
    deleted     INTEGER NOT NULL DEFAULT 0
);
-- Home timeline: scanned newest first; `author` is in the index so rows of
-- authors outside the timeline are skipped without touching the table.
CREATE INDEX posts_time ON posts (ts, entry_id, author);
CREATE INDEX posts_author_time ON posts (author, ts, entry_id);
CREATE INDEX posts_root ON posts (root, ts) WHERE root IS NOT NULL;
CREATE INDEX posts_reply_to ON posts (reply_to, ts) WHERE reply_to IS NOT NULL;

CREATE TABLE mentions (
    entry_id BLOB NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    target   BLOB NOT NULL,
    author   BLOB NOT NULL,
    ts       INTEGER NOT NULL,
    PRIMARY KEY (entry_id, target)
) WITHOUT ROWID;
CREATE INDEX mentions_target ON mentions (target, ts, entry_id);

CREATE TABLE reactions (
    entry_id BLOB PRIMARY KEY NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    author   BLOB NOT NULL,
    target   BLOB NOT NULL,
    emoji    TEXT NOT NULL,
    ts       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX reactions_target ON reactions (target, emoji, author);

-- Current follow / block state per (author, target). `seq` is the entry that
-- set it, so applying entries in any order yields the state of the highest seq.
CREATE TABLE follows (
    author BLOB NOT NULL,
    target BLOB NOT NULL,
    active INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (author, target)
) WITHOUT ROWID;
CREATE INDEX follows_target ON follows (target, author) WHERE active = 1;

CREATE TABLE blocks (
    author BLOB NOT NULL,
    target BLOB NOT NULL,
    active INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (author, target)
) WITHOUT ROWID;

-- Latest profile per author (highest seq wins).
CREATE TABLE profiles (
    author BLOB PRIMARY KEY NOT NULL,
    seq    INTEGER NOT NULL,
    name   TEXT NOT NULL,
    about  TEXT NOT NULL,
    avatar BLOB
) WITHOUT ROWID;

-- X25519 keys announced by authors (binding signature verified on insert).
CREATE TABLE encryption_keys (
    author     BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    x25519     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (author, seq)
) WITHOUT ROWID;

-- Delete entries. Kept even when the target is not here yet, so a delete that
-- arrives first still wins; only effective when target's author = author.
CREATE TABLE deletes (
    delete_id BLOB PRIMARY KEY NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    author    BLOB NOT NULL,
    target    BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX deletes_target ON deletes (target, author);

-- Entries the local user hid from their own views. Local only, never synced.
CREATE TABLE hidden (
    entry_id  BLOB PRIMARY KEY NOT NULL,
    hidden_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Sealed secrets (e.g. the identity seed), never in clear.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    sealed     BLOB NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Small local settings, e.g. the local identity's public author id.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- Full-text index over post text, external content: the text lives once,
-- in posts.text, and rowid = posts.rowid. A row is deleted from it while
-- posts.text still holds the indexed text, so FTS5 can find the terms, and
-- 'secure-delete' erases the terms from the index b-tree instead of leaving delete markers,
-- so deleted words leave the file. (A contentless_delete table cannot do
-- that: without the old text it can only record tombstones.)
CREATE VIRTUAL TABLE posts_fts USING fts5 (
    text,
    content = 'posts',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO posts_fts (posts_fts, rank) VALUES ('secure-delete', 1);
-- Merge index segments less eagerly than the default (4): incremental
-- merging was a large share of ingest cost, and searches over a few more
-- segments stay fast.
INSERT INTO posts_fts (posts_fts, rank) VALUES ('automerge', 16);
