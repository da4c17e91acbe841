-- Version 4: a leaner queue.
--
-- The cutter, the batch reader and the acknowledgement find queue rows by
-- the ranges of transaction ids that committed between two snapshots, not
-- by one range from the older snapshot's xmin filtered row by row. A
-- transaction still running sits inside that one range: every cut (each
-- tick) and every read walked all of its queued rows, a million for a
-- million-row INSERT, and skipped them. The ranges leave running
-- transactions out, so each lookup reads only rows it returns.
--
-- Each range's lookup is an index condition in any plan: cut_batch's
-- check, as the generic plan PL/pgSQL settles on after five calls, had
-- become a sequential scan of the whole queue (85 ms a tick with a million
-- rows queued: a core for as long as they were).

-- Nothing looks a queue row up by seq (batches are read by txid and sorted
-- by seq): its primary key index cost every captured row an index insert,
-- half a second of a 1M-row INSERT's 3.2 s.
alter table pgferry.queue drop constraint queue_pkey;

-- Rows are queued as json text (row_to_json), not jsonb: the target reads
-- them as text anyway, and building jsonb, then printing it back to text
-- for every read, is work nobody needs. A 1M-row INSERT's capture: 2.69 s
-- with to_jsonb into jsonb, 2.42 s with row_to_json into json (scratch
-- cluster). The other capture paths build their key and column objects as
-- jsonb still (they need jsonb's operators) and store them as json.

alter table pgferry.queue
    alter column old_key type json using old_key::json,
    alter column new_row type json using new_row::json;

drop function if exists pgferry.batch_changes(bigint);
