-- The capture of an INSERT or UPDATE statement's new rows (trigger
-- arguments: table id, then 'I' or 'U'), from its transition table: one
-- queue row for a statement of one row, arrays of about 64 KiB for more
-- (see migration 5). pgferry.define_capture_rows makes such a function,
-- named p_name, queueing each row as p_row renders it (an expression over
-- the transition table's row n): pgferry.capture_rows, below, renders
-- rows with row_to_json, for tables replicated whole with no column that
-- needs its text form; attach makes pgferry.capture_rows_<id>, rendering
-- the captured columns' text forms, for the others without a row filter.
-- Schema-qualified throughout (p_row too), so the function needs no
-- search_path of its own: setting one costs each call a configuration
-- save and restore, a tenth of what capture costs a single-row statement.
create or replace function pgferry.define_capture_rows(p_name text, p_row text) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    execute format($f$
        create or replace function %1$s() returns trigger
        language plpgsql security definer as $body$
        declare
            v_single bigint;
        begin
            -- Schema-qualified down to the operators: it runs with its
            -- caller's search_path.
            insert into pgferry.queue (table_id, op, new_row)
            select tg_argv[0]::pg_catalog.int4, tg_argv[1]::pg_catalog."char", %2$s
            from pgferry_new n
            where not exists (select from pgferry_new offset 1);
            get diagnostics v_single = row_count;
            if v_single OPERATOR(pg_catalog.>) 0 then
                return null;
            end if;
            insert into pgferry.queue (table_id, op, new_row, statement_rows)
            select tg_argv[0]::pg_catalog.int4, tg_argv[1]::pg_catalog."char", pg_catalog.json_agg(r), pg_catalog.count(*)
            from (select r, pg_catalog.int8div(pg_catalog.sum(pg_catalog.int4pl(pg_catalog.pg_column_size(r), 64))
                                                   over (rows unbounded preceding), 65536) as part
                  from (select %2$s as r from pgferry_new n offset 0) n) parts
            group by part;
            return null;
        end
        $body$
        $f$, p_name, p_row);
end
$$;

select pgferry.define_capture_rows('pgferry.capture_rows', 'pg_catalog.row_to_json(n.*)');
