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

-- The one capture function of every replicated table: called per statement
-- for INSERT and DELETE (reading the transition table; far cheaper for
-- multi-row statements) and TRUNCATE, per row for UPDATE and for tables
-- with a row filter.
-- Arguments: table id, mode, key count, keys..., replicated columns...
create function pgferry.capture() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_nkeys int;
    v_keys text[];
    v_cols text[];
    v_all jsonb;
    v_new jsonb;
    v_old jsonb;
    v_old_key jsonb;
    v_key_changed boolean := false;
    i int;
begin
    if tg_op = 'TRUNCATE' then
        insert into pgferry.queue (table_id, op) values (tg_argv[0]::int, 'T');
        return null;
    end if;
    v_nkeys := tg_argv[2]::int;
    if tg_level = 'STATEMENT' then
        -- n.* and o.* are whole rows even when the table has a column n or o.
        v_keys := tg_argv[3:2 + v_nkeys];
        v_cols := tg_argv[3 + v_nkeys:];
        if tg_op = 'INSERT' and cardinality(v_cols) = 0 then
            insert into pgferry.queue (table_id, op, new_row)
            select tg_argv[0]::int, 'I', to_jsonb(n.*) from pgferry_new n;
        elsif tg_op = 'INSERT' then
            insert into pgferry.queue (table_id, op, new_row)
            select tg_argv[0]::int, 'I',
                   (select jsonb_object_agg(c, to_jsonb(n.*) -> c) from unnest(v_cols) c)
            from pgferry_new n;
        elsif v_nkeys = 1 then
            insert into pgferry.queue (table_id, op, old_key)
            select tg_argv[0]::int, 'D', jsonb_build_object(v_keys[1], to_jsonb(o.*) -> v_keys[1])
            from pgferry_old o;
        else
            insert into pgferry.queue (table_id, op, old_key)
            select tg_argv[0]::int, 'D',
                   (select jsonb_object_agg(k, to_jsonb(o.*) -> k) from unnest(v_keys) k)
            from pgferry_old o;
        end if;
        return null;
    end if;
    if tg_op <> 'DELETE' and tg_argv[1] <> 'D' then
        v_new := to_jsonb(new);
        if tg_nargs > 3 + v_nkeys then
            -- Only the replicated columns leave the source.
            v_all := v_new;
            v_new := '{}';
            for i in 3 + v_nkeys .. tg_nargs - 1 loop
                v_new := v_new || jsonb_build_object(tg_argv[i], v_all -> tg_argv[i]);
            end loop;
        end if;
        if tg_op = 'INSERT' or tg_argv[1] = 'I' then
            insert into pgferry.queue (table_id, op, new_row) values (tg_argv[0]::int, 'I', v_new);
            return null;
        end if;
    end if;
    v_old := to_jsonb(old);
    v_old_key := '{}';
    for i in 3 .. 2 + v_nkeys loop
        v_old_key := v_old_key || jsonb_build_object(tg_argv[i], v_old -> tg_argv[i]);
        v_key_changed := v_key_changed or (v_new -> tg_argv[i]) is distinct from (v_old -> tg_argv[i]);
    end loop;
    if tg_op = 'DELETE' or tg_argv[1] = 'D' then
        insert into pgferry.queue (table_id, op, old_key) values (tg_argv[0]::int, 'D', v_old_key);
    elsif v_key_changed then
        -- The target drops the row under the old key first.
        insert into pgferry.queue (table_id, op, old_key, new_row) values (tg_argv[0]::int, 'U', v_old_key, v_new);
    else
        insert into pgferry.queue (table_id, op, new_row) values (tg_argv[0]::int, 'U', v_new);
    end if;
    return null;
end
$$;

