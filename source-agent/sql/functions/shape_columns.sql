-- The columns of a recorded shape (table_shape.sql) a registration
-- replicates (p_columns, or all when null), none the source computes, in
-- column order, as one row of lists like replicated_column_lists.
create or replace function pgferry.shape_columns(p_shape jsonb, p_columns text[])
returns table (names text[], types text[], not_null boolean[], attnums int[])
language sql immutable as $$
    select coalesce(array_agg(c ->> 'name' order by (c ->> 'attnum')::int), '{}'),
           coalesce(array_agg(c ->> 'type' order by (c ->> 'attnum')::int), '{}'),
           coalesce(array_agg((c ->> 'not_null')::boolean order by (c ->> 'attnum')::int), '{}'),
           coalesce(array_agg((c ->> 'attnum')::int order by (c ->> 'attnum')::int), '{}')
    from jsonb_array_elements(p_shape -> 'columns') c
    where not (c ->> 'generated')::boolean
      and (p_columns is null or c ->> 'name' = any (p_columns))
$$;
