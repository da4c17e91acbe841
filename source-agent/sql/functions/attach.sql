-- (Re)creates the capture triggers of a table's capture (p_capture_id, the
-- id its changes are queued under) from its live registrations, enabled
-- ALWAYS so that session_replication_role cannot switch capture off; drops
-- them when none is left. The change is captured once for all of them:
-- the union of their columns (all when one takes all). When none filters
-- rows, statement triggers queue the rows: as row_to_json renders them,
-- calling the compiled capture functions of extension pgferry_capture when
-- `install` created it (see capture.rs), else their PL/pgSQL twins; or,
-- when a captured column travels in its text form (pgferry.text_form), by
-- a function made here (pgferry.capture_rows_<id>, capture_rows.sql)
-- rendering every captured column's text form. When a registration
-- filters rows, or a key column travels in its text form, a row trigger (a
-- function made here, pgferry.capture_filtered_<id>, which also takes a
-- key-changing update of a table with statement triggers and text forms)
-- queues each change in text forms and which registrations' filters its
-- old and new row match, skipping a change that no registration takes;
-- each target's read then decides as PostgreSQL 15 publications do
-- (pgferry.route). The made functions name the columns: the DDL watch
-- (watch_ddl.sql) makes them again when the table changes, and compares
-- the table's next change with the shape recorded here.
create or replace function pgferry.attach(p_capture_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_relid oid;
    v_keys text[];
    v_columns text[];
    v_filtered boolean;
    v_everyone boolean;
    v_rel text;
    v_args text;
    v_same_key text;
    v_hits text;
    v_filter record;
    v_exact boolean;
    v_exact_keys boolean;
    v_statements boolean;
    v_encode text;
    v_trigger name;
    v_partitioned boolean;
    v_row_trigger text := 'pgferry_capture_row';
    v_compiled boolean := to_regprocedure('pgferry.compiled_capture_rows()') is not null;
    v_rows text := case when v_compiled then 'pgferry.compiled_capture_rows' else 'pgferry.capture_rows' end;
    v_deletes text := case when v_compiled then 'pgferry.compiled_capture_deletes' else 'pgferry.capture_deletes' end;
    v_updates text := case when to_regprocedure('pgferry.compiled_capture_updates()') is not null
                           then 'pgferry.compiled_capture_updates' else 'pgferry.capture_updates' end;
    v_key_args text;
begin
    -- The DDL watch lets this function's own ALTERs pass (watch_ddl.sql).
    perform set_config('pgferry.attaching', 'on', true);
    perform pgferry.detach(p_capture_id);
    select min(relid), bool_or(row_filter is not null), bool_or(row_filter is null)
    into v_relid, v_filtered, v_everyone
    from pgferry.tables where capture_id = p_capture_id and not removed;
    -- One key for all (add-table gives a table's later registrations the
    -- first one's).
    v_keys := (select key_columns from pgferry.tables
               where capture_id = p_capture_id and not removed order by table_id limit 1);
    if v_relid is null then
        delete from pgferry.partitions where capture_id = p_capture_id;
        perform set_config('pgferry.attaching', 'off', true);
        return;
    end if;
    v_partitioned := (select relkind = 'p' from pg_class where oid = v_relid);
    if v_partitioned then
        -- Inherited by every partition, at any depth, now and later, under
        -- one name: one of its own (a partition may be captured as a table
        -- of its own too).
        v_row_trigger := 'pgferry_partitioned_row_' || p_capture_id;
    end if;
    if not exists (select from pgferry.tables
                   where capture_id = p_capture_id and not removed and columns is null) then
        v_columns := array(select a.attname::text from pg_attribute a
                           where a.attrelid = v_relid and a.attnum > 0 and not a.attisdropped
                             and exists (select from pgferry.tables t
                                         where t.capture_id = p_capture_id and not t.removed
                                           and a.attname = any (t.columns || t.key_columns))
                           order by a.attnum);
    end if;
    v_rel := v_relid::regclass::text;
    -- After id and mode: the key count, the keys, the replicated columns.
    v_args := format('%L', cardinality(v_keys))
        || coalesce((select string_agg(format(', %L', k), '' order by n)
                     from unnest(v_keys) with ordinality u(k, n)), '')
        || coalesce((select string_agg(format(', %L', c), '' order by n)
                     from unnest(v_columns) with ordinality u(c, n)), '');
    -- Whether a captured column would not read back from row_to_json.
    v_exact := exists (select from pg_attribute a
                       where a.attrelid = v_relid and a.attnum > 0 and not a.attisdropped
                         and (v_columns is null or a.attname::text = any (v_columns || v_keys))
                         and pgferry.text_form(a.atttypid));
    -- Whether a key column would not read back from row_to_json: its
    -- deletes then need the text forms too.
    v_exact_keys := exists (select from pg_attribute a
                            where a.attrelid = v_relid and a.attname::text = any (v_keys)
                              and pgferry.text_form(a.atttypid));
    -- A row %1$s as a JSON object of its captured columns' text forms
    -- (json_object takes arrays: no limit on the number of columns).
    -- Quoted always: PL/pgSQL takes some names that quote_ident leaves bare
    -- for its own words (old.by); schema-qualified, as the statement
    -- capture runs with its caller's search_path. A % in a name is
    -- doubled: the result is a format string.
    v_encode := format('pg_catalog.json_object(%s::pg_catalog.text[], array[%s]::pg_catalog.text[])',
                       replace(format('%L', (select array_agg(a.attname::text order by a.attnum)
                                             from pg_attribute a
                                             where a.attrelid = v_relid and a.attnum > 0
                                               and not a.attisdropped
                                               and (v_columns is null
                                                    or a.attname::text = any (v_columns || v_keys)))),
                               '%', '%%'),
                       (select string_agg(format('%%1$s.%s::pg_catalog.text',
                                                 replace('"' || replace(a.attname, '"', '""') || '"', '%', '%%')),
                                          ', ' order by a.attnum)
                        from pg_attribute a
                        where a.attrelid = v_relid and a.attnum > 0 and not a.attisdropped
                          and (v_columns is null or a.attname::text = any (v_columns || v_keys))));
    -- Statement triggers unless a registration filters rows, a key column
    -- needs its text form (the generic delete capture renders keys with
    -- row_to_json), the table is an inheritance child or a partition (a
    -- statement on its parent changes its rows firing only its row
    -- triggers), or it is partitioned: a statement naming a partition fires
    -- only that partition's statement triggers, and a row an UPDATE moves
    -- to another partition fires a row DELETE and a row INSERT, no UPDATE.
    v_statements := not v_filtered and not v_exact_keys and not v_partitioned
                    and not exists (select from pg_inherits where inhrelid = v_relid);
    if v_exact and v_statements then
        -- Statements' rows in their text forms (capture_rows.sql), which
        -- the encoder already cuts down to the captured columns.
        v_rows := format('pgferry.capture_rows_%s', p_capture_id);
        perform pgferry.define_capture_rows(v_rows, format(v_encode, 'n'));
        v_updates := format('pgferry.capture_updates_%s', p_capture_id);
        perform pgferry.define_capture_updates(v_updates, format(v_encode, 'n'));
        v_columns := null;
    end if;
    if not v_statements or v_exact then
        for v_filter in
            select table_id, row_filter from pgferry.tables
            where capture_id = p_capture_id and not removed and row_filter is not null
              and set_aside_batch is null
        loop
            -- A partitioned table's rows come in each partition's own row
            -- type: the same column names, not always at the same places.
            execute format('create function pgferry.row_filter_%s(r %s) returns boolean language sql stable as %L',
                           v_filter.table_id, case when v_partitioned then 'anyelement' else v_rel end,
                           format('select coalesce((select (%s) from (select ($1).*) as f), false)',
                                  v_filter.row_filter));
        end loop;
        -- The ids of the registrations whose filter row %1$s matches (none
        -- recorded when no registration filters). A registration set aside
        -- ships nothing until it is copied again (which attaches anew), and
        -- its filter may name a column a schema change took away.
        v_hits := format('array_remove(array[%s]::int[], null)',
                         (select string_agg(format('case when pgferry.row_filter_%s(%%1$s) then %s end',
                                                   table_id, table_id), ', ' order by table_id)
                          from pgferry.tables
                          where capture_id = p_capture_id and not removed and row_filter is not null
                            and set_aside_batch is null));
        -- The row capture: every change of a table without statement
        -- triggers, or a key-changing update of one with them.
        execute format($f$
            create function pgferry.capture_filtered_%s() returns trigger
            language plpgsql security definer set search_path = pg_catalog, pg_temp as $body$
            begin
                perform pgferry.capture_row(%s, tg_op, %L::text[], %L::text[], %L,
                    case when tg_op <> 'INSERT' then %s end,
                    case when tg_op <> 'DELETE' then %s end,
                    %s, %s);
                return null;
            end
            $body$
            $f$,
            p_capture_id, p_capture_id, v_keys, v_columns, v_everyone,
            format(v_encode, 'old'), format(v_encode, 'new'),
            case when v_filtered then format('case when tg_op = ''INSERT'' then ''{}'' else %s end',
                                             format(v_hits, 'old')) else 'null' end,
            case when v_filtered then format('case when tg_op = ''DELETE'' then ''{}'' else %s end',
                                             format(v_hits, 'new')) else 'null' end);
        if v_partitioned then
            -- The rows of one partition (p_rel) entering the table as
            -- inserts or leaving it as deletes, when it is attached,
            -- detached or emptied alone (follow_partitions.sql,
            -- truncate_begins.sql): captured as the row trigger would.
            -- One statement over the partition, planned for its own row
            -- type (partitions may order their columns differently).
            execute format($f$
                create function pgferry.capture_rows_of_%s(p_rel regclass, p_op text) returns void
                language plpgsql security definer set search_path = pg_catalog, pg_temp as $body$
                begin
                    execute %L || p_rel::text || ' r' using p_op;
                end
                $body$
                $f$,
                p_capture_id,
                format('select pgferry.capture_row(%s, $1, %L::text[], %L::text[], %L,
                            case when $1 = ''DELETE'' then %s end,
                            case when $1 = ''INSERT'' then %s end,
                            %s, %s) from ',
                       p_capture_id, v_keys, v_columns, v_everyone,
                       format(v_encode, 'r'), format(v_encode, 'r'),
                       case when v_filtered then format('case when $1 = ''INSERT'' then ''{}'' else %s end',
                                                        format(v_hits, 'r')) else 'null' end,
                       case when v_filtered then format('case when $1 = ''DELETE'' then ''{}'' else %s end',
                                                        format(v_hits, 'r')) else 'null' end));
        end if;
    end if;
    if v_statements then
        execute format('create trigger pgferry_capture_insert after insert on %s
                        referencing new table as pgferry_new for each statement
                        execute function %s',
                       v_rel, case when v_columns is null
                                   then format('%s(%L, %L)', v_rows, p_capture_id, 'I')
                                   else format('pgferry.capture(%L, %L, %s)', p_capture_id, '', v_args)
                              end);
        -- The capture id, then the key columns.
        v_key_args := format('%L', p_capture_id)
                      || (select string_agg(format(', %L', k), '' order by n)
                          from unnest(v_keys) with ordinality u(k, n));
        -- A delete carries the key alone, whatever the columns replicated.
        execute format('create trigger pgferry_capture_delete after delete on %s
                        referencing old table as pgferry_old for each statement
                        execute function %s(%s)',
                       v_rel, v_deletes, v_key_args);
        v_same_key := (select string_agg(format('old.%1$I is not distinct from new.%1$I', k), ' and ')
                       from unnest(v_keys) k);
        if v_columns is null then
            -- Every updated row's key and changed columns, once per
            -- statement (capture_updates.sql); the row trigger below has
            -- already deleted the old keys of rows whose key changed (row
            -- triggers fire before statement triggers), and a statement
            -- that changed a key ships whole rows.
            execute format('create trigger pgferry_capture_update after update on %s
                            referencing old table as pgferry_old new table as pgferry_new
                            for each statement execute function %s(%s)',
                           v_rel, v_updates, v_key_args);
        else
            -- Most updates keep the key: the server tells those apart by
            -- the WHEN clause, without calling a function.
            execute format('create trigger pgferry_capture_update after update on %s
                            for each row when (%s) execute function pgferry.capture(%s)',
                           v_rel, v_same_key, format('%L, %L, %s', p_capture_id, '', v_args));
        end if;
        execute format('create trigger pgferry_capture_update_key after update on %s
                        for each row when (not (%s)) execute function %s',
                       v_rel, v_same_key,
                       case when v_exact then format('pgferry.capture_filtered_%s()', p_capture_id)
                            else format('pgferry.capture(%L, %L, %s)', p_capture_id, '', v_args) end);
    else
        execute format('create trigger %I after insert or update or delete on %s
                        for each row execute function pgferry.capture_filtered_%s()',
                       v_row_trigger, v_rel, p_capture_id);
    end if;
    execute format('create trigger pgferry_capture_truncate after truncate on %s
                    for each statement execute function pgferry.capture(%L, %L, %L)', v_rel, p_capture_id, '', 0);
    for v_trigger in
        select tgname from pg_trigger where tgrelid = v_relid and tgname like 'pgferry\_capture%'
    loop
        execute format('alter table %s enable always trigger %I', v_rel, v_trigger);
    end loop;
    if v_partitioned then
        -- Its partitions inherit the row trigger enabled ALWAYS.
        execute format('alter table %s enable always trigger %I', v_rel, v_row_trigger);
        perform pgferry.partition_triggers(p_capture_id, v_relid);
        -- The partitions as they are now: the DDL watch has already
        -- followed the tree to here (follow_partitions.sql).
        delete from pgferry.partitions k
        where k.capture_id = p_capture_id
          and k.relid not in (select relid from pg_partition_tree(v_relid));
        insert into pgferry.partitions (relid, capture_id)
        select p.relid, p_capture_id from pg_partition_tree(v_relid) p
        where p.relid <> v_relid
        on conflict do nothing;
        perform pgferry.partition_triggers(p_capture_id, p.relid)
        from pg_partition_tree(v_relid) p where p.relid <> v_relid;
    end if;
    -- The shape the DDL watch compares the table's next ALTER with.
    update pgferry.tables set shape = pgferry.table_shape(v_relid)
    where capture_id = p_capture_id and not removed;
    perform set_config('pgferry.attaching', 'off', true);
end
$$;