-- Drops a table's capture triggers and row filter function.
create function pgferry.detach(p_table_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_relid oid;
    v_trigger name;
    v_filter regprocedure;
begin
    select relid into v_relid from pgferry.tables where table_id = p_table_id;
    for v_trigger in
        select tgname from pg_trigger where tgrelid = v_relid and tgname like 'pgferry\_capture%'
    loop
        execute format('drop trigger %I on %s', v_trigger, v_relid::regclass);
    end loop;
    for v_filter in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'pgferry'::regnamespace and p.proname = 'row_filter_' || p_table_id
    loop
        execute format('drop function %s', v_filter);
    end loop;
end
$$;


-- (Re)creates a table's capture triggers from its registration, enabled
-- ALWAYS so that session_replication_role cannot switch capture off. With a
-- row filter, an update is captured as PostgreSQL 15 publications do: old
-- and new row match: update; only the old: delete; only the new: insert;
-- neither: nothing. A filter that yields NULL does not match.
create function pgferry.attach(p_table_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    t pgferry.tables;
    v_rel text;
    v_args text;
    v_filter text;
    v_trigger name;
begin
    select * into strict t from pgferry.tables where table_id = p_table_id;
    perform pgferry.detach(p_table_id);
    v_rel := t.relid::regclass::text;
    -- After id and mode: the key count, the keys, the replicated columns.
    v_args := format('%L', cardinality(t.key_columns))
        || coalesce((select string_agg(format(', %L', k), '' order by n)
                     from unnest(t.key_columns) with ordinality u(k, n)), '')
        || coalesce((select string_agg(format(', %L', c), '' order by n)
                     from unnest(t.columns) with ordinality u(c, n)), '');
    if t.row_filter is null then
        execute format('create trigger pgferry_capture_insert after insert on %s
                        referencing new table as pgferry_new for each statement
                        execute function pgferry.capture(%s)',
                       v_rel, format('%L, %L, %s', t.table_id, '', v_args));
        execute format('create trigger pgferry_capture_delete after delete on %s
                        referencing old table as pgferry_old for each statement
                        execute function pgferry.capture(%s)',
                       v_rel, format('%L, %L, %s', t.table_id, '', v_args));
        execute format('create trigger pgferry_capture_update after update on %s
                        for each row execute function pgferry.capture(%s)',
                       v_rel, format('%L, %L, %s', t.table_id, '', v_args));
    else
        v_filter := 'pgferry.' || quote_ident('row_filter_' || t.table_id);
        execute format('create function %s(r %s) returns boolean language sql stable as %L',
                       v_filter, v_rel,
                       format('select coalesce((select (%s) from (select ($1).*) as f), false)', t.row_filter));
        execute format('create trigger pgferry_capture_insert after insert on %s for each row
                        when (%s(new)) execute function pgferry.capture(%s)',
                       v_rel, v_filter, format('%L, %L, %s', t.table_id, '', v_args));
        execute format('create trigger pgferry_capture_delete after delete on %s for each row
                        when (%s(old)) execute function pgferry.capture(%s)',
                       v_rel, v_filter, format('%L, %L, %s', t.table_id, '', v_args));
        execute format('create trigger pgferry_capture_update after update on %s for each row
                        when (%s(old) and %s(new)) execute function pgferry.capture(%s)',
                       v_rel, v_filter, v_filter, format('%L, %L, %s', t.table_id, '', v_args));
        execute format('create trigger pgferry_capture_update_in after update on %s for each row
                        when (not %s(old) and %s(new)) execute function pgferry.capture(%s)',
                       v_rel, v_filter, v_filter, format('%L, %L, %s', t.table_id, 'I', v_args));
        execute format('create trigger pgferry_capture_update_out after update on %s for each row
                        when (%s(old) and not %s(new)) execute function pgferry.capture(%s)',
                       v_rel, v_filter, v_filter, format('%L, %L, %s', t.table_id, 'D', v_args));
    end if;
    execute format('create trigger pgferry_capture_truncate after truncate on %s
                    for each statement execute function pgferry.capture(%L, %L, %L)', v_rel, t.table_id, '', 0);
    for v_trigger in
        select tgname from pg_trigger where tgrelid = t.relid and tgname like 'pgferry\_capture%'
    loop
        execute format('alter table %s enable always trigger %I', v_rel, v_trigger);
    end loop;
end
$$;

-- Cuts the next batch if committed changes wait or a table waits for its
-- copy (which then becomes part of this batch). Cut on demand: with
-- p_max_unacked set, no new batch while that many cut
-- batches wait for their ack. An idle pipeline cuts at once (low lag); a
-- busy one lets the next batch grow instead of paying a target transaction
-- and an ack for every tick.
create function pgferry.cut_batch(p_max_unacked bigint default null) returns bigint
language plpgsql as $$
declare
    v_prev pgferry.batch;
    v_id bigint;
begin
    -- One cutter at a time, so snapshots grow with batch ids.
    lock table pgferry.batch in share row exclusive mode;
    select * into v_prev from pgferry.batch order by batch_id desc limit 1;
    if v_prev.batch_id - (select acked_batch from pgferry.target) >= p_max_unacked then
        return null;
    end if;
    with cut as (
        insert into pgferry.batch (batch_id, snapshot)
        select v_prev.batch_id + 1, s.snap
        from (select pg_current_snapshot() as snap) s
        where exists (
                select from pgferry.queue q
                where q.txid >= pg_snapshot_xmin(v_prev.snapshot)
                  and pg_visible_in_snapshot(q.txid, s.snap)
                  and not pg_visible_in_snapshot(q.txid, v_prev.snapshot))
           or exists (select from pgferry.tables where state = 'copy_pending')
        returning batch_id
    ), copying as (
        update pgferry.tables t set state = 'copying', copy_batch = cut.batch_id
        from cut where t.state = 'copy_pending'
    )
    select batch_id into v_id from cut;
    return v_id;
end
$$;

-- The changes of batch p_batch: those of the transactions visible in its
-- snapshot and not in the previous one, in seq order; less, for a copied
-- table, the changes already in its copy, and, for a removed table, those
-- cut after its removal. Plain SQL and STABLE, so the planner inlines it and
-- a portal over it streams.
create function pgferry.batch_changes(p_batch bigint)
returns table (seq bigint, table_id int, op "char", old_key jsonb, new_row jsonb, txid xid8)
language sql stable as $$
    select q.seq, q.table_id, q.op, q.old_key, q.new_row, q.txid
    from pgferry.queue q
    join pgferry.tables t on t.table_id = q.table_id,
         pgferry.batch p,
         pgferry.batch c
    where p.batch_id = p_batch - 1 and c.batch_id = p_batch
      and q.txid >= pg_snapshot_xmin(p.snapshot) and q.txid < pg_snapshot_xmax(c.snapshot)
      and pg_visible_in_snapshot(q.txid, c.snapshot)
      and not pg_visible_in_snapshot(q.txid, p.snapshot)
      and (t.copy_snapshot is null or not pg_visible_in_snapshot(q.txid, t.copy_snapshot))
      and (t.removed_batch is null or p_batch <= t.removed_batch)
    order by q.seq
$$;

-- The target has committed every batch up to p_batch: delete what is no
-- longer needed, in one transaction, idempotently. p_fresh (a new ack, not
-- the progress a reconnecting target reports) also clears the last error.
create function pgferry.acknowledge(p_batch bigint, p_fresh boolean) returns bigint
language plpgsql as $$
declare
    v_snapshot pg_snapshot;
    v_deleted bigint;
begin
    select snapshot into v_snapshot from pgferry.batch where batch_id = p_batch;
    if v_snapshot is null then
        return 0;  -- already cleaned up
    end if;
    delete from pgferry.queue
    where txid < pg_snapshot_xmax(v_snapshot) and pg_visible_in_snapshot(txid, v_snapshot);
    get diagnostics v_deleted = row_count;
    delete from pgferry.batch where batch_id < p_batch;
    update pgferry.target
    set acked_batch = greatest(acked_batch, p_batch), acked_at = now(),
        last_error = case when p_fresh then null else last_error end,
        last_error_at = case when p_fresh then null else last_error_at end;
    update pgferry.tables set state = 'replicating', copied_at = now()
    where state = 'copying' and copy_batch <= p_batch;
    -- Once every transaction the copy saw is acked, its filter is moot.
    update pgferry.tables set copy_snapshot = null
    where state = 'replicating' and copy_snapshot is not null
      and pg_snapshot_xmax(copy_snapshot) <= pg_snapshot_xmin(v_snapshot);
    perform pgferry.forget_removed();
    return v_deleted;
end
$$;

-- Removed tables whose last shipped batch is acked: drop their leftover
-- changes and their registration.
create function pgferry.forget_removed() returns void
language plpgsql as $$
declare
    v_acked bigint := (select acked_batch from pgferry.target);
begin
    delete from pgferry.queue q using pgferry.tables t
    where q.table_id = t.table_id and t.removed and t.removed_batch <= v_acked;
    with gone as (
        delete from pgferry.tables where removed and removed_batch <= v_acked returning 1
    )
    update pgferry.target set tables_version = tables_version + 1
    where exists (select from gone);
end
$$;
