-- Schema version 10: a post row shares its entry's rowid.
--
-- A post's commit wrote a page of the posts (author, seq) unique index,
-- which only repeated what `entries` knows: the post of entry rowid R is
-- now posts row R, so a post is found from its entry (by id, or by
-- (author, seq) through the entries index) with one rowid lookup, and the
-- index is gone. One author's posts are read along entries (author, seq).
-- The full-text index refers to post rowids, so it is rebuilt; every post
-- stored so far is indexed afterwards.
CREATE TABLE posts_v10 (
    entry_id    BLOB NOT NULL,
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
INSERT INTO posts_v10 (rowid, entry_id, author, seq, ts, text, reply_to, root, mentions, attachments, deleted)
    SELECT e.rowid, p.entry_id, p.author, p.seq, p.ts, p.text, p.reply_to, p.root, p.mentions, p.attachments, p.deleted
    FROM posts p JOIN entries e ON e.author = p.author AND e.seq = p.seq
    ORDER BY e.rowid;
-- The old index's terms point at the old rowids: empty it while the old
-- table still holds the texts, then index the new table.
INSERT INTO posts_fts (posts_fts) VALUES ('delete-all');
DROP TABLE posts;
ALTER TABLE posts_v10 RENAME TO posts;
CREATE INDEX posts_time ON posts (ts, entry_id, author);
CREATE INDEX posts_root ON posts (root, ts) WHERE root IS NOT NULL;
CREATE INDEX posts_reply_to ON posts (reply_to, ts) WHERE reply_to IS NOT NULL;
INSERT INTO posts_fts (rowid, text)
    SELECT rowid, text FROM posts WHERE deleted = 0 AND text IS NOT NULL ORDER BY rowid;
UPDATE search_progress SET indexed_through = COALESCE((SELECT MAX(rowid) FROM posts), 0) WHERE id = 1;
