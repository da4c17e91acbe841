-- Target p_target has its switchover's final batch on disk: it is the new
-- source of its tables. This database stops capturing them (the new
-- source's stream will write them here, as a target) and forgets their
-- registrations and sequences for that target; the fence stays until the
-- target agent here guards the tables. Idempotent.
create or replace function pgferry.switched_over(p_target int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_capture int;
begin
    update pgferry.switchovers set done_at = now()
    where target_id = p_target and done_at is null;
    for v_capture in
        select distinct capture_id from pgferry.tables where target_id = p_target
    loop
        -- Detach finds the triggers by the registrations: first.
        perform pgferry.detach(v_capture);
        delete from pgferry.tables where target_id = p_target and capture_id = v_capture;
        -- The capture again for another target's registrations, if any.
        perform pgferry.attach(v_capture);
    end loop;
    delete from pgferry.sequences where target_id = p_target;
    update pgferry.targets set tables_version = tables_version + 1 where target_id = p_target;
end
$$;
