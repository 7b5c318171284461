-- Schema version 7: cheaper publishing (fewer pages written per post).
--
-- 1. The local user's own posts enter the full-text index in batches, not
--    one FTS5 segment per publish (see apply.rs `index_pending_posts`).
--    The index covers exactly the posts whose rowid is at most
--    `indexed_through`; rows above it are indexed by the next catch-up
--    (an ingested batch, a search, a delete or block, or a publish that
--    finds enough posts waiting). Every post stored so far is indexed.
CREATE TABLE search_progress (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through  INTEGER NOT NULL
);
INSERT INTO search_progress (id, indexed_through)
    VALUES (1, COALESCE((SELECT MAX(rowid) FROM posts), 0));

-- 2. One author's feed is read in feed order, by the posts (author, seq)
--    unique index (a chain's timestamps never go back, so seq order is
--    newest first). The time-ordered copy of that index is one more page
--    written per post and is dropped.
DROP INDEX posts_author_time;
