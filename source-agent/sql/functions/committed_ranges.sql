-- Half-open ranges [lo, hi) of the transaction ids visible in p_snapshot
-- and not in p_after (null: every id visible in p_snapshot), in a few
-- ranges: those running at p_after and finished by p_snapshot, one id
-- each, then the ids from p_after's xmax to p_snapshot's, cut around those
-- still running at p_snapshot.
create or replace function pgferry.committed_ranges(p_snapshot pg_snapshot, p_after pg_snapshot)
returns table (lo xid8, hi xid8)
language sql immutable parallel safe rows 3 as $$
    select x, pgferry.xid8_after(x)
    from pg_snapshot_xip(p_after) x
    where pg_visible_in_snapshot(x, p_snapshot)
    union all
    select lo, hi
    from (select coalesce(pgferry.xid8_after(lag(b) over (order by b)),
                          coalesce(pg_snapshot_xmax(p_after), '0'::xid8)) as lo,
                 b as hi
          from (select b from pg_snapshot_xip(p_snapshot) b
                where b >= coalesce(pg_snapshot_xmax(p_after), '0'::xid8)
                union all
                select pg_snapshot_xmax(p_snapshot)) bounds) r
    where lo < hi
$$;
