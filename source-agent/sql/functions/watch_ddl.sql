-- The DDL watch (event trigger pgferry_watch_ddl, on ddl_command_end of
-- ALTER TABLE; after_change.sql creates it where `install` runs as a
-- superuser). In the ALTER's own transaction, for each replicated table
-- it touched:
-- - disabling its capture triggers is refused: writes made while they are
--   off would never replicate, with nothing to show it;
-- - a change of its columns or name is queued as a schema change (op 'S':
--   the shapes before and after, table_shape.sql, and the command). The
--   ALTER holds the table's lock until commit, so the entry sits at its
--   place among the table's row changes: rows before it in the old shape,
--   rows after it in the new;
-- - its registrations follow: its name, a target name that was the
--   source's, a renamed column in a column list (the old name stays, for
--   the rows queued before), a renamed key column;
-- - when the ALTER rewrote the table (note_rewrite.sql) to give a new
--   column a volatile default, or a column another type through USING,
--   values no target would reproduce: the table is copied again to each
--   target, in stream order after the change;
-- - its capture triggers are made again for its new columns.
-- attach's own ALTERs pass.
create or replace function pgferry.watch_ddl() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_table record;
    v_before jsonb;
    v_after jsonb;
    v_renamed jsonb;
begin
    if current_setting('pgferry.attaching', true) = 'on' then
        return;
    end if;
    for v_table in
        select distinct t.capture_id, c.objid as relid
        from pg_event_trigger_ddl_commands() c
        join pgferry.tables t on t.relid = c.objid and not t.removed
        where c.classid = 'pg_class'::regclass
    loop
        if exists (select from pg_trigger
                   where tgrelid = v_table.relid and tgname like 'pgferry\_capture%' and tgenabled = 'D') then
            raise exception 'table % is replicated by pgferry: its capture triggers cannot be disabled', v_table.relid::regclass
                using errcode = 'object_in_use',
                      detail = 'Writes made while they are disabled would never reach the targets.',
                      hint = 'Disable other triggers by name, or take the table out of replication first (source-agent remove-table).';
        end if;
        v_after := pgferry.table_shape(v_table.relid);
        select shape into v_before from pgferry.tables
        where capture_id = v_table.capture_id and not removed and shape is not null
        order by table_id limit 1;
        if v_before is not null and v_before is distinct from v_after then
            insert into pgferry.queue (table_id, op, new_row)
            values (v_table.capture_id, 'S',
                    json_build_object('before', v_before, 'after', v_after,
                                      'command', left(current_query(), 4000)));
            -- Columns whose number stayed and whose name changed: old name, new name.
            v_renamed := (select coalesce(jsonb_object_agg(b ->> 'name', a ->> 'name'), '{}')
                          from jsonb_array_elements(v_before -> 'columns') b
                          join jsonb_array_elements(v_after -> 'columns') a
                            on (a ->> 'attnum') = (b ->> 'attnum')
                          where a ->> 'name' <> b ->> 'name');
            update pgferry.tables t
               set source_schema = v_after ->> 'schema',
                   source_name = v_after ->> 'name',
                   target_schema = case when t.target_schema = t.source_schema and t.target_name = t.source_name
                                        then v_after ->> 'schema' else t.target_schema end,
                   target_name = case when t.target_schema = t.source_schema and t.target_name = t.source_name
                                      then v_after ->> 'name' else t.target_name end,
                   columns = case when t.columns is not null
                                  then t.columns || array(select r.value from jsonb_each_text(v_renamed) r
                                                          where r.key = any (t.columns)
                                                            and not r.value = any (t.columns))
                             end,
                   key_columns = array(select coalesce(v_renamed ->> k, k)
                                       from unnest(t.key_columns) with ordinality u(k, n) order by n)
             where t.capture_id = v_table.capture_id and not t.removed;
        end if;
        if v_before is not null
           and (',' || current_setting('pgferry.rewritten', true)) like ('%,' || v_table.relid || ',%')
           and exists (select from jsonb_array_elements(v_after -> 'columns') a
                       left join jsonb_array_elements(v_before -> 'columns') b
                         on b ->> 'attnum' = a ->> 'attnum'
                       where (b is null and a ->> 'default' is not null)
                          -- A type change without USING casts each value as
                          -- the target's own ALTER does; with one (the
                          -- catalog does not keep it: its command's text
                          -- says), the values may be anything.
                          or (b ->> 'type' <> a ->> 'type' and current_query() ~* '\musing\M')) then
            with again as (
                update pgferry.tables
                   set diverged_at = null, diverged_reason = null, set_aside_batch = null,
                       state = 'copy_pending', copy_batch = null, copy_snapshot = null, copied_at = null
                 where capture_id = v_table.capture_id and not removed
                returning target_id)
            update pgferry.targets set tables_version = tables_version + 1
            where target_id in (select target_id from again);
            raise notice 'pgferry: table % is copied again to its targets: the ALTER rewrote its rows with values a target would not compute the same',
                v_table.relid::regclass;
        end if;
        perform pgferry.attach(v_table.capture_id);
    end loop;
end
$$;
