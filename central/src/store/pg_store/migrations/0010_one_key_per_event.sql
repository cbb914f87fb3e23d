-- One index entry fewer for every stored event (issue #17: ingest rate).
--
-- `events` kept two B-trees on the same three columns: its primary key (gate, seq, at_ms)
-- and `events_by_gate` (gate, at_ms, seq). A gate's seq is unique across all months by
-- `event_keys` (not partitioned); within a month's partition (gate, at_ms, seq) is as
-- unique as (gate, seq, at_ms), and its order is the one a gate's pages read. So the
-- primary key becomes (gate, at_ms, seq) and `events_by_gate` goes; what reads events in
-- (gate, seq) order (the roll-up rebuild) walks `event_keys` and finds each event by its
-- time there. Rebuilds the key of every stored month, once.
ALTER TABLE events DROP CONSTRAINT events_pkey;
DROP INDEX events_by_gate;
ALTER TABLE events ADD PRIMARY KEY (gate, at_ms, seq);

-- A queued roll-up batch (a few kilobytes, written once, read once by the next fold) is
-- compressed with lz4 rather than pglz, the default, whose compression took about 1.5 %
-- of the server's CPU at ingest; a server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE programme_queue ALTER COLUMN batch SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$$;
