-- Concurrent ingest (docs/architecture.md, "PostgreSQL backend"): nothing every batch
-- writes is one shared row any more, so agents' batches (and instances) no longer queue
-- behind each other's transactions.
--
-- Case, alert and audit ids come from sequences, which take no row lock; an id is never
-- reused, but a rolled-back transaction leaves a gap. Registry change numbers stay in
-- `meta` (`change_seq`): agents replicate them and must see no gaps.
CREATE SEQUENCE case_id_seq;
CREATE SEQUENCE alert_id_seq;
CREATE SEQUENCE audit_id_seq;
SELECT setval(name || '_seq', GREATEST(n, 1), n > 0)
    FROM meta WHERE name IN ('case_id', 'alert_id', 'audit_id');
DELETE FROM meta WHERE name IN ('case_id', 'alert_id', 'audit_id');

-- Counters are split into shards, one per writing connection (its backend pid modulo
-- 64): concurrent transactions add to different rows. A counter is the sum of its
-- shards; a shard may go below zero (a case counted OPEN on one connection and moved
-- on by another), the sum does not.
ALTER TABLE counters ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE counters DROP CONSTRAINT counters_pkey;
ALTER TABLE counters ADD PRIMARY KEY (scope, name, shard);
