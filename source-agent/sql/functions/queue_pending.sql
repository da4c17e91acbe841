-- The queued changes some target still needs: those of transactions not
-- visible in the floor (queue_floor; every row while the source has no
-- target). The others wait in a rotating queue table for its TRUNCATE
-- (migration 20). Status counts these.
create or replace function pgferry.queue_pending() returns setof pgferry.queue
language sql stable as $$
    select q.*
    from (select pgferry.queue_floor() as floor) f
    join pgferry.queue q
      on f.floor is null
         or (q.txid >= pg_snapshot_xmin(f.floor) and not pg_visible_in_snapshot(q.txid, f.floor))
$$;
