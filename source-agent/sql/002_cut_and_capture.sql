-- Version 2.
--
-- The target commits batches asynchronously and reports them applied at
-- once and durable later; only durable ones are acknowledged (and deleted).
-- The cutter holds off on batches not yet applied, which the running agent
-- knows and passes in, rather than on unacknowledged ones.
--
-- An UPDATE that keeps the key of a table replicated whole (most updates)
-- is captured by a short function of its own; the triggers of every
-- registered table are recreated to use it.

drop function pgferry.cut_batch(bigint);

create function pgferry.cut_batch(p_max_unapplied bigint, p_applied bigint)
returns bigint
language plpgsql as $$
declare
    v_prev pgferry.batch;
    v_id bigint;
begin
    -- One cutter at a time, so snapshots grow with batch ids. An advisory
    -- lock, not a table lock: SHARE ROW EXCLUSIVE on pgferry.batch would
    -- also wait for every (auto)vacuum and analyze of it.
    perform pg_advisory_xact_lock(hashtext('pgferry.cut_batch'));
    select * into v_prev from pgferry.batch order by batch_id desc limit 1;
    if v_prev.batch_id - greatest(p_applied, (select acked_batch from pgferry.target))
           >= p_max_unapplied then
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

-- Vacuum never truncates the queue tables: truncating takes an ACCESS
-- EXCLUSIVE lock, held while it scans back over the empty tail, and every
-- capturing writer and the cutter would wait for it (tens of milliseconds,
-- again and again, on tables that empty and refill all day).
alter table pgferry.queue set (vacuum_truncate = false);
alter table pgferry.batch set (vacuum_truncate = false);

-- The new row is all the target needs for an update that kept the key.
-- Every name in it is schema-qualified, so it needs no search_path of its
-- own: setting one costs each call a configuration save and restore, a
-- tenth of what capture costs a single-row update.
create function pgferry.capture_update() returns trigger
language plpgsql security definer as $$
begin
    insert into pgferry.queue (table_id, op, new_row)
    values (tg_argv[0]::pg_catalog.int4, 'U', pg_catalog.to_jsonb(new));
    return null;
end
$$;

-- Version 1's, but for the update triggers of a table without a row filter.
create or replace function pgferry.attach(p_table_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    t pgferry.tables;
    v_rel text;
    v_args text;
    v_filter text;
    v_same_key text;
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
        -- Most updates keep the key: the server tells those apart by the
        -- WHEN clause, without calling a function.
        v_same_key := (select string_agg(format('old.%1$I is not distinct from new.%1$I', k), ' and ')
                       from unnest(t.key_columns) k);
        execute format('create trigger pgferry_capture_update after update on %s
                        for each row when (%s) execute function %s',
                       v_rel, v_same_key,
                       case when t.columns is null
                            then format('pgferry.capture_update(%L)', t.table_id)
                            else format('pgferry.capture(%L, %L, %s)', t.table_id, '', v_args) end);
        execute format('create trigger pgferry_capture_update_key after update on %s
                        for each row when (not (%s)) execute function pgferry.capture(%s)',
                       v_rel, v_same_key, format('%L, %L, %s', t.table_id, '', v_args));
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

select pgferry.attach(table_id) from pgferry.tables where not removed;
