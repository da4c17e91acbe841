-- Cuts the next batch if committed changes wait or a table waits for its
-- copy (which then becomes part of this batch). Cut on demand: with
-- p_max_unacked set, no new batch while that many cut
-- batches wait for their ack. An idle pipeline cuts at once (low lag); a
-- busy one lets the next batch grow instead of paying a target transaction
-- and an ack for every tick.
create or replace function pgferry.cut_batch(p_max_unapplied bigint, p_applied bigint)
returns bigint
language plpgsql as $$
declare
    v_prev pgferry.batch;
    v_id bigint;
begin
    -- One cutter at a time, so snapshots grow with batch ids. An advisory
    -- lock, not a table lock: SHARE ROW EXCLUSIVE on pgferry.batch would
    -- also wait for every (auto)vacuum and analyze of it.
    perform pg_advisory_xact_lock(hashtext('pgferry.cut_batch'));
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
                select from pgferry.committed_ranges(s.snap, v_prev.snapshot) r
                where exists (select from pgferry.queue q
                              where q.txid >= r.lo and q.txid < r.hi))
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
