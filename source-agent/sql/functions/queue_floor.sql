-- The snapshot every target has acknowledged: of the batches the targets
-- last acknowledged, the one cut first (snapshots only grow: a later one has
-- the greater xmax, or the same and fewer transactions still running, and
-- sees all an earlier one does). Null when the source has no target
-- (that is not done with a switchover).
-- PL/pgSQL, not SQL: a SQL function's query was planned at every call, two
-- calls an acknowledgement (360 ms of planning in 30 s of the bench's
-- fan-out measure); PL/pgSQL keeps the plan for the session.
create or replace function pgferry.queue_floor() returns pg_snapshot
language plpgsql stable as $$
begin
    return (select b.snapshot
            from pgferry.targets t
            join pgferry.batch b on b.target_id = t.target_id and b.batch_id = t.acked_batch
            -- A target switched over to needs nothing more from here.
            where not exists (select from pgferry.switchovers s
                              where s.target_id = t.target_id and s.done_at is not null)
            order by pg_snapshot_xmax(b.snapshot),
                     (select count(*) from pg_snapshot_xip(b.snapshot)) desc
            limit 1);
end
$$;
