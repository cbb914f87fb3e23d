-- The programme roll-ups without their per-day table (issue #17: ingest rate).
--
-- Every read of a range takes its days from the packed day level (migration 6) and its
-- ends from the hourly counts, and the packed levels are built from the hourly counts;
-- the per-day rows were written on every fold and read by nothing else. A copy from
-- another backend carries the hourly counts and builds the packed levels from them.
DROP TABLE IF EXISTS programme_daily;
