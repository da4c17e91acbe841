-- The key pgferry matches a table's rows by: its primary key, else its
-- narrowest unique index over NOT NULL columns with no predicate or
-- expression; null when it has neither.
create or replace function pgferry.table_key(p_relid oid) returns text[]
language sql stable as $$
    select array(select a.attname::text
                 from unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) with ordinality k(attnum, ord)
                 join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                 order by k.ord)
    from pg_catalog.pg_index i
    where i.indrelid = p_relid and i.indisunique and i.indisvalid
      and i.indpred is null and i.indexprs is null
      and not exists (select from unnest(i.indkey::int2[]) k(attnum)
                      join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                      where not a.attnotnull)
    order by i.indisprimary desc, i.indnkeyatts
    limit 1
$$;
