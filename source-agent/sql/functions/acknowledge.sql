-- Target p_targets[i] has committed every batch up to p_batches[i]: delete
-- what no target needs any more, in one transaction, idempotently. The
-- targets' acknowledgements that came together share the transaction, the
-- lock and the queue's trim. p_fresh[i] (a new ack, not the progress a
-- reconnecting target reports) also clears the target's last error.
create or replace function pgferry.acknowledge(p_targets int[], p_batches bigint[], p_fresh boolean[])
returns bigint
language plpgsql as $$
declare
    v_before pg_snapshot;
    v_target int;
    v_batch bigint;
begin
    -- One acknowledgement at a time, so each sees the floor the one before
    -- left and deletes from there (see trim_queue).
    perform pg_advisory_xact_lock(hashtext('pgferry.acknowledge'));
    v_before := pgferry.queue_floor();
    for i in 1 .. coalesce(array_length(p_targets, 1), 0) loop
        v_target := p_targets[i];
        v_batch := p_batches[i];
        -- Already cleaned up (or the target removed).
        continue when not exists (select from pgferry.batch
                                  where target_id = v_target and batch_id = v_batch);
        delete from pgferry.batch where target_id = v_target and batch_id < v_batch;
        update pgferry.targets
        set acked_batch = greatest(acked_batch, v_batch), acked_at = now(),
            last_error = case when p_fresh[i] then null else last_error end,
            last_error_at = case when p_fresh[i] then null else last_error_at end
        where target_id = v_target;
        update pgferry.tables set state = 'replicating', copied_at = now()
        where target_id = v_target and state = 'copying' and copy_batch <= v_batch;
        -- Once every transaction the copy saw is acked, its filter is moot.
        update pgferry.tables t set copy_snapshot = null
        from pgferry.batch b
        where t.target_id = v_target and t.state = 'replicating' and t.copy_snapshot is not null
          and b.target_id = v_target and b.batch_id = v_batch
          and pg_snapshot_xmax(t.copy_snapshot) <= pg_snapshot_xmin(b.snapshot);
        -- Its join walked the whole queue at every ack, though a table is
        -- seldom being removed.
        if exists (select from pgferry.tables where target_id = v_target and removed) then
            perform pgferry.forget_removed(v_target);
        end if;
        if exists (select from pgferry.switchovers
                   where target_id = v_target and final_batch <= v_batch and done_at is null) then
            perform pgferry.switched_over(v_target);
        end if;
    end loop;
    return pgferry.trim_queue(v_before);
end
$$;
