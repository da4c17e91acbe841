-- The sequences table p_relid's columns take their defaults from: a
-- default calling nextval (serial columns and defaults written by hand),
-- and identity columns' own sequences. One row per column and sequence.
create or replace function pgferry.column_sequences(p_relid oid)
returns table (seq oid, column_name text)
language sql stable set search_path = pg_catalog, pg_temp as $$
    select s.oid, a.attname::text
    from (select d.refobjid as seq, ad.adnum as attnum
          from pg_attrdef ad
          join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
                          and d.refclassid = 'pg_class'::regclass
          where ad.adrelid = p_relid
          union
          select d.objid, d.refobjsubid
          from pg_depend d
          where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
            and d.refobjid = p_relid and d.refobjsubid > 0 and d.deptype = 'i') used
    join pg_class s on s.oid = used.seq and s.relkind = 'S'
    join pg_attribute a on a.attrelid = p_relid and a.attnum = used.attnum and not a.attisdropped
$$;
