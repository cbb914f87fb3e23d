-- Programme roll-ups (central/src/rollup.rs): counts per hour, group and figure, and the
-- same per day, kept at ingest so the programme figures are exact over any range. They are not partitioned:
-- dropping a month of events (retention) leaves them whole.
--
-- Like the counters (migration 3), a count is split into shards, one per writing
-- connection, so concurrent batches of different gates add to different rows; a
-- figure is the sum of its shards.
CREATE TABLE programme_hourly (
    hour BIGINT NOT NULL,
    grp TEXT COLLATE "C" NOT NULL,
    figure TEXT COLLATE "C" NOT NULL,
    shard SMALLINT NOT NULL DEFAULT 0,
    n BIGINT NOT NULL,
    PRIMARY KEY (hour, grp, figure, shard)
);
CREATE TABLE programme_daily (
    day BIGINT NOT NULL,
    grp TEXT COLLATE "C" NOT NULL,
    figure TEXT COLLATE "C" NOT NULL,
    shard SMALLINT NOT NULL DEFAULT 0,
    n BIGINT NOT NULL,
    PRIMARY KEY (day, grp, figure, shard)
);
CREATE TABLE programme_names (
    operator TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL
);
-- A decision or a gate transaction waiting for the other half of its pair.
CREATE TABLE programme_pending (
    gate TEXT COLLATE "C" NOT NULL,
    txn UUID NOT NULL,
    value JSON NOT NULL,
    PRIMARY KEY (gate, txn)
);
-- The roll-ups of the events stored before this migration are built right after it, in
-- the same transaction (PgStore::migrate, rollup_tables::rebuild).
