-- The keys of the rows a DELETE statement removed from a table without a
-- row filter (arguments: table id, then the key columns), from its
-- transition table: one queue row for a statement of one row, arrays of
-- about 64 KiB for more (see migration 5). Schema-qualified throughout, as
-- capture_rows and for the same reason.
create or replace function pgferry.capture_deletes() returns trigger
language plpgsql security definer as $$
declare
    v_single bigint;
begin
    -- Schema-qualified down to the operators: it runs with its caller's
    -- search_path. One key column (most tables) takes the cheaper form.
    if tg_nargs OPERATOR(pg_catalog.=) 2 then
        insert into pgferry.queue (table_id, op, old_key)
        select tg_argv[0]::pg_catalog.int4, 'D',
               pg_catalog.json_build_object(tg_argv[1],
                   pg_catalog.json_object_field(pg_catalog.row_to_json(o.*), tg_argv[1]))
        from pgferry_old o
        where not exists (select from pgferry_old offset 1);
    else
        insert into pgferry.queue (table_id, op, old_key)
        select tg_argv[0]::pg_catalog.int4, 'D',
               (select pg_catalog.json_object_agg(k, pg_catalog.json_object_field(o.r, k))
                from pg_catalog.unnest(tg_argv[1:]) k)
        from (select pg_catalog.row_to_json(o.*) as r from pgferry_old o) o
        where not exists (select from pgferry_old offset 1);
    end if;
    get diagnostics v_single = row_count;
    if v_single OPERATOR(pg_catalog.>) 0 then
        return null;
    end if;
    insert into pgferry.queue (table_id, op, old_key, statement_rows)
    select tg_argv[0]::pg_catalog.int4, 'D', pg_catalog.json_agg(r), pg_catalog.count(*)
    from (select r, pg_catalog.int8div(pg_catalog.sum(pg_catalog.int4pl(pg_catalog.pg_column_size(r), 64))
                                           over (rows unbounded preceding), 65536) as part
          from (select (select pg_catalog.json_object_agg(k, pg_catalog.json_object_field(o.r, k))
                        from pg_catalog.unnest(tg_argv[1:]) k) as r
                from (select pg_catalog.row_to_json(o.*) as r from pgferry_old o offset 0) o) o) parts
    group by part;
    return null;
end
$$;
