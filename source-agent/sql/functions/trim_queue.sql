-- Deletes the queued changes every target has: those of the transactions
-- visible in the snapshot of the batch each target last acknowledged,
-- taken from the target whose snapshot is the oldest (snapshots only grow:
-- a later one has the greater xmax, or the same and fewer transactions
-- still running). With no target left, the whole queue. Returns how many
-- queue rows went.
create or replace function pgferry.trim_queue() returns bigint
language plpgsql as $$
declare
    v_floor pg_snapshot;
    v_deleted bigint;
begin
    if not exists (select from pgferry.targets) then
        delete from pgferry.queue;
        get diagnostics v_deleted = row_count;
        return v_deleted;
    end if;
    select b.snapshot into v_floor
    from pgferry.targets t
    join pgferry.batch b on b.target_id = t.target_id and b.batch_id = t.acked_batch
    order by pg_snapshot_xmax(b.snapshot),
             (select count(*) from pg_snapshot_xip(b.snapshot)) desc
    limit 1;
    delete from pgferry.queue q
    using pgferry.committed_ranges(v_floor, null) r
    where q.txid >= r.lo and q.txid < r.hi;
    get diagnostics v_deleted = row_count;
    return v_deleted;
end
$$;
