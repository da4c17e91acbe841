-- Cuts target p_target's next batch for `verify` or `repair`, carrying
-- p_checks, whether or not changes wait, and exports the snapshot that cut
-- it: the command reads the source in exactly that snapshot (SET
-- TRANSACTION SNAPSHOT, while this transaction is still open) and the
-- target answers the checks right after applying the batch, when it holds
-- exactly that snapshot's view. The same lock and order as cut_batches.
create or replace function pgferry.cut_check(p_target int, p_checks jsonb)
returns table (batch_id bigint, snapshot_name text)
language plpgsql as $$
declare
    v_snap pg_snapshot;
    v_name text;
    v_prev bigint;
begin
    perform pg_advisory_xact_lock(hashtext('pgferry.cut_batch'), p_target);
    -- One statement: the exported snapshot is the one recorded.
    select pg_current_snapshot(), pg_export_snapshot() into v_snap, v_name;
    select max(b.batch_id) into v_prev from pgferry.batch b where b.target_id = p_target;
    if v_prev is null then
        raise exception 'target id % has no batches', p_target;
    end if;
    insert into pgferry.batch (target_id, batch_id, snapshot, checks)
    values (p_target, v_prev + 1, v_snap, p_checks);
    batch_id := v_prev + 1;
    snapshot_name := v_name;
    return next;
end
$$;
