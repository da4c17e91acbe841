-- The new rows of an INSERT or UPDATE statement of a table replicated
-- whole (arguments: table id, then 'I' or 'U'), from its transition table:
-- one queue row for a statement of one row, arrays of about 64 KiB for
-- more (see migration 5). Schema-qualified throughout, so it needs no
-- search_path of its own: setting one costs each call a configuration save
-- and restore, a tenth of what capture costs a single-row statement.
create or replace function pgferry.capture_rows() returns trigger
language plpgsql security definer as $$
declare
    v_single bigint;
begin
    -- Schema-qualified down to the operators: it runs with its caller's
    -- search_path.
    insert into pgferry.queue (table_id, op, new_row)
    select tg_argv[0]::pg_catalog.int4, tg_argv[1]::pg_catalog."char", pg_catalog.row_to_json(n.*)
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
          from (select pg_catalog.row_to_json(n.*) as r from pgferry_new n offset 0) n) parts
    group by part;
    return null;
end
$$;
