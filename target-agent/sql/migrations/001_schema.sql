-- pgferry target schema: per-source progress, guarded tables and the guard.

-- The last batch applied from each source, written in the same transaction
-- as the batch's changes: the exactly-once record.
create table pgferry.progress (
    source_id  text primary key,
    last_batch bigint not null default 0,
    applied_at timestamptz
);

-- Which tables each source has guarded, so the guard comes off a table its
-- source no longer replicates.
create table pgferry.guarded (
    source_id    text not null,
    table_schema text not null,
    table_name   text not null,
    primary key (source_id, table_schema, table_name)
);
