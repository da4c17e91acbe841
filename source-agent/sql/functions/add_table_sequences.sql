-- Registers, for registration p_table_id's target, the sequences the
-- columns it replicates take their defaults from, as that table's: each
-- target of a table keeps them at or above the source's, as it keeps the
-- table's rows. A sequence in the table's own schema follows the table to
-- its target schema; another keeps its own. One the target already has
-- registered stays as it is. Returns the sequences registered now.
create or replace function pgferry.add_table_sequences(p_table_id int)
returns setof text
language sql set search_path = pg_catalog, pg_temp as $$
    insert into pgferry.sequences (relid, source_schema, source_name, target_schema, target_name,
                                   create_target, target_id, table_id)
    select distinct on (s.oid) s.oid, n.nspname, s.relname,
           case when n.nspname = t.source_schema then t.target_schema else n.nspname end,
           s.relname, t.create_target, t.target_id, t.table_id
    from pgferry.tables t
    cross join lateral pgferry.column_sequences(t.relid) c
    join pg_class s on s.oid = c.seq
    join pg_namespace n on n.oid = s.relnamespace
    where t.table_id = p_table_id
      and (t.columns is null or c.column_name = any (t.columns))
    order by s.oid
    on conflict (relid, target_id) do nothing
    returning quote_ident(source_schema) || '.' || quote_ident(source_name)
$$;
