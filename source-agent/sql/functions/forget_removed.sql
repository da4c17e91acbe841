-- Tables removed from target p_target whose last shipped batch it has
-- acked, and tables dropped on the source (no last batch: watch_drop.sql)
-- whose every queued change it has acked: drop their registrations, and
-- the leftover changes of a table no target takes any more.
create or replace function pgferry.forget_removed(p_target int) returns void
language plpgsql as $$
declare
    v_acked bigint := (select acked_batch from pgferry.targets where target_id = p_target);
    v_gone int[];
begin
    with gone as (
        delete from pgferry.tables
        where target_id = p_target and removed
          and (removed_batch <= v_acked
               or (removed_batch is null
                   and not exists (select from pg_class c where c.oid = relid)
                   and not exists (select from pgferry.queue q
                                   join pgferry.batch b on b.target_id = p_target and b.batch_id = v_acked
                                   where q.table_id = capture_id
                                     and not pg_visible_in_snapshot(q.txid, b.snapshot))))
        returning capture_id
    )
    select array_agg(capture_id) into v_gone from gone;
    if v_gone is null then
        return;
    end if;
    delete from pgferry.queue q
    where q.table_id = any (v_gone)
      and not exists (select from pgferry.tables t where t.capture_id = q.table_id);
    update pgferry.targets set tables_version = tables_version + 1 where target_id = p_target;
end
$$;
