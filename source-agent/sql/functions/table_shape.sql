-- A table's shape as schema changes carry it: its schema and name, and its
-- columns by column number (attnum: a rename keeps it, a drop and re-add
-- does not), each with its name, type, NOT NULL, default and, for a column
-- the source computes, its generation expression. Types and defaults are named schema-qualified
-- (callers run with search_path pg_catalog), so they read the same on the
-- target whatever its search_path.
create or replace function pgferry.table_shape(p_relid oid) returns jsonb
language sql stable as $$
    select jsonb_build_object(
        'schema', n.nspname::text,
        'name', c.relname::text,
        'columns', coalesce((
            select jsonb_agg(jsonb_build_object(
                       'attnum', a.attnum,
                       'name', a.attname::text,
                       'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                       'not_null', a.attnotnull,
                       'default', case when a.attgenerated = '' then pg_catalog.pg_get_expr(d.adbin, d.adrelid) end,
                       'generated', a.attgenerated <> '',
                       'generation', case when a.attgenerated <> '' then pg_catalog.pg_get_expr(d.adbin, d.adrelid) end)
                   order by a.attnum)
            from pg_catalog.pg_attribute a
            left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
            where a.attrelid = p_relid and a.attnum > 0 and not a.attisdropped), '[]'::jsonb))
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = p_relid
$$;
