-- Programme roll-ups (central/src/rollup.rs): counts per hour, group and figure, kept at
-- ingest so the programme figures are exact over any range and survive retention.
CREATE TABLE programme_hourly (
    hour BIGINT NOT NULL,
    grp TEXT COLLATE "C" NOT NULL,
    figure TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (hour, grp, figure)
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
