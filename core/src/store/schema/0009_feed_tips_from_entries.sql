-- Schema version 9: a feed's tip is read from `entries`, not copied.
--
-- Version 1 kept each feed's newest seq and entry id in `feeds`, so every
-- published post also rewrote a page of this table (one of the eight pages
-- a post's commit wrote). The tip is the feed's highest stored seq:
-- `entries` holds only main-chain entries of the held suffix
-- [low_seq ..= tip] (forks live in `forks`), and its (author, seq) index
-- finds that row in one descent. `feeds` keeps what `entries` cannot say:
-- the low end of the held suffix and the fork flag. A row exists exactly
-- while entries of the author are stored.
CREATE TABLE feeds_v9 (
    author  BLOB PRIMARY KEY NOT NULL,
    low_seq INTEGER NOT NULL DEFAULT 1,
    forked  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO feeds_v9 (author, low_seq, forked) SELECT author, low_seq, forked FROM feeds;
DROP TABLE feeds;
ALTER TABLE feeds_v9 RENAME TO feeds;
