-- pgferry source schema, version 4: INSERT and DELETE of tables without a row
-- filter are captured per statement, from its transition table, in one
-- INSERT ... SELECT: a 1M-row INSERT ... SELECT costs a fraction of a million
-- trigger calls, and a single-row INSERT no more than a row trigger. UPDATE
-- stays a row trigger (pairing a statement's old and new rows needs them).

-- Still the one capture function: called per statement for INSERT and
-- DELETE (reading the transition table) and TRUNCATE, per row otherwise.
-- Arguments: table id, mode, key count, keys..., replicated columns...
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
        v_keys := tg_argv[3:2 + v_nkeys];
        v_cols := tg_argv[3 + v_nkeys:];
        if tg_op = 'INSERT' and cardinality(v_cols) = 0 then
            insert into pgferry.queue (table_id, op, new_row)
            select tg_argv[0]::int, 'I', to_jsonb(n) from pgferry_new n;
        elsif tg_op = 'INSERT' then
            insert into pgferry.queue (table_id, op, new_row)
            select tg_argv[0]::int, 'I',
                   (select jsonb_object_agg(c, to_jsonb(n) -> c) from unnest(v_cols) c)
            from pgferry_new n;
        elsif v_nkeys = 1 then
            insert into pgferry.queue (table_id, op, old_key)
            select tg_argv[0]::int, 'D', jsonb_build_object(v_keys[1], to_jsonb(o) -> v_keys[1])
            from pgferry_old o;
        else
            insert into pgferry.queue (table_id, op, old_key)
            select tg_argv[0]::int, 'D',
                   (select jsonb_object_agg(k, to_jsonb(o) -> k) from unnest(v_keys) k)
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

create or replace function pgferry.attach(p_table_id int) returns void
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

select pgferry.attach(table_id) from pgferry.tables where not removed;
