-- The columns of table p_relid a registration replicates (p_columns, or
-- every column when null), in table order, without those the source
-- computes (GENERATED ... STORED: each side computes its own), as one row
-- of lists: what the stream announces and what `verify` compares. Types
-- are named as the caller's search_path sees them (format_type), as the
-- target is told.
create or replace function pgferry.replicated_column_lists(p_relid oid, p_columns text[])
returns table (names text[], types text[], not_null boolean[], text_form boolean[], attnums int[])
language sql stable as $$
    select coalesce(array_agg(a.attname::text order by a.attnum), '{}'),
           coalesce(array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) order by a.attnum), '{}'),
           coalesce(array_agg(a.attnotnull order by a.attnum), '{}'),
           coalesce(array_agg(pgferry.text_form(a.atttypid) order by a.attnum), '{}'),
           coalesce(array_agg(a.attnum::int order by a.attnum), '{}')
    from pg_catalog.pg_attribute a
    where a.attrelid = p_relid and a.attnum > 0 and not a.attisdropped
      and a.attgenerated = '' and (p_columns is null or a.attname = any (p_columns))
$$;
