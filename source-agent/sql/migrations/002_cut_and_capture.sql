-- Version 2.
--
-- The target commits batches asynchronously and reports them applied at
-- once and durable later; only durable ones are acknowledged (and deleted).
-- The cutter holds off on batches not yet applied, which the running agent
-- knows and passes in, rather than on unacknowledged ones.
--
-- An UPDATE that keeps the key of a table replicated whole (most updates)
-- is captured by a short function of its own; the triggers of every
-- registered table are recreated to use it.

drop function if exists pgferry.cut_batch(bigint);

-- Vacuum never truncates the queue tables: truncating takes an ACCESS
-- EXCLUSIVE lock, held while it scans back over the empty tail, and every
-- capturing writer and the cutter would wait for it (tens of milliseconds,
-- again and again, on tables that empty and refill all day).
alter table pgferry.queue set (vacuum_truncate = false);
alter table pgferry.batch set (vacuum_truncate = false);
