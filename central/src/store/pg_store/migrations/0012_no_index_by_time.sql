-- One index entry fewer for every stored event (issue #17: ingest rate).
--
-- `events_by_time` (at ms, gate, seq) served the pages of all gates' events in time
-- order; they now walk each gate's key (gate, at ms, seq), or its lane index, and merge
-- the gates' first keys past the cursor (`pg_store::query::gates_events`), and a
-- container's page reads its events by their keys. Keeping the index cost about 1.7 µs
-- of the server's CPU for each stored event (figure 5, docs/benchmarks.md).
DROP INDEX IF EXISTS events_by_time;
