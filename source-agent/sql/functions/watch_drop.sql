-- Event trigger pgferry_watch_drop (sql_drop; created beside the DDL
-- watch): a replicated table dropped on the source ends its registrations
-- cleanly. They are marked removed with no last batch: the changes queued
-- before the drop (and in its transaction) still ship in order, and once
-- the target has acknowledged them all the registration goes
-- (forget_removed.sql), the target keeping its table, its guard lifted.
create or replace function pgferry.watch_drop() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    with dropped as (
        update pgferry.tables t
           set removed = true, removed_batch = null
          from pg_event_trigger_dropped_objects() o
         where o.classid = 'pg_class'::regclass and o.objsubid = 0
           and o.object_type = 'table' and o.objid = t.relid and not t.removed
        returning t.target_id
    )
    update pgferry.targets set tables_version = tables_version + 1
    where target_id in (select target_id from dropped);
end
$$;
