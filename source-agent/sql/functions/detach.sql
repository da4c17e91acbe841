-- Drops the capture triggers of a capture (see attach) and the functions
-- attach made for it; for a partitioned table, the row trigger its
-- partitions inherit goes with the root's, and each partition's TRUNCATE
-- triggers (partition_triggers.sql) go one by one.
create or replace function pgferry.detach(p_capture_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_relid oid;
    v_trigger record;
    v_function regprocedure;
begin
    select min(relid) into v_relid from pgferry.tables where capture_id = p_capture_id;
    for v_trigger in
        select tgrelid::regclass as rel, tgname from pg_trigger
        where (tgrelid = v_relid and tgname like 'pgferry\_capture%')
           or (tgrelid = v_relid and tgname like ('pgferry\_partitioned\_%\_' || p_capture_id))
           or (tgrelid in (select relid from pg_partition_tree(v_relid)
                           union all
                           select relid from pgferry.partitions where capture_id = p_capture_id)
               and tgname like ('pgferry\_partitioned\_truncate%\_' || p_capture_id))
        order by tgrelid = v_relid desc
    loop
        execute format('drop trigger %I on %s', v_trigger.tgname, v_trigger.rel);
    end loop;
    for v_function in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'pgferry'::regnamespace
          and (p.proname in ('capture_filtered_' || p_capture_id, 'capture_rows_' || p_capture_id,
                             'capture_updates_' || p_capture_id, 'capture_rows_of_' || p_capture_id)
               or p.proname in (select 'row_filter_' || table_id from pgferry.tables
                                where capture_id = p_capture_id))
    loop
        execute format('drop function %s', v_function);
    end loop;
end
$$;
