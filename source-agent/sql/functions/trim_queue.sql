-- Deletes the queued changes every target now has: those of the
-- transactions visible in the queue floor (queue_floor) and not in
-- p_before, the floor before this transaction's acknowledgement (null: from
-- the start). Only the slowest target's acknowledgement moves the floor;
-- the others delete nothing. With no target left, the whole queue. Returns
-- how many queue rows went.
create or replace function pgferry.trim_queue(p_before pg_snapshot) returns bigint
language plpgsql as $$
declare
    v_floor pg_snapshot := pgferry.queue_floor();
    v_deleted bigint;
begin
    if v_floor is null then
        delete from pgferry.queue;
    elsif p_before is not null and v_floor::text = p_before::text then
        return 0;
    else
        delete from pgferry.queue q
        using pgferry.committed_ranges(v_floor, p_before) r
        where q.txid >= r.lo and q.txid < r.hi;
    end if;
    get diagnostics v_deleted = row_count;
    return v_deleted;
end
$$;
