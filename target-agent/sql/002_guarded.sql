-- pgferry target schema, version 2: which tables each source has guarded,
-- so the guard comes off a table its source no longer replicates.
create table pgferry.guarded (
    source_id    text not null,
    table_schema text not null,
    table_name   text not null,
    primary key (source_id, table_schema, table_name)
);
