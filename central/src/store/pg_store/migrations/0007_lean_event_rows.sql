-- Fewer rows and index entries per stored event (issue #17: ingest rate).
--
-- `event_txn` (one row and one index entry per event naming a gate transaction) gives way
-- to an index on `events (txn)`: the same look-ups (a transaction's entries, of any gate)
-- read it, one index entry per event and no table of its own. It has an entry only for
-- events that name a transaction, and it goes with its month's partition (retention).
-- The decision index holds decisions only: the other events have no decision, and every
-- query that filters on it names one.
CREATE INDEX events_by_txn ON events (txn) WHERE txn IS NOT NULL;
DROP TABLE event_txn;
DROP INDEX events_by_decision;
CREATE INDEX events_by_decision ON events (decision, at_ms, gate, seq)
    WHERE decision IS NOT NULL;
