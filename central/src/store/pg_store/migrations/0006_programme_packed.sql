-- Programme roll-ups packed per UTC day (level 1) and per UTC calendar month (level 2)
-- (central/src/rollup.rs, `Level`): one row per period and group with all of that
-- group's figures in `figures` (rollup::pack), so the figures for a year read whole
-- months here and only the ends of the range by day and hour. Not partitioned: dropping
-- a month of events (retention) leaves them whole.
--
-- Sharded like the other roll-ups (migration 4): each writing connection adds to its
-- own row; a period's figures are the sum of its shards.
CREATE TABLE programme_packed (
    level SMALLINT NOT NULL,
    start BIGINT NOT NULL,
    grp TEXT COLLATE "C" NOT NULL,
    shard SMALLINT NOT NULL,
    figures BYTEA NOT NULL,
    PRIMARY KEY (level, start, grp, shard)
);
-- The rows of the roll-ups stored before this migration are built from programme_daily
-- right after it, in the same transaction (PgStore::migrate,
-- rollup_tables::build_packed).
