-- Cuts the next batch of each target in p_targets whose tables have
-- committed changes waiting, or one of whose tables waits for its copy
-- (which then becomes part of this batch), all at one snapshot and in one
-- transaction: targets cut together share the round trip, the snapshot and
-- the commit, which three targets cut one by one paid three times on the
-- source's cores (the bench's fan-out measure). Cut on demand: no new batch
-- for target p_targets[i] while p_max_unapplied of its cut batches wait
-- beyond p_applied[i], the last it reported applied (or its acked batch).
-- Returns each target's newest batch, and the one cut (null if none): a
-- batch `verify` or `repair` cut (cut_check) is announced that way. A
-- target being switched over gets its final batch, then no more.
-- An idle pipeline cuts at once (low lag); a busy one lets the next batch
-- grow instead of paying a target transaction and an ack for every tick.
create or replace function pgferry.cut_batches(p_targets int[], p_applied bigint[], p_max_unapplied bigint)
returns table (cut_target int, cut_batch bigint, newest bigint)
language plpgsql as $$
declare
    v_target int;
    v_snap pg_snapshot;
    v_prev pgferry.batch;
    v_id bigint;
    v_switchover pgferry.switchovers;
    v_final boolean;
begin
    -- One cutter of a target at a time, so its snapshots grow with its
    -- batch ids; taken in target order, so that two cutters never wait for
    -- each other in a circle. Advisory locks, not a table lock: SHARE ROW
    -- EXCLUSIVE on pgferry.batch would also wait for every (auto)vacuum and
    -- analyze of it.
    for v_target in select t from unnest(p_targets) t order by t loop
        perform pg_advisory_xact_lock(hashtext('pgferry.cut_batch'), v_target);
    end loop;
    -- After the locks: every earlier cut of these targets has committed,
    -- and this snapshot sees all they saw.
    select pg_current_snapshot() into v_snap;
    for i in 1 .. coalesce(array_length(p_targets, 1), 0) loop
        v_target := p_targets[i];
        select * into v_prev from pgferry.batch
        where target_id = v_target order by batch_id desc limit 1;
        continue when v_prev.batch_id is null;
        cut_target := v_target;
        cut_batch := null;
        newest := v_prev.batch_id;
        select * into v_switchover from pgferry.switchovers where target_id = v_target;
        if v_switchover.final_batch is not null
           or v_prev.batch_id - greatest(p_applied[i], (select acked_batch from pgferry.targets
                                                           where target_id = v_target))
               >= p_max_unapplied then
            return next;
            continue;
        end if;
        -- The first snapshot that sees the fence cuts the switchover's
        -- final batch, changes or none: every write to the target's tables
        -- committed before the fence (fence.sql), and none after.
        v_final := v_switchover.fence_xid is not null
                   and pg_visible_in_snapshot(v_switchover.fence_xid, v_snap);
        v_id := null;
        insert into pgferry.batch (target_id, batch_id, snapshot)
        select v_target, v_prev.batch_id + 1, v_snap
        where v_final or exists (
                select from pgferry.committed_ranges(v_snap, v_prev.snapshot) r
                where exists (select from pgferry.queue q
                              where q.txid >= r.lo and q.txid < r.hi
                                and q.table_id in (select capture_id from pgferry.tables
                                                   where target_id = v_target and not removed)))
           or exists (select from pgferry.tables
                      where target_id = v_target and state = 'copy_pending' and not removed)
        returning batch_id into v_id;
        if v_id is not null and v_final then
            update pgferry.switchovers set final_batch = v_id where target_id = v_target;
        end if;
        if v_id is not null then
            update pgferry.tables set state = 'copying', copy_batch = v_id
            where target_id = v_target and state = 'copy_pending' and not removed;
            cut_batch := v_id;
            newest := v_id;
        end if;
        return next;
    end loop;
end
$$;
