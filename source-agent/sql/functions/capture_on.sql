-- Whether table p_relid's capture triggers are all there and enabled
-- ALWAYS: only then is every write to it queued. For a partitioned table,
-- the row trigger and the TRUNCATE triggers of every partition too
-- (attach, partition_triggers.sql).
create or replace function pgferry.capture_on(p_relid oid)
returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select not exists (select from pg_trigger
                       where tgrelid = p_relid and tgname like 'pgferry\_capture%' and tgenabled <> 'A')
       and exists (select from pg_trigger
                   where tgrelid = p_relid and tgname = 'pgferry_capture_truncate')
       and ((select relkind <> 'p' from pg_class where oid = p_relid)
            or not exists (select from pg_partition_tree(p_relid) p
                           cross join unnest(array['row', 'truncate', 'truncated']) w
                           where not exists (select from pg_trigger t
                                             where t.tgrelid = p.relid and t.tgenabled = 'A'
                                               and t.tgname like ('pgferry\_partitioned\_' || w || '\_%'))))
$$;
