-- Version 4: a leaner queue.
--
-- The cutter, the batch reader and the acknowledgement find queue rows by
-- the ranges of transaction ids that committed between two snapshots, not
-- by one range from the older snapshot's xmin filtered row by row. A
-- transaction still running sits inside that one range: every cut (each
-- tick) and every read walked all of its queued rows, a million for a
-- million-row INSERT, and skipped them. The ranges leave running
-- transactions out, so each lookup reads only rows it returns.
--
-- Each range's lookup is an index condition in any plan: cut_batch's
-- check, as the generic plan PL/pgSQL settles on after five calls, had
-- become a sequential scan of the whole queue (85 ms a tick with a million
-- rows queued: a core for as long as they were).

-- Nothing looks a queue row up by seq (batches are read by txid and sorted
-- by seq): its primary key index cost every captured row an index insert,
-- half a second of a 1M-row INSERT's 3.2 s.
alter table pgferry.queue drop constraint queue_pkey;

-- Rows are queued as json text (row_to_json), not jsonb: the target reads
-- them as text anyway, and building jsonb, then printing it back to text
-- for every read, is work nobody needs. A 1M-row INSERT's capture: 2.69 s
-- with to_jsonb into jsonb, 2.42 s with row_to_json into json (scratch
-- cluster). The other capture paths build their key and column objects as
-- jsonb still (they need jsonb's operators) and store them as json.

alter table pgferry.queue
    alter column old_key type json using old_key::json,
    alter column new_row type json using new_row::json;

-- Version 3's, but from row_to_json.
create or replace function pgferry.capture_updates() returns trigger
language plpgsql security definer as $$
begin
    insert into pgferry.queue (table_id, op, new_row)
    select tg_argv[0]::pg_catalog.int4, 'U', pg_catalog.row_to_json(n.*) from pgferry_new n;
    return null;
end
$$;

-- Version 1's, but the INSERT of a table replicated whole from row_to_json.
create or replace function pgferry.capture() returns trigger
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
            select tg_argv[0]::int, 'I', row_to_json(n.*) from pgferry_new n;
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

-- The transaction id after x.
create function pgferry.xid8_after(x xid8) returns xid8
language sql immutable strict parallel safe
return (x::text::numeric + 1)::text::xid8;

-- Half-open ranges [lo, hi) of the transaction ids visible in p_snapshot
-- and not in p_after (null: every id visible in p_snapshot), in a few
-- ranges: those running at p_after and finished by p_snapshot, one id
-- each, then the ids from p_after's xmax to p_snapshot's, cut around those
-- still running at p_snapshot.
create function pgferry.committed_ranges(p_snapshot pg_snapshot, p_after pg_snapshot)
returns table (lo xid8, hi xid8)
language sql immutable parallel safe rows 3 as $$
    select x, pgferry.xid8_after(x)
    from pg_snapshot_xip(p_after) x
    where pg_visible_in_snapshot(x, p_snapshot)
    union all
    select lo, hi
    from (select coalesce(pgferry.xid8_after(lag(b) over (order by b)),
                          coalesce(pg_snapshot_xmax(p_after), '0'::xid8)) as lo,
                 b as hi
          from (select b from pg_snapshot_xip(p_snapshot) b
                where b >= coalesce(pg_snapshot_xmax(p_after), '0'::xid8)
                union all
                select pg_snapshot_xmax(p_snapshot)) bounds) r
    where lo < hi
$$;

create or replace function pgferry.cut_batch(p_max_unapplied bigint, p_applied bigint)
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
                select from pgferry.committed_ranges(s.snap, v_prev.snapshot) r
                where exists (select from pgferry.queue q
                              where q.txid >= r.lo and q.txid < r.hi))
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

drop function pgferry.batch_changes(bigint);

create function pgferry.batch_changes(p_batch bigint)
returns table (seq bigint, table_id int, op "char", old_key json, new_row json, txid xid8)
language sql stable as $$
    select q.seq, q.table_id, q.op, q.old_key, q.new_row, q.txid
    from pgferry.batch p
    join pgferry.batch c on c.batch_id = p_batch
    cross join lateral pgferry.committed_ranges(c.snapshot, p.snapshot) r
    -- OFFSET 0 keeps this a lookup per range: joined flat, the planner
    -- took the ranges for a filter over a sequential scan of the queue.
    cross join lateral (select * from pgferry.queue q
                        where q.txid >= r.lo and q.txid < r.hi offset 0) q
    join pgferry.tables t on t.table_id = q.table_id
    where p.batch_id = p_batch - 1
      and (t.copy_snapshot is null or not pg_visible_in_snapshot(q.txid, t.copy_snapshot))
      and (t.removed_batch is null or p_batch <= t.removed_batch)
    order by q.seq
$$;

create or replace function pgferry.acknowledge(p_batch bigint, p_fresh boolean) returns bigint
language plpgsql as $$
declare
    v_snapshot pg_snapshot;
    v_deleted bigint;
begin
    select snapshot into v_snapshot from pgferry.batch where batch_id = p_batch;
    if v_snapshot is null then
        return 0;  -- already cleaned up
    end if;
    delete from pgferry.queue q
    using pgferry.committed_ranges(v_snapshot, null) r
    where q.txid >= r.lo and q.txid < r.hi;
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
