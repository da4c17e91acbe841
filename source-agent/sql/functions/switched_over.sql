-- Target p_target has its switchover's final batch on disk: it is the new
-- source of its tables. Their registrations and sequences for that target
-- go, and with them their capture unless another target takes them (that
-- one then gets what the new source's stream writes here); the fence stays
-- until the target agent here guards the tables. Idempotent.
create or replace function pgferry.switched_over(p_target int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    update pgferry.switchovers set done_at = now()
    where target_id = p_target and done_at is null;
    perform pgferry.forget_tables(p_target);
    update pgferry.targets set tables_version = tables_version + 1 where target_id = p_target;
end
$$;
