-- Version 3: the target keeps the cut (snapshot and time, see BatchChunk.cut)
-- of each source's last applied batch. A source restored from a backup, or
-- failed over to a standby that had not received its last batches, cuts new
-- batches under ids the target has applied; comparing cuts at the stream's
-- start finds that out, where comparing ids alone let the target skip the
-- new batch as applied.
alter table pgferry.progress add column last_cut text;
