-- (Re)creates a table's capture triggers from its registration, enabled
-- ALWAYS so that session_replication_role cannot switch capture off. With a
-- row filter, an update is captured as PostgreSQL 15 publications do: old
-- and new row match: update; only the old: delete; only the new: insert;
-- neither: nothing. A filter that yields NULL does not match. The statement
-- triggers call the compiled capture functions of extension pgferry_capture
-- when `install` created it (see capture.rs), else their PL/pgSQL twins.
create or replace function pgferry.attach(p_table_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    t pgferry.tables;
    v_rel text;
    v_args text;
    v_filter text;
    v_same_key text;
    v_trigger name;
    v_compiled boolean := to_regprocedure('pgferry.compiled_capture_rows()') is not null;
    v_rows text := case when v_compiled then 'pgferry.compiled_capture_rows' else 'pgferry.capture_rows' end;
    v_deletes text := case when v_compiled then 'pgferry.compiled_capture_deletes' else 'pgferry.capture_deletes' end;
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
                        execute function %s',
                       v_rel, case when t.columns is null
                                   then format('%s(%L, %L)', v_rows, t.table_id, 'I')
                                   else format('pgferry.capture(%L, %L, %s)', t.table_id, '', v_args)
                              end);
        -- A delete carries the key alone, whatever the columns replicated.
        execute format('create trigger pgferry_capture_delete after delete on %s
                        referencing old table as pgferry_old for each statement
                        execute function %s(%s)',
                       v_rel, v_deletes, format('%L', t.table_id)
                              || (select string_agg(format(', %L', k), '' order by n)
                                  from unnest(t.key_columns) with ordinality u(k, n)));
        v_same_key := (select string_agg(format('old.%1$I is not distinct from new.%1$I', k), ' and ')
                       from unnest(t.key_columns) k);
        if t.columns is null then
            -- Every new row, once per statement; the row trigger below has
            -- already deleted the old keys of rows whose key changed (row
            -- triggers fire before statement triggers).
            execute format('create trigger pgferry_capture_update after update on %s
                            referencing new table as pgferry_new for each statement
                            execute function %s(%L, %L)',
                           v_rel, v_rows, t.table_id, 'U');
        else
            -- Most updates keep the key: the server tells those apart by
            -- the WHEN clause, without calling a function.
            execute format('create trigger pgferry_capture_update after update on %s
                            for each row when (%s) execute function pgferry.capture(%s)',
                           v_rel, v_same_key, format('%L, %L, %s', t.table_id, '', v_args));
        end if;
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
