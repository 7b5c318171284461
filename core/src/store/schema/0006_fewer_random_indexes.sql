-- Schema version 6: fewer randomly keyed b-trees per stored entry.
--
-- Entry ids are BLAKE3 hashes, so every index keyed by one takes its
-- inserts at random places: a batch of 1,000 entries dirties a page of
-- such an index per few entries, and every dirty page is written to the
-- WAL at commit and again at checkpoint. Version 1 had three (entries.id,
-- payloads.entry_id, posts.entry_id); replication spent most of its time
-- writing them. Version 6 keeps only entries.id:

-- 1. A payload lives in its entry's row (NULL: not held yet, or deleted by
--    its author). The bytes are unchanged.
ALTER TABLE entries ADD COLUMN payload BLOB;
UPDATE entries SET payload = (SELECT bytes FROM payloads WHERE payloads.entry_id = entries.id);
DROP TABLE payloads;

-- 2. Posts are unique by (author, seq), whose inserts land next to the
--    feed's previous ones, and are found by entry id through entries:
--    posts.(author, seq) = the entry's (author, seq). Rowids are kept: the
--    full-text index refers to them. Posts leave with their feed through an
--    explicit delete (apply.rs purge_author), not a cascade, which would need
--    the index this drops.
CREATE TABLE posts_v6 (
    entry_id    BLOB NOT NULL,
    author      BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    text        TEXT,
    reply_to    BLOB,
    root        BLOB,
    mentions    BLOB,      -- concatenated 32-byte author ids, for cheap page hydration
    attachments BLOB,      -- store-private encoding of the BlobRefs
    deleted     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (author, seq)
);
INSERT INTO posts_v6 (rowid, entry_id, author, seq, ts, text, reply_to, root, mentions, attachments, deleted)
    SELECT rowid, entry_id, author, seq, ts, text, reply_to, root, mentions, attachments, deleted
    FROM posts ORDER BY rowid;
DROP TABLE posts;
ALTER TABLE posts_v6 RENAME TO posts;
CREATE INDEX posts_time ON posts (ts, entry_id, author);
CREATE INDEX posts_author_time ON posts (author, ts, entry_id);
CREATE INDEX posts_root ON posts (root, ts) WHERE root IS NOT NULL;
CREATE INDEX posts_reply_to ON posts (reply_to, ts) WHERE reply_to IS NOT NULL;
