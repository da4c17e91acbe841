-- Version 2: the target commits batches asynchronously and reports them
-- applied at once and durable later; only durable ones are acknowledged
-- (and deleted). The cutter holds off on batches not yet applied, which the
-- running agent knows and passes in, rather than on unacknowledged ones.

drop function pgferry.cut_batch(bigint);

create function pgferry.cut_batch(p_max_unapplied bigint, p_applied bigint)
returns bigint
language plpgsql as $$
declare
    v_prev pgferry.batch;
    v_id bigint;
begin
    -- One cutter at a time, so snapshots grow with batch ids.
    lock table pgferry.batch in share row exclusive mode;
    select * into v_prev from pgferry.batch order by batch_id desc limit 1;
    if v_prev.batch_id - greatest(p_applied, (select acked_batch from pgferry.target))
           >= p_max_unapplied then
        return null;
    end if;
    with cut as (
        insert into pgferry.batch (batch_id, snapshot)
        select v_prev.batch_id + 1, s.snap
        from (select pg_current_snapshot() as snap) s
        where exists (
                select from pgferry.queue q
                where q.txid >= pg_snapshot_xmin(v_prev.snapshot)
                  and pg_visible_in_snapshot(q.txid, s.snap)
                  and not pg_visible_in_snapshot(q.txid, v_prev.snapshot))
           or exists (select from pgferry.tables where state = 'copy_pending')
        returning batch_id
    ), copying as (
        update pgferry.tables t set state = 'copying', copy_batch = cut.batch_id
        from cut where t.state = 'copy_pending'
    )
    select batch_id into v_id from cut;
    return v_id;
end
$$;
