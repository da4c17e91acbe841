-- What a queued change is to one registration (p_table_id, with its key,
-- columns and whether it filters rows): nothing, or the change to ship.
-- A change of a filtered capture (hits not null) is decided per
-- registration as PostgreSQL 15 publications do: old and new row match:
-- update; only the new: insert; only the old: delete; neither: nothing
-- (see capture_row). Every other change ships as queued (a schema change
-- is cut down to the registration by schema_change_for). The new row is
-- cut down to the registration's columns: the capture took the union of
-- its table's registrations'.
create or replace function pgferry.route(
    p_op "char", p_old_key json, p_new_row json, p_many boolean,
    p_old_hits int[], p_new_hits int[],
    p_table_id int, p_keys text[], p_columns text[], p_filtered boolean)
returns table (op "char", old_key json, new_row json)
language sql immutable as $$
    select d.op,
           case when d.op = 'I' then null
                when d.op = 'D' and p_old_key is null then pgferry.project(p_new_row, p_keys, false)
                else p_old_key end,
           case when d.op = 'D' then null
                when p_columns is null or p_op = 'S' then p_new_row
                else pgferry.project(p_new_row, p_columns, p_many) end
    from (values (case
            when p_old_hits is null or not p_filtered then p_op
            when p_table_id = any (p_old_hits) and p_table_id = any (p_new_hits) then 'U'
            when p_table_id = any (p_new_hits) then 'I'
            when p_table_id = any (p_old_hits) then 'D'
          end::"char")) d(op)
    where d.op is not null
$$;
