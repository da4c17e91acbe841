-- The target has committed every batch up to p_batch: delete what is no
-- longer needed, in one transaction, idempotently. p_fresh (a new ack, not
-- the progress a reconnecting target reports) also clears the last error.
create or replace function pgferry.acknowledge(p_batch bigint, p_fresh boolean) returns bigint
language plpgsql as $$
declare
    v_snapshot pg_snapshot;
    v_deleted bigint;
begin
    select snapshot into v_snapshot from pgferry.batch where batch_id = p_batch;
    if v_snapshot is null then
        return 0;  -- already cleaned up
    end if;
    delete from pgferry.queue q
    using pgferry.committed_ranges(v_snapshot, null) r
    where q.txid >= r.lo and q.txid < r.hi;
    get diagnostics v_deleted = row_count;
    delete from pgferry.batch where batch_id < p_batch;
    update pgferry.target
    set acked_batch = greatest(acked_batch, p_batch), acked_at = now(),
        last_error = case when p_fresh then null else last_error end,
        last_error_at = case when p_fresh then null else last_error_at end;
    update pgferry.tables set state = 'replicating', copied_at = now()
    where state = 'copying' and copy_batch <= p_batch;
    -- Once every transaction the copy saw is acked, its filter is moot.
    update pgferry.tables set copy_snapshot = null
    where state = 'replicating' and copy_snapshot is not null
      and pg_snapshot_xmax(copy_snapshot) <= pg_snapshot_xmin(v_snapshot);
    -- Its join walked the whole queue at every ack, though a table is
    -- seldom being removed.
    if exists (select from pgferry.tables where removed) then
        perform pgferry.forget_removed();
    end if;
    return v_deleted;
end
$$;
