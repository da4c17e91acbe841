-- pgferry source schema: registered tables and sequences, the change queue,
-- the batch cuts, and the functions that capture, cut, read and acknowledge.

create table pgferry.tables (
    table_id      int generated always as identity primary key,
    -- The table itself; follows renames.
    relid         oid not null unique,
    source_schema text not null,
    source_name   text not null,
    target_schema text not null,
    target_name   text not null,
    key_columns   text[] not null,
    -- Replicated columns (null: all).
    columns       text[],
    -- Only rows matching this predicate replicate (null: all).
    row_filter    text,
    -- Ask the target agent to create the table when it is missing.
    create_target boolean not null default false,
    -- copy_pending: waits for its copy batch; copying: its copy batch is cut
    -- and not yet acked; replicating: the target has the copy.
    state         text not null default 'copy_pending'
        check (state in ('copy_pending', 'copying', 'replicating')),
    -- The batch whose transaction truncates and loads the target table.
    copy_batch    bigint,
    -- The snapshot the copy was read with. Changes of transactions visible
    -- in it are in the copy and are not shipped again.
    copy_snapshot pg_snapshot,
    copy_rows           bigint,
    copy_bytes          bigint,
    copy_rows_estimate  bigint,
    copy_bytes_estimate bigint,
    copy_started_at     timestamptz,
    copied_at           timestamptz,
    -- remove-table ran; the row stays until the changes cut before it ship.
    removed       boolean not null default false,
    -- After remove-table: the last batch that still ships the table's changes.
    removed_batch bigint,
    added_at      timestamptz not null default now()
);

create table pgferry.sequences (
    seq_id        int generated always as identity primary key,
    relid         oid not null unique,
    source_schema text not null,
    source_name   text not null,
    target_schema text not null,
    target_name   text not null,
    -- Ask the target agent to create the sequence when it is missing.
    create_target boolean not null default false,
    added_at      timestamptz not null default now()
);

-- One row per captured change. seq is capture order, not commit order: the
-- batch cuts (pgferry.batch) decide which committed changes ship together.
create table pgferry.queue (
    seq         bigint generated always as identity primary key,
    txid        xid8 not null default pg_current_xact_id(),
    table_id    int not null,
    -- 'I' insert, 'U' update, 'D' delete, 'T' truncate
    op          "char" not null,
    old_key     jsonb,
    new_row     jsonb,
    captured_at timestamptz not null default now()
);
create index queue_txid on pgferry.queue (txid);

-- Batch k holds the changes of the transactions visible in snapshot k and not
-- in snapshot k-1. Batch 0 is the starting point and ships nothing.
create table pgferry.batch (
    batch_id bigint primary key,
    snapshot pg_snapshot not null,
    cut_at   timestamptz not null default now()
);
insert into pgferry.batch (batch_id, snapshot) values (0, pg_current_snapshot());

-- What the source agent knows of its target, for `status`.
create table pgferry.target (
    singleton      boolean primary key default true check (singleton),
    acked_batch    bigint not null default 0,
    acked_at       timestamptz,
    last_error     text,
    last_error_at  timestamptz,
    -- Bumped by every change of the table or sequence list, so a running
    -- agent knows to announce the new list to the target.
    tables_version bigint not null default 0
);
insert into pgferry.target default values;
