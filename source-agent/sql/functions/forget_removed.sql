-- Removed tables whose last shipped batch is acked: drop their leftover
-- changes and their registration.
create or replace function pgferry.forget_removed() returns void
language plpgsql as $$
declare
    v_acked bigint := (select acked_batch from pgferry.target);
begin
    delete from pgferry.queue q using pgferry.tables t
    where q.table_id = t.table_id and t.removed and t.removed_batch <= v_acked;
    with gone as (
        delete from pgferry.tables where removed and removed_batch <= v_acked returning 1
    )
    update pgferry.target set tables_version = tables_version + 1
    where exists (select from gone);
end
$$;
