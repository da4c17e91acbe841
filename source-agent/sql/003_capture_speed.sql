-- pgferry source schema, version 3: a cheaper capture function (no SQL
-- sub-queries per row: key and column lists are walked as trigger arguments),
-- and detach without a NOTICE for tables that never had a row filter.

create or replace function pgferry.capture() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_nkeys int;
    v_all jsonb;
    v_new jsonb;
    v_old jsonb;
    v_old_key jsonb;
    v_key_changed boolean := false;
    i int;
begin
    -- Arguments: table id, mode, key count, keys..., replicated columns...
    if tg_op = 'TRUNCATE' then
        insert into pgferry.queue (table_id, op) values (tg_argv[0]::int, 'T');
        return null;
    end if;
    v_nkeys := tg_argv[2]::int;
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

create or replace function pgferry.detach(p_table_id int) returns void
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

-- Cut on demand: with p_max_unacked set, no new batch while that many cut
-- batches wait for their ack. An idle pipeline cuts at once (low lag); a
-- busy one lets the next batch grow instead of paying a target transaction
-- and an ack for every tick.
drop function pgferry.cut_batch();
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
