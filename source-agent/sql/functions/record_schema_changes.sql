-- `source-agent ddl`, where no DDL watch runs (or beside it): records, in
-- the DDL's own transaction, every replicated table whose shape now differs
-- from the one recorded (record_schema_change.sql). p_filenodes lists each
-- replicated table's relation file before the DDL ("relid:filenode,"): a
-- table whose file changed was rewritten. Returns the tables recorded.
create or replace function pgferry.record_schema_changes(p_filenodes text, p_command text)
returns setof text
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_table record;
begin
    for v_table in
        select distinct on (t.capture_id) t.capture_id, t.relid
        from pgferry.tables t
        where not t.removed and t.shape is not null
          and t.shape is distinct from pgferry.table_shape(t.relid)
        order by t.capture_id
    loop
        perform pgferry.record_schema_change(
            v_table.capture_id, v_table.relid,
            (',' || p_filenodes) not like ('%,' || v_table.relid || ':' || pg_relation_filenode(v_table.relid) || ',%'),
            p_command);
        return next v_table.relid::regclass::text;
    end loop;
end
$$;
