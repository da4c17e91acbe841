-- Takes target p_target's tables and sequences out of its registrations,
-- each table's capture made again for the other targets' registrations, or
-- dropped where none is left: the tables of a switchover's old source once
-- the new one has them, and those of an earlier stream to a target a
-- take-over starts afresh.
create or replace function pgferry.forget_tables(p_target int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_capture int;
begin
    for v_capture in
        select distinct capture_id from pgferry.tables where target_id = p_target
    loop
        -- Detach finds the triggers by the registrations: first.
        perform pgferry.detach(v_capture);
        delete from pgferry.tables where target_id = p_target and capture_id = v_capture;
        perform pgferry.attach(v_capture);
    end loop;
    delete from pgferry.sequences where target_id = p_target;
end
$$;
