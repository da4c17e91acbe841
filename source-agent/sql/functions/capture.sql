-- The capture function of what capture_rows and capture_deletes do not
-- take: called per statement for TRUNCATE and for INSERT into a table with a
-- column list (reading the transition table; far cheaper for multi-row
-- statements), per row for the UPDATEs of such a table (its key and the
-- columns the UPDATE changed), for an UPDATE that
-- changes the key and for every change of a table with a row filter.
-- Arguments: table id, mode, key count, keys..., replicated columns...
create or replace function pgferry.capture() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_nkeys int;
    v_cols text[];
    v_new json;
    v_old json;
    v_old_key json;
    v_key_changed boolean := false;
    v_single bigint;
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
        from (select (select json_object_agg(c, n.r -> c) from unnest(v_cols) c) as r
              from (select row_to_json(n.*) as r from pgferry_new n) n) n
        where not exists (select from pgferry_new offset 1);
        get diagnostics v_single = row_count;
        if v_single = 0 then
            insert into pgferry.queue (table_id, op, new_row, statement_rows)
            select tg_argv[0]::int, 'I', json_agg(r), count(*)
            from (select r, sum(pg_column_size(r) + 64) over (rows unbounded preceding) / 65536 as part
                  from (select (select json_object_agg(c, n.r -> c) from unnest(v_cols) c) as r
                        from (select row_to_json(n.*) as r from pgferry_new n offset 0) n) n) parts
            group by part;
        end if;
        return null;
    end if;
    if tg_op <> 'DELETE' and tg_argv[1] <> 'D' then
        -- row_to_json, not to_jsonb: a float's -0 keeps its sign. (A
        -- table with a column row_to_json cannot render exactly is
        -- captured by the functions attach makes for it instead.)
        v_new := row_to_json(new);
        if tg_nargs > 3 + v_nkeys then
            -- Only the replicated columns leave the source.
            v_new := (select json_object_agg(c, v_new -> c) from unnest(tg_argv[3 + v_nkeys:]) c);
        end if;
        if tg_op = 'INSERT' or tg_argv[1] = 'I' then
            insert into pgferry.queue (table_id, op, new_row) values (tg_argv[0]::int, 'I', v_new);
            return null;
        end if;
    end if;
    v_old := row_to_json(old);
    v_old_key := (select json_object_agg(k, v_old -> k) from unnest(tg_argv[3:2 + v_nkeys]) k);
    v_key_changed := exists (select from unnest(tg_argv[3:2 + v_nkeys]) k
                             where (v_new ->> k) is distinct from (v_old ->> k));
    if tg_op = 'DELETE' or tg_argv[1] = 'D' then
        insert into pgferry.queue (table_id, op, old_key) values (tg_argv[0]::int, 'D', v_old_key);
    elsif v_key_changed then
        -- The target drops the row under the old key first.
        insert into pgferry.queue (table_id, op, old_key, new_row) values (tg_argv[0]::int, 'U', v_old_key, v_new);
    else
        -- The key and the columns the update changed, compared by their
        -- JSON text (1.0 and 1.00 differ); nothing when none changed.
        v_new := (select json_object_agg(k.c, v_new -> k.c order by k.p)
                  from json_object_keys(v_new) with ordinality k(c, p)
                  where k.c = any (tg_argv[3:2 + v_nkeys])
                     or (v_new -> k.c)::text is distinct from (v_old -> k.c)::text);
        if (select count(*) from json_object_keys(v_new)) > v_nkeys then
            insert into pgferry.queue (table_id, op, new_row) values (tg_argv[0]::int, 'U', v_new);
        end if;
    end if;
    return null;
end
$$;
