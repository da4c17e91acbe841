-- Version 5: a statement's rows are queued together.
--
-- A statement-level capture (INSERT, DELETE and key-keeping UPDATE of a
-- table without a row filter) queues its rows as JSON arrays of about
-- 64 KiB each, one queue row per array, instead of one queue row per row.
-- A 1M-row INSERT: 2.4 s with a queue row per row, 1.6 s in arrays, 0.9 s
-- with no capture (scratch cluster, one-off); the cutter and
-- the reader then handle about a thousand queue rows, not a million. Rows
-- of one statement never share a key, so their order inside and across
-- its arrays does not matter; statements keep their order by seq.
--
-- Each row counts 64 bytes beyond its own size, which bounds an array of
-- narrow rows to about a thousand; a row wider than the budget shares its
-- array only with rows before it. OFFSET 0 keeps each row's JSON built
-- once: flattened, the planner builds it for the size and again for the
-- array (1M rows: 1.9 s -> 1.6 s, with no capture 0.9 s; one-off).
--
-- A statement of one row is queued as before, one object: the arrays'
-- window and grouping cost a single-row UPDATE a tenth of its TPS, the
-- check for a second row (inside the insert, not a query of its own) about
-- 3% (pgbench as in capture_cost.sh, one-off: 7,669 TPS with arrays, 8,788
-- with a row per row, 8,531 with the check).

-- How many rows new_row or old_key holds as an array; null: one object
-- (a row-level capture, or a statement of one row).
alter table pgferry.queue add column statement_rows int;

-- Arrays past 2 kB live in the queue's TOAST table: its vacuum must not
-- truncate either (see version 2), or multi-row captures would queue
-- behind the exclusive lock.
alter table pgferry.queue set (toast.vacuum_truncate = false);

drop function if exists pgferry.batch_changes(bigint);
