-- A queued schema change (op 'S': the shapes before and after, and the
-- command) as one registration takes it: the columns it replicates (all,
-- those the source computes with them, or those of its list, p_columns,
-- under their name before or after the change); the target table it writes (p_schema,
-- p_table); and what its target does with it (p_mode: 'apply', 'pause'
-- until an operator says it is done, or 'done': take the new shape
-- without running the change).
create or replace function pgferry.schema_change_for(
    p_change json, p_columns text[], p_schema text, p_table text, p_mode text)
returns json
language sql immutable as $$
    select json_build_object(
        'before', (select coalesce(json_agg(c order by (c ->> 'attnum')::int), '[]')
                   from json_array_elements(p_change -> 'before' -> 'columns') c
                   where p_columns is null
                      or (not (c ->> 'generated')::boolean and c ->> 'name' = any (p_columns))),
        'after', (select coalesce(json_agg(c order by (c ->> 'attnum')::int), '[]')
                  from json_array_elements(p_change -> 'after' -> 'columns') c
                  where p_columns is null
                     or (not (c ->> 'generated')::boolean and c ->> 'name' = any (p_columns))),
        'schema', p_schema,
        'table', p_table,
        'command', p_change ->> 'command',
        'mode', p_mode)
$$;
