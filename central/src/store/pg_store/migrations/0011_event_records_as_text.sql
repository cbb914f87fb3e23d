-- Each stored event's record as text (issue #17: ingest rate).
--
-- A `json` column checks every value it is given by parsing it again: about 2.3 µs of the
-- server's CPU for each event's kilobyte of JSON (a `COPY` of the same rows into a `text`
-- column took 3.2–3.4 µs an event against 5.6–5.7); at ingest, four sessions at once, the
-- server's CPU an event fell from 37–40 µs to 30–31 (figure 5, docs/benchmarks.md).
-- Central writes every record from its own serialiser and reads each back through the
-- same parser, so the server's check adds nothing.
--
-- Without rewriting a stored month: new events carry `record` and leave `value` empty;
-- events stored before keep `value`. Every reader takes `COALESCE(record, value::text)`,
-- and the view `event_records` gives analysts one JSON column over both. Retention drops
-- the old months' rows in time.
ALTER TABLE events ADD COLUMN record TEXT;
ALTER TABLE events ALTER COLUMN value DROP NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_one_record
    CHECK ((value IS NULL) <> (record IS NULL)) NOT VALID;

CREATE VIEW event_records AS
    SELECT gate, seq, at_ms, lane, decision, txn, COALESCE(record::json, value) AS value
    FROM events;
