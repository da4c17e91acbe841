-- Event trigger pgferry_watch_drop (sql_drop; created beside the DDL
-- watch): a replicated table dropped on the source ends its registrations
-- cleanly. They are marked removed with no last batch: the changes queued
-- before the drop (and in its transaction) still ship in order, and once
-- the target has acknowledged them all the registration goes
-- (forget_removed.sql), the target keeping its table, its guard lifted.
-- A partition of a replicated partitioned table dropped took its rows
-- with it, no row trigger firing and nothing left to read them from: the
-- table is copied again to its targets, in stream order (detaching the
-- partition first sends its rows' deletes alone: follow_partitions.sql).
create or replace function pgferry.watch_drop() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_again bigint;
begin
    -- The targets' rows first, as an acknowledgement takes them (its
    -- transaction updates a target, then that target's tables): taken in
    -- the other order, an acknowledgement and a DROP deadlock.
    perform from pgferry.targets g
    where g.target_id in (select t.target_id
                          from pgferry.tables t, pg_event_trigger_dropped_objects() o
                          where o.classid = 'pg_class'::regclass and o.objsubid = 0
                            and (o.objid = t.relid
                                 or t.capture_id in (select k.capture_id from pgferry.partitions k
                                                     where k.relid = o.objid)))
    order by g.target_id
    for no key update;
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
    with gone as (
        delete from pgferry.partitions k
         using pg_event_trigger_dropped_objects() o
         where o.classid = 'pg_class'::regclass and o.objsubid = 0
           and o.object_type = 'table' and o.objid = k.relid
        returning k.capture_id
    ), again as (
        update pgferry.tables
           set diverged_at = null, diverged_reason = null, set_aside_batch = null,
               state = 'copy_pending', copy_batch = null, copy_snapshot = null, copied_at = null
         where capture_id in (select capture_id from gone) and not removed
        returning target_id, relid
    ), bumped as (
        update pgferry.targets set tables_version = tables_version + 1
        where target_id in (select target_id from again)
        returning 1
    )
    select count(*) from bumped into v_again;
    if v_again > 0 then
        raise notice 'pgferry: a partition of a replicated table was dropped with its rows: the table is copied again to its targets';
    end if;
end
$$;
