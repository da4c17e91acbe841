-- The capture function of what capture_rows and capture_deletes do not
-- take: called per statement for TRUNCATE and for INSERT into a table with a
-- column list (reading the transition table; far cheaper for multi-row
-- statements), per row for the UPDATEs of such a table, for an UPDATE that
-- changes the key and for every change of a table with a row filter.
-- Arguments: table id, mode, key count, keys..., replicated columns...
create or replace function pgferry.capture() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_nkeys int;
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
        -- n.* is the whole row even when the table has a column n.
        v_cols := tg_argv[3 + v_nkeys:];
        -- Only an INSERT of a table with a column list comes here per
        -- statement (see attach).
        insert into pgferry.queue (table_id, op, new_row)
        select tg_argv[0]::int, 'I', r
        from (select (select jsonb_object_agg(c, to_jsonb(n.*) -> c) from unnest(v_cols) c)::json as r
              from pgferry_new n) n
        where not exists (select from pgferry_new offset 1);
        get diagnostics v_single = row_count;
        if v_single = 0 then
            insert into pgferry.queue (table_id, op, new_row, statement_rows)
            select tg_argv[0]::int, 'I', json_agg(r), count(*)
            from (select r, sum(pg_column_size(r) + 64) over (rows unbounded preceding) / 65536 as part
                  from (select (select jsonb_object_agg(c, to_jsonb(n.*) -> c) from unnest(v_cols) c)::json as r
                        from pgferry_new n offset 0) n) parts
            group by part;
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
