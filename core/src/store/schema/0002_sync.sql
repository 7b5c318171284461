-- Starling store, schema version 2: replication (the /starling/sync/1 engine).

-- A feed is held as a verified contiguous suffix [low_seq ..= latest_seq].
-- Feeds stored before this migration were held from seq 1, hence the default.
-- Sync may accept the newest entry of a feed first (a "tentative head",
-- signature-checked only) and then backfill older entries whose id equals
-- the `prev` of the lowest held entry; the feed is complete when low_seq = 1.
ALTER TABLE feeds ADD COLUMN low_seq INTEGER NOT NULL DEFAULT 1;

-- Feeds this node keeps for others although they are outside its user's
-- follow scope: the relay ("pub") role for the people it invited.
CREATE TABLE hosted_feeds (
    author   BLOB PRIMARY KEY NOT NULL,
    added_at INTEGER NOT NULL
) WITHOUT ROWID;
