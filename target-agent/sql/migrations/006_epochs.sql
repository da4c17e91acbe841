-- Version 6: switchover. The epoch of each source's stream: a source
-- below it is refused for good (this database took the source role from
-- it, or it was restored from before that), a higher one starts a new
-- stream from its batch 0 (a take-over elsewhere made it the source).
alter table pgferry.progress add column epoch bigint not null default 1;
