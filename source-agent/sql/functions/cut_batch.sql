-- Cuts target p_target's next batch if committed changes of its tables wait
-- or one of its tables waits for its copy (which then becomes part of this
-- batch). Cut on demand: no new batch while p_max_unapplied cut batches
-- wait to be applied. An idle pipeline cuts at once (low lag); a busy one
-- lets the next batch grow instead of paying a target transaction and an
-- ack for every tick.
create or replace function pgferry.cut_batch(p_target int, p_max_unapplied bigint, p_applied bigint)
returns bigint
language plpgsql as $$
declare
    v_prev pgferry.batch;
    v_id bigint;
begin
    -- One cutter of a target at a time, so its snapshots grow with its
    -- batch ids; the targets' cutters do not wait for each other (a lock of
    -- all, held to the cut's commit, cost three targets' writers a tenth of
    -- their TPS in the bench's fan-out measure). An advisory lock, not a
    -- table lock: SHARE ROW EXCLUSIVE on pgferry.batch would also wait for
    -- every (auto)vacuum and analyze of it.
    perform pg_advisory_xact_lock(hashtext('pgferry.cut_batch'), p_target);
    select * into v_prev from pgferry.batch
    where target_id = p_target order by batch_id desc limit 1;
    if v_prev.batch_id is null
       or v_prev.batch_id - greatest(p_applied, (select acked_batch from pgferry.targets
                                                 where target_id = p_target))
           >= p_max_unapplied then
        return null;
    end if;
    with cut as (
        insert into pgferry.batch (target_id, batch_id, snapshot)
        select p_target, v_prev.batch_id + 1, s.snap
        from (select pg_current_snapshot() as snap) s
        where exists (
                select from pgferry.committed_ranges(s.snap, v_prev.snapshot) r
                where exists (select from pgferry.queue q
                              where q.txid >= r.lo and q.txid < r.hi
                                and q.table_id in (select capture_id from pgferry.tables
                                                   where target_id = p_target and not removed)))
           or exists (select from pgferry.tables
                      where target_id = p_target and state = 'copy_pending' and not removed)
        returning batch_id
    ), copying as (
        update pgferry.tables t set state = 'copying', copy_batch = cut.batch_id
        from cut where t.target_id = p_target and t.state = 'copy_pending' and not t.removed
    )
    select batch_id into v_id from cut;
    return v_id;
end
$$;
