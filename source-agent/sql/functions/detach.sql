-- Drops a table's capture triggers and row filter function.
create or replace function pgferry.detach(p_table_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_relid oid;
    v_trigger name;
    v_filter regprocedure;
begin
    select relid into v_relid from pgferry.tables where table_id = p_table_id;
    for v_trigger in
        select tgname from pg_trigger where tgrelid = v_relid and tgname like 'pgferry\_capture%'
    loop
        execute format('drop trigger %I on %s', v_trigger, v_relid::regclass);
    end loop;
    for v_filter in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'pgferry'::regnamespace and p.proname = 'row_filter_' || p_table_id
    loop
        execute format('drop function %s', v_filter);
    end loop;
end
$$;
