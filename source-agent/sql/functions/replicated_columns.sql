-- The columns of table p_relid a registration replicates (p_columns, or
-- every column when null), in table order, without those the source
-- computes (GENERATED ... STORED: each side computes its own): what the
-- stream announces and what `verify` compares. Types are named as the
-- caller's search_path sees them (format_type), as the target is told.
create or replace function pgferry.replicated_columns(p_relid oid, p_columns text[])
returns table (name text, sql_type text, not_null boolean, text_form boolean)
language sql stable as $$
    select a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
           pgferry.text_form(a.atttypid)
    from pg_catalog.pg_attribute a
    where a.attrelid = p_relid and a.attnum > 0 and not a.attisdropped
      and a.attgenerated = '' and (p_columns is null or a.attname = any (p_columns))
    order by a.attnum
$$;
