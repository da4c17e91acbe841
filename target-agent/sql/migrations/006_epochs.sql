-- Version 6: switchover. The epoch of each source's stream: a source
-- below it is refused for good (this database took the source role from
-- it, or it was restored from before that), a higher one starts a new
-- stream from its batch 0 (a take-over elsewhere made it the source).
alter table pgferry.progress add column epoch bigint not null default 1;

-- What a promotion needs to make this database the source of a source's
-- tables (`target-agent promote`): each guarded table's schema, name and
-- key on that source, as its stream announced them.
alter table pgferry.guarded
    add column source_schema text,
    add column source_table  text,
    add column key_columns   text[];
