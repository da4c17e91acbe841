-- A queued row (or, p_many, a statement's array of rows) cut down to
-- p_columns, in their order; as it is when p_columns is null. A listed
-- column the row lacks stays out: a column list keeps a renamed column's
-- old name for the rows queued before the rename, and a row captured
-- before a column existed leaves the target's value alone.
create or replace function pgferry.project(p_row json, p_columns text[], p_many boolean) returns json
language sql immutable parallel safe as $$
    select case
        when p_columns is null or p_row is null then p_row
        when p_many then (select json_agg((select json_object_agg(c, e -> c) filter (where e -> c is not null)
                                           from unnest(p_columns) c))
                          from json_array_elements(p_row) e)
        else (select json_object_agg(c, p_row -> c) filter (where p_row -> c is not null)
              from unnest(p_columns) c)
    end
$$;
