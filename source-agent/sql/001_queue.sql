-- pgferry source schema, version 1: registered tables, the change queue, the
-- batch cuts, the capture trigger function and the batch cutter.

create table pgferry.tables (
    table_id      int generated always as identity primary key,
    -- The table itself; follows renames.
    relid         oid not null unique,
    source_schema text not null,
    source_name   text not null,
    target_schema text not null,
    target_name   text not null,
    key_columns   text[] not null,
    -- Capture stopped; the row stays until its queued changes have shipped.
    removed       boolean not null default false,
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
    singleton     boolean primary key default true check (singleton),
    acked_batch   bigint not null default 0,
    acked_at      timestamptz,
    last_error    text,
    last_error_at timestamptz
);
insert into pgferry.target default values;

-- The one capture function of every replicated table. Arguments: the table's
-- id, then its key columns. An update records the old key only when the key
-- changed, so the target knows to drop the row under the old key.
create function pgferry.capture() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_old jsonb;
    v_new jsonb;
    v_old_key jsonb;
begin
    if tg_op = 'TRUNCATE' then
        insert into pgferry.queue (table_id, op) values (tg_argv[0]::int, 'T');
        return null;
    end if;
    if tg_op = 'INSERT' then
        insert into pgferry.queue (table_id, op, new_row) values (tg_argv[0]::int, 'I', to_jsonb(new));
        return null;
    end if;
    v_old := to_jsonb(old);
    select jsonb_object_agg(k, v_old -> k) into v_old_key from unnest(tg_argv[1:]) k;
    if tg_op = 'DELETE' then
        insert into pgferry.queue (table_id, op, old_key) values (tg_argv[0]::int, 'D', v_old_key);
        return null;
    end if;
    v_new := to_jsonb(new);
    if exists (select from unnest(tg_argv[1:]) k where (v_new -> k) is distinct from (v_old -> k)) then
        insert into pgferry.queue (table_id, op, old_key, new_row) values (tg_argv[0]::int, 'U', v_old_key, v_new);
    else
        insert into pgferry.queue (table_id, op, new_row) values (tg_argv[0]::int, 'U', v_new);
    end if;
    return null;
end
$$;

-- Cuts the next batch if any transaction committed since the last cut wrote
-- to the queue. Returns the new batch id, or null when there was nothing.
create function pgferry.cut_batch() returns bigint
language plpgsql as $$
declare
    v_prev pgferry.batch;
    v_id bigint;
begin
    -- One cutter at a time, so snapshots grow with batch ids.
    lock table pgferry.batch in share row exclusive mode;
    select * into v_prev from pgferry.batch order by batch_id desc limit 1;
    insert into pgferry.batch (batch_id, snapshot)
    select v_prev.batch_id + 1, s.snap
    from (select pg_current_snapshot() as snap) s
    where exists (
        select from pgferry.queue q
        where q.txid >= pg_snapshot_xmin(v_prev.snapshot)
          and pg_visible_in_snapshot(q.txid, s.snap)
          and not pg_visible_in_snapshot(q.txid, v_prev.snapshot))
    returning batch_id into v_id;
    return v_id;
end
$$;

-- The changes of batch p_batch: those of the transactions visible in its
-- snapshot and not in the previous one, in seq order. A pure function of the
-- two snapshots and the immutable queue rows, so a resend after any crash
-- carries the same changes. Plain SQL and STABLE, so the planner inlines it
-- and a portal over it streams.
create function pgferry.batch_changes(p_batch bigint)
returns table (seq bigint, table_id int, op "char", old_key jsonb, new_row jsonb, txid xid8)
language sql stable as $$
    select q.seq, q.table_id, q.op, q.old_key, q.new_row, q.txid
    from pgferry.queue q,
         pgferry.batch p,
         pgferry.batch c
    where p.batch_id = p_batch - 1 and c.batch_id = p_batch
      and q.txid >= pg_snapshot_xmin(p.snapshot) and q.txid < pg_snapshot_xmax(c.snapshot)
      and pg_visible_in_snapshot(q.txid, c.snapshot)
      and not pg_visible_in_snapshot(q.txid, p.snapshot)
    order by q.seq
$$;
