-- Whether the writers' transaction ids have come round, or nearly, to the
-- rotating child (migration 20) that holds the floor's oldest unfinished
-- transaction: then its children cannot be emptied whole in time, and
-- acknowledged rows must leave them by DELETE.
-- PL/pgSQL for its kept plan (see queue_floor).
create or replace function pgferry.queue_floor_behind(p_floor pg_snapshot) returns boolean
language plpgsql stable as $$
begin
    return (select ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint >> r.shift)
                    - (pg_snapshot_xmin(p_floor)::text::bigint >> r.shift)) >= r.parts - 2
            from pgferry.queue_rotation r);
end
$$;
