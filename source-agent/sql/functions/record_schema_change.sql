-- Records a change of a replicated table's shape (table_shape.sql) made in
-- this transaction by p_command, if its columns or name changed since the
-- shape last recorded; called by the DDL watch (watch_ddl.sql) and by
-- `source-agent ddl` where there is no watch. In the DDL's own transaction:
-- - the change is queued as a schema change (op 'S': the shapes before and
--   after, and the command). The DDL holds the table's lock until commit,
--   so the entry sits at its place among the table's row changes: rows
--   before it in the old shape, rows after it in the new;
-- - its registrations follow: its name, a target name that was the
--   source's, a renamed column in a column list (the old name stays, for
--   the rows queued before), a renamed key column;
-- - when the DDL rewrote the table (p_rewritten; note_rewrite.sql) to give
--   a new column a volatile default, or a column another type through
--   USING, values no target would reproduce: the table is copied again to
--   each target, in stream order after the change;
-- - a registration whose --where names a column the change dropped,
--   renamed or retyped is stopped: marked diverged, naming the column, and
--   set aside (its filter no longer says what it said, or names a column
--   that is gone, which would fail the DDL itself when the capture is made
--   again; the other registrations and tables go on);
-- - its capture triggers are made again for its new columns (attach, which
--   records the new shape).
create or replace function pgferry.record_schema_change(
    p_capture_id int, p_relid oid, p_rewritten boolean, p_command text) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_before jsonb;
    v_after jsonb;
    v_renamed jsonb;
begin
    v_after := pgferry.table_shape(p_relid);
    select shape into v_before from pgferry.tables
    where capture_id = p_capture_id and not removed and shape is not null
    order by table_id limit 1;
    if v_before is not null and v_before is distinct from v_after then
        insert into pgferry.queue (table_id, op, new_row)
        values (p_capture_id, 'S',
                json_build_object('before', v_before, 'after', v_after,
                                  'command', left(p_command, 4000)));
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
         where t.capture_id = p_capture_id and not t.removed;
    end if;
    if v_before is not null
       and p_rewritten
       and exists (select from jsonb_array_elements(v_after -> 'columns') a
                   left join jsonb_array_elements(v_before -> 'columns') b
                     on b ->> 'attnum' = a ->> 'attnum'
                   where (b is null and a ->> 'default' is not null)
                      -- A type change without USING casts each value as
                      -- the target's own ALTER does; with one (the
                      -- catalog does not keep it: its command's text
                      -- says), the values may be anything.
                      or (b ->> 'type' <> a ->> 'type' and p_command ~* '\musing\M')) then
        with again as (
            update pgferry.tables
               set diverged_at = null, diverged_reason = null, set_aside_batch = null,
                   state = 'copy_pending', copy_batch = null, copy_snapshot = null, copied_at = null
             where capture_id = p_capture_id and not removed
            returning target_id)
        update pgferry.targets set tables_version = tables_version + 1
        where target_id in (select target_id from again);
        raise notice 'pgferry: table % is copied again to its targets: the ALTER rewrote its rows with values a target would not compute the same',
            p_relid::regclass;
    end if;
    if v_before is not null then
        update pgferry.tables t
           set diverged_at = now(),
               diverged_reason = format('its --where names column %s, which a schema change dropped, renamed or retyped: '
                                        'take it out (remove-table) and add it again with a filter the table now allows',
                                        c.name),
               set_aside_batch = g.acked_batch
          from pgferry.targets g,
               (select b ->> 'name' as name, (b ->> 'attnum')::int2 as attnum
                from jsonb_array_elements(v_before -> 'columns') b
                left join jsonb_array_elements(v_after -> 'columns') a on a ->> 'attnum' = b ->> 'attnum'
                where a is null or a ->> 'type' <> b ->> 'type' or a ->> 'name' <> b ->> 'name') c
         where t.capture_id = p_capture_id and not t.removed and t.row_filter is not null
           and t.diverged_at is null and g.target_id = t.target_id
           and case when t.filter_columns is null then t.row_filter ~* ('\m' || c.name || '\M')
                    else c.attnum = any (t.filter_columns) end;
    end if;
    perform pgferry.attach(p_capture_id);
end
$$;
