-- Version 14: schema changes in stream order. The DDL watch queues a
-- change of a replicated table's columns or name as a queue row of op 'S'
-- (the table's shape before and after, by column number) in the DDL's own
-- transaction; each registration keeps the shape last queued, and each
-- target says whether it applies schema changes or pauses at them.
alter table pgferry.tables add column shape jsonb;

alter table pgferry.targets
    add column ddl text not null default 'apply' check (ddl in ('apply', 'pause'));

-- Schema changes an operator made on a target by hand (ddl-done): that
-- target takes the new shape without running the change.
create table pgferry.ddl_done (
    target_id int    not null references pgferry.targets on delete cascade,
    seq       bigint not null,
    done_at   timestamptz not null default now(),
    primary key (target_id, seq)
);

-- Schemas whose new tables a target takes as they are created
-- (`add-table --schema S --follow`).
create table pgferry.followed_schemas (
    target_id     int  not null references pgferry.targets on delete cascade,
    schema_name   text not null,
    -- LIKE patterns of table names left out.
    exclude       text[] not null default '{}',
    create_target boolean not null default false,
    primary key (target_id, schema_name)
);

-- The column lists now carry each column's number.
drop function if exists pgferry.replicated_column_lists(oid, text[]);

-- A stream's hello looks up the schema changes still queued.
create index queue_schema_changes on pgferry.queue (table_id, seq) where op = 'S';
