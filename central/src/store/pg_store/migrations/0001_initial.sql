-- Central's tables on PostgreSQL (docs/architecture.md, "PostgreSQL backend").
-- Records are JSON in the serde form the redb backend stores; the columns beside them
-- are the keys and the fields the queries filter and sort on. Text keys use the "C"
-- collation so that ordering (and cursors) is byte order, as in the redb backend.
-- Times are milliseconds since the Unix epoch (BIGINT), as the event index keys are.
-- Records are JSON, not JSONB: JSONB refuses the escape \u0000, and an agent forwards
-- strings that hardware sent; a batch that could never be stored would block its agent.

CREATE TABLE meta (
    name TEXT COLLATE "C" PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO meta (name, n) VALUES
    ('change_seq', 0), ('case_id', 0), ('alert_id', 0), ('audit_id', 0);

CREATE TABLE counters (
    scope TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (scope, name)
);

CREATE TABLE agent_tokens (
    token BYTEA PRIMARY KEY,
    value JSON NOT NULL
);

CREATE TABLE gates (
    gate TEXT COLLATE "C" PRIMARY KEY,
    value JSON NOT NULL
);

-- One row per stored journal entry: the constraints that make ingest idempotent (one
-- entry per (gate, seq), one seq per (gate, entry id)) and the chain links. Not
-- partitioned, so the constraints hold across all months.
CREATE TABLE event_keys (
    gate TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    entry_id UUID NOT NULL,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (gate, seq),
    UNIQUE (gate, entry_id)
);

-- The events themselves, partitioned by month of the entry's time (partitions are
-- created on demand by the backend, named events_YYYY_MM).
CREATE TABLE events (
    gate TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    lane TEXT COLLATE "C",
    decision TEXT COLLATE "C",
    txn UUID,
    value JSON NOT NULL,
    PRIMARY KEY (gate, seq, at_ms)
) PARTITION BY RANGE (at_ms);
-- The dashboard's event queries: all events by time, one gate's, one lane's, one
-- decision's, a transaction's.
CREATE INDEX events_by_time ON events (at_ms, gate, seq);
CREATE INDEX events_by_gate ON events (gate, at_ms, seq);
CREATE INDEX events_by_lane ON events (gate, lane, at_ms, seq);
CREATE INDEX events_by_decision ON events (decision, at_ms, gate, seq);

-- Entries ingest refused (another gate's transaction or gate named): evidence only,
-- apart from `events` so no query, export, statistic or case sees them.
CREATE TABLE refused_events (
    gate TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    value JSON NOT NULL,
    PRIMARY KEY (gate, seq)
);

-- Which entries concern a gate transaction (any gate), and its containers.
CREATE TABLE event_txn (
    txn UUID NOT NULL,
    gate TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (txn, gate, seq)
);
CREATE TABLE txn_containers (
    txn UUID NOT NULL,
    container TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (txn, container)
);
CREATE TABLE event_containers (
    container TEXT COLLATE "C" NOT NULL,
    at_ms BIGINT NOT NULL,
    gate TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (container, at_ms, gate, seq)
);

CREATE TABLE hourly (
    gate TEXT COLLATE "C" NOT NULL,
    hour BIGINT NOT NULL,
    figure TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (gate, hour, figure)
);
CREATE INDEX hourly_by_hour ON hourly (hour);

CREATE TABLE alerts (
    id BIGINT PRIMARY KEY,
    gate TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    value JSON NOT NULL,
    UNIQUE (gate, seq, kind)
);

CREATE TABLE cases (
    id BIGINT PRIMARY KEY,
    state TEXT COLLATE "C" NOT NULL,
    gate TEXT COLLATE "C" NOT NULL,
    lane TEXT COLLATE "C",
    reasons TEXT[] NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    value JSON NOT NULL
);
CREATE INDEX cases_by_state ON cases (state, id);
-- Cases are linked by (gate, transaction): a transaction belongs to the gate that
-- journaled it.
CREATE TABLE case_by_txn (
    gate TEXT COLLATE "C" NOT NULL,
    txn UUID NOT NULL,
    case_id BIGINT NOT NULL,
    PRIMARY KEY (gate, txn)
);

CREATE TABLE changes (
    seq BIGINT PRIMARY KEY,
    operator TEXT COLLATE "C",
    value JSON NOT NULL
);
CREATE INDEX changes_by_operator ON changes (operator, seq);
CREATE TABLE operators (
    id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGINT NOT NULL,
    value JSON NOT NULL
);
CREATE TABLE mras (
    recognising TEXT COLLATE "C" NOT NULL,
    partner TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    value JSON NOT NULL,
    PRIMARY KEY (recognising, partner)
);
CREATE TABLE consignments (
    id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGINT NOT NULL,
    value JSON NOT NULL
);
CREATE TABLE consignment_index (
    key TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (key, id)
);

CREATE TABLE audit (
    id BIGINT PRIMARY KEY,
    value JSON NOT NULL
);
CREATE TABLE users (
    name TEXT COLLATE "C" PRIMARY KEY,
    value JSON NOT NULL
);
CREATE TABLE sessions (
    token BYTEA PRIMARY KEY,
    value JSON NOT NULL
);
