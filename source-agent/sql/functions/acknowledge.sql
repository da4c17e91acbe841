-- Target p_target has committed every batch up to p_batch: delete what no
-- target needs any more, in one transaction, idempotently. p_fresh (a new
-- ack, not the progress a reconnecting target reports) also clears the
-- target's last error.
create or replace function pgferry.acknowledge(p_target int, p_batch bigint, p_fresh boolean) returns bigint
language plpgsql as $$
declare
    v_before pg_snapshot;
begin
    -- One acknowledgement at a time, so each sees the floor the one before
    -- left and deletes from there (see trim_queue).
    perform pg_advisory_xact_lock(hashtext('pgferry.acknowledge'));
    v_before := pgferry.queue_floor();
    if not exists (select from pgferry.batch where target_id = p_target and batch_id = p_batch) then
        return 0;  -- already cleaned up
    end if;
    delete from pgferry.batch where target_id = p_target and batch_id < p_batch;
    update pgferry.targets
    set acked_batch = greatest(acked_batch, p_batch), acked_at = now(),
        last_error = case when p_fresh then null else last_error end,
        last_error_at = case when p_fresh then null else last_error_at end
    where target_id = p_target;
    update pgferry.tables set state = 'replicating', copied_at = now()
    where target_id = p_target and state = 'copying' and copy_batch <= p_batch;
    -- Once every transaction the copy saw is acked, its filter is moot.
    update pgferry.tables t set copy_snapshot = null
    from pgferry.batch b
    where t.target_id = p_target and t.state = 'replicating' and t.copy_snapshot is not null
      and b.target_id = p_target and b.batch_id = p_batch
      and pg_snapshot_xmax(t.copy_snapshot) <= pg_snapshot_xmin(b.snapshot);
    -- Its join walked the whole queue at every ack, though a table is
    -- seldom being removed.
    if exists (select from pgferry.tables where target_id = p_target and removed) then
        perform pgferry.forget_removed(p_target);
    end if;
    return pgferry.trim_queue(v_before);
end
$$;
