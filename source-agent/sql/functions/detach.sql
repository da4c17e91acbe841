-- Drops the capture triggers of a capture (see attach) and the functions
-- attach made for it.
create or replace function pgferry.detach(p_capture_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_relid oid;
    v_trigger name;
    v_function regprocedure;
begin
    select min(relid) into v_relid from pgferry.tables where capture_id = p_capture_id;
    for v_trigger in
        select tgname from pg_trigger where tgrelid = v_relid and tgname like 'pgferry\_capture%'
    loop
        execute format('drop trigger %I on %s', v_trigger, v_relid::regclass);
    end loop;
    for v_function in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'pgferry'::regnamespace
          and (p.proname in ('capture_filtered_' || p_capture_id, 'capture_rows_' || p_capture_id)
               or p.proname in (select 'row_filter_' || table_id from pgferry.tables
                                where capture_id = p_capture_id))
    loop
        execute format('drop function %s', v_function);
    end loop;
end
$$;
