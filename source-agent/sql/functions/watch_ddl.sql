-- The DDL watch (event trigger pgferry_watch_ddl, on ddl_command_end of
-- ALTER TABLE and CREATE TABLE; after_change.sql creates it where
-- `install` runs as a superuser). In the command's own transaction: a
-- table created in a followed schema is registered (follow_table.sql);
-- for each replicated table an ALTER touched, disabling its capture
-- triggers is refused (writes made while they are off would never
-- replicate, with nothing to show it), and the change is recorded
-- (record_schema_change.sql); first, the capture of a replicated
-- partitioned table follows its partitions (follow_partitions.sql) when
-- the command touched the table or one of them. attach's own ALTERs pass.
create or replace function pgferry.watch_ddl() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_table record;
begin
    if current_setting('pgferry.attaching', true) = 'on' then
        return;
    end if;
    for v_table in
        select distinct c.objid as relid
        from pg_event_trigger_ddl_commands() c
        where c.classid = 'pg_class'::regclass and c.object_type = 'table'
          and c.command_tag in ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
          and exists (select from pgferry.followed_schemas f where f.schema_name = c.schema_name)
    loop
        perform pgferry.follow_table(v_table.relid);
    end loop;
    for v_table in
        select distinct t.capture_id
        from pg_event_trigger_ddl_commands() c
        cross join lateral (select c.objid as relid
                            union select a.relid from pg_partition_ancestors(c.objid) a) touched
        join pgferry.tables t on t.relid = touched.relid and not t.removed
        join pg_class k on k.oid = t.relid and k.relkind = 'p'
        where c.classid = 'pg_class'::regclass
    loop
        perform pgferry.follow_partitions(v_table.capture_id);
    end loop;
    for v_table in
        select distinct t.capture_id, c.objid as relid
        from pg_event_trigger_ddl_commands() c
        join pgferry.tables t on t.relid = c.objid and not t.removed
        where c.classid = 'pg_class'::regclass
    loop
        if exists (select from pg_trigger
                   where tgrelid = v_table.relid and tgenabled = 'D'
                     and (tgname like 'pgferry\_capture%' or tgname like 'pgferry\_partitioned%')) then
            raise exception 'table % is replicated by pgferry: its capture triggers cannot be disabled', v_table.relid::regclass
                using errcode = 'object_in_use',
                      detail = 'Writes made while they are disabled would never reach the targets.',
                      hint = 'Disable other triggers by name, or take the table out of replication first (source-agent remove-table).';
        end if;
        perform pgferry.record_schema_change(
            v_table.capture_id, v_table.relid,
            (',' || current_setting('pgferry.rewritten', true)) like ('%,' || v_table.relid || ',%'),
            current_query());
    end loop;
end
$$;
