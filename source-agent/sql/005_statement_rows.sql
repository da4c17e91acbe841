-- Version 5: a statement's rows are queued together.
--
-- A statement-level capture (INSERT, DELETE and key-keeping UPDATE of a
-- table without a row filter) queues its rows as JSON arrays of about
-- 64 KiB each, one queue row per array, instead of one queue row per row.
-- A 1M-row INSERT: 2.4 s with a queue row per row, 1.6 s in arrays, 0.9 s
-- with no capture (scratch cluster, one-off); the cutter and
-- the reader then handle about a thousand queue rows, not a million. Rows
-- of one statement never share a key, so their order inside and across
-- its arrays does not matter; statements keep their order by seq.
--
-- Each row counts 64 bytes beyond its own size, which bounds an array of
-- narrow rows to about a thousand; a row wider than the budget shares its
-- array only with rows before it. OFFSET 0 keeps each row's JSON built
-- once: flattened, the planner builds it for the size and again for the
-- array (1M rows: 1.9 s -> 1.6 s, with no capture 0.9 s; one-off).
--
-- A statement of one row is queued as before, one object: the arrays'
-- window and grouping cost a single-row UPDATE a tenth of its TPS, the
-- check for a second row (inside the insert, not a query of its own) about
-- 3% (pgbench as in capture_cost.sh, one-off: 7,669 TPS with arrays, 8,788
-- with a row per row, 8,531 with the check).

-- How many rows new_row or old_key holds as an array; null: one object
-- (a row-level capture, or a statement of one row).
alter table pgferry.queue add column statement_rows int;

-- Arrays past 2 kB live in the queue's TOAST table: its vacuum must not
-- truncate either (see version 2), or multi-row captures would queue
-- behind the exclusive lock.
alter table pgferry.queue set (toast.vacuum_truncate = false);

-- Version 4's, but each statement's rows in arrays.
create or replace function pgferry.capture_updates() returns trigger
language plpgsql security definer as $$
declare
    v_single bigint;
begin
    -- Schema-qualified down to the operators: it runs with its caller's
    -- search_path (see capture_update in version 2).
    insert into pgferry.queue (table_id, op, new_row)
    select tg_argv[0]::pg_catalog.int4, 'U', pg_catalog.row_to_json(n.*) from pgferry_new n
    where not exists (select from pgferry_new offset 1);
    get diagnostics v_single = row_count;
    if v_single > 0 then
        return null;
    end if;
    insert into pgferry.queue (table_id, op, new_row, statement_rows)
    select tg_argv[0]::pg_catalog.int4, 'U', pg_catalog.json_agg(r), pg_catalog.count(*)
    from (select r, pg_catalog.int8div(pg_catalog.sum(pg_catalog.int4pl(pg_catalog.pg_column_size(r), 64))
                                           over (rows unbounded preceding), 65536) as part
          from (select pg_catalog.row_to_json(n.*) as r from pgferry_new n offset 0) n) parts
    group by part;
    return null;
end
$$;

-- Version 4's, but a statement's rows in arrays.
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
    v_single bigint;
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
        -- A transition table exists only for its own operation.
        if tg_op = 'INSERT' then
            insert into pgferry.queue (table_id, op, new_row)
            select tg_argv[0]::int, 'I', r
            from (select case when cardinality(v_cols) = 0 then row_to_json(n.*)
                              else (select jsonb_object_agg(c, to_jsonb(n.*) -> c) from unnest(v_cols) c)::json
                         end as r
                  from pgferry_new n) n
            where not exists (select from pgferry_new offset 1);
            get diagnostics v_single = row_count;
            if v_single = 0 then
                insert into pgferry.queue (table_id, op, new_row, statement_rows)
                select tg_argv[0]::int, 'I', json_agg(r), count(*)
                from (select r, sum(pg_column_size(r) + 64) over (rows unbounded preceding) / 65536 as part
                      from (select case when cardinality(v_cols) = 0 then row_to_json(n.*)
                                        else (select jsonb_object_agg(c, to_jsonb(n.*) -> c) from unnest(v_cols) c)::json
                                   end as r
                            from pgferry_new n offset 0) n) parts
                group by part;
            end if;
        else
            insert into pgferry.queue (table_id, op, old_key)
            select tg_argv[0]::int, 'D', r
            from (select case when v_nkeys = 1 then json_build_object(v_keys[1], to_jsonb(o.*) -> v_keys[1])
                              else (select jsonb_object_agg(k, to_jsonb(o.*) -> k) from unnest(v_keys) k)::json
                         end as r
                  from pgferry_old o) o
            where not exists (select from pgferry_old offset 1);
            get diagnostics v_single = row_count;
            if v_single = 0 then
                insert into pgferry.queue (table_id, op, old_key, statement_rows)
                select tg_argv[0]::int, 'D', json_agg(r), count(*)
                from (select r, sum(pg_column_size(r) + 64) over (rows unbounded preceding) / 65536 as part
                      from (select case when v_nkeys = 1 then json_build_object(v_keys[1], to_jsonb(o.*) -> v_keys[1])
                                        else (select jsonb_object_agg(k, to_jsonb(o.*) -> k) from unnest(v_keys) k)::json
                                   end as r
                            from pgferry_old o offset 0) o) parts
                group by part;
            end if;
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

drop function pgferry.batch_changes(bigint);

-- Version 4's, with each change's statement_rows.
create function pgferry.batch_changes(p_batch bigint)
returns table (seq bigint, table_id int, op "char", old_key json, new_row json, statement_rows int)
language sql stable as $$
    select q.seq, q.table_id, q.op, q.old_key, q.new_row, q.statement_rows
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
