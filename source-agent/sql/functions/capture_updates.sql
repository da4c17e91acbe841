-- The capture of an UPDATE statement's rows (trigger arguments: table id,
-- then the key columns), from its old and new transition tables: for each
-- updated row its key and the columns the statement changed, not the whole
-- row, so that an unchanged large value is not queued again. The columns
-- shipped are those changed in any of the statement's rows (the SET list,
-- most often), compared by their JSON text: a value that = calls equal but
-- that reads differently (1.0 and 1.00) counts as changed. A statement
-- that changed a key, or whose transition tables do not pair up, queues
-- whole rows, as before: the target applies a changed key by the row
-- trigger's delete and the statement's whole new rows (attach). A
-- statement that changed nothing queues nothing. One queue row for one
-- row, arrays of about 64 KiB for more (see migration 5).
-- Old and new rows pair by their place in the transition tables:
-- PostgreSQL adds each updated row's old and new versions to them
-- together. Comparing values reads them, large ones from disk: the
-- compiled twin (extension pgferry_capture) compares stored values and
-- TOAST pointers instead and reads no unchanged value.
-- pgferry.define_capture_updates makes such a function, named p_name,
-- rendering each row as p_row renders row n: pgferry.capture_updates,
-- below, with row_to_json; attach makes pgferry.capture_updates_<id>, in
-- the captured columns' text forms, for a table with a column that needs
-- its text form. Schema-qualified throughout, as capture_rows.
create or replace function pgferry.define_capture_updates(p_name text, p_row text) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    execute format($f$
        create or replace function %1$s() returns trigger
        language plpgsql security definer as $body$
        declare
            v_columns pg_catalog.text[];
            v_changed bigint;
            v_single bigint;
        begin
            -- Schema-qualified down to the operators: it runs with its
            -- caller's search_path.
            with o as (select pg_catalog.row_number() over () as i, %2$s as r from pgferry_old n),
                 n as (select pg_catalog.row_number() over () as i, %2$s as r from pgferry_new n),
                 -- Both versions are rendered alike, so their fields come
                 -- in the same order: ROWS FROM pairs them in one pass
                 -- over each row's JSON (looking each field up by name
                 -- parsed the row again per column: bench/capture_cost.sh's
                 -- 100,000-row UPDATE of a table with a jsonb column took
                 -- 3.2 s that way, 2.1 s this one).
                 changed as (
                     select distinct f.c
                     from o join n on o.i OPERATOR(pg_catalog.=) n.i
                     cross join lateral rows from (pg_catalog.json_each(n.r), pg_catalog.json_each(o.r))
                         f(c, nv, oc, ov)
                     where f.nv::pg_catalog.text IS DISTINCT FROM f.ov::pg_catalog.text
                        or f.c IS DISTINCT FROM f.oc)
            select case when (select pg_catalog.count(*) from o) OPERATOR(pg_catalog.<>) (select pg_catalog.count(*) from n)
                          or exists (select from changed where c OPERATOR(pg_catalog.=) any (tg_argv[1:]))
                        then null
                        else array(select k.c
                                              from pg_catalog.json_object_keys((select n.r from n limit 1))
                                                   with ordinality k(c, p)
                                              where k.c OPERATOR(pg_catalog.=) any (tg_argv[1:])
                                                 or k.c in (select c from changed)
                                              order by k.p) end,
                   (select pg_catalog.count(*) from changed)
            into v_columns, v_changed;
            if v_changed OPERATOR(pg_catalog.=) 0 then
                return null;
            end if;
            insert into pgferry.queue (table_id, op, new_row)
            select tg_argv[0]::pg_catalog.int4, 'U',
                   case when v_columns is null then n.r
                        else (select pg_catalog.json_object_agg(c, pg_catalog.json_object_field(n.r, c))
                              from pg_catalog.unnest(v_columns) c) end
            from (select %2$s as r from pgferry_new n) n
            where not exists (select from pgferry_new offset 1);
            get diagnostics v_single = row_count;
            if v_single OPERATOR(pg_catalog.>) 0 then
                return null;
            end if;
            insert into pgferry.queue (table_id, op, new_row, statement_rows)
            select tg_argv[0]::pg_catalog.int4, 'U', pg_catalog.json_agg(r), pg_catalog.count(*)
            from (select r, pg_catalog.int8div(pg_catalog.sum(pg_catalog.int4pl(pg_catalog.pg_column_size(r), 64))
                                                   over (rows unbounded preceding), 65536) as part
                  from (select case when v_columns is null then n.r
                                    else (select pg_catalog.json_object_agg(c, pg_catalog.json_object_field(n.r, c))
                                          from pg_catalog.unnest(v_columns) c) end as r
                        from (select %2$s as r from pgferry_new n offset 0) n) n) parts
            group by part;
            return null;
        end
        $body$
        $f$, p_name, p_row);
end
$$;

select pgferry.define_capture_updates('pgferry.capture_updates', 'pg_catalog.row_to_json(n.*)');
