-- Event trigger pgferry_refuse_rewrite (table_rewrite; created beside the
-- DDL watch): an ALTER TABLE that adds a column with a volatile default
-- (clock_timestamp(), random()) writes a value into every row without
-- firing a row trigger, so what it writes would never replicate and each
-- target would compute its own: refused, naming the table. Other rewrites
-- keep the rows' values or compute them the same on every side (a stored
-- generated column, a type change done on both sides) and pass. The
-- column added is the table's last; a rewrite for a default is told by
-- its reason (bit 2, AT_REWRITE_DEFAULT_VAL).
create or replace function pgferry.refuse_rewrite() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_relid oid := pg_event_trigger_table_rewrite_oid();
    v_column name;
begin
    if pg_event_trigger_table_rewrite_reason() & 2 = 0
       or not exists (select from pgferry.tables where relid = v_relid and not removed) then
        return;
    end if;
    select a.attname into v_column
    from pg_attribute a
    where a.attrelid = v_relid and a.attnum > 0 and not a.attisdropped
      and a.atthasdef and a.attgenerated = ''
      and a.attnum = (select max(attnum) from pg_attribute
                      where attrelid = v_relid and attnum > 0 and not attisdropped);
    if found then
        raise exception 'table % is replicated by pgferry: column % would take a volatile default in every row, which capture cannot see',
            v_relid::regclass, v_column
            using errcode = 'feature_not_supported',
                  detail = 'The rewrite fires no row trigger: the targets would keep other values.',
                  hint = 'Add the column without a default (or with a constant one), then set the default and fill the rows with an UPDATE, which replicates.';
    end if;
end
$$;
