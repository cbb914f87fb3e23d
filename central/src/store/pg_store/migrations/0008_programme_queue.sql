-- Programme roll-ups folded from a queue (issue #17: ingest rate).
--
-- An ingest no longer writes the programme roll-ups in its own transaction: it queues
-- its batch's decisions and gate transactions as one row here (`rollup::Batch`, a few
-- kilobytes), and a central instance folds the queued rows into the roll-ups in large
-- groups, many batches' increments to the same (period, group) rows written once, in a
-- transaction that also deletes what it folded. A reader counts the rows still queued
-- beside the roll-ups, in the same snapshot, so the figures stay exact whether a batch
-- has been folded yet or not. The id orders a gate's batches as they were stored (a
-- gate's ingests take its row's lock one at a time).
CREATE TABLE programme_queue (
    id    BIGSERIAL PRIMARY KEY,
    gate  TEXT      NOT NULL,
    batch BYTEA     NOT NULL
);
