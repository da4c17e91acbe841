-- The fence's trigger function: a BEFORE statement trigger, enabled
-- ALWAYS, on every table of a target being switched over (fence.sql)
-- refuses every write, naming the switchover. The target agent's guard
-- takes its place once this database becomes the new source's target.
create or replace function pgferry.fenced() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    raise exception 'table %.% is fenced: pgferry switched it over to target "%" (epoch %)',
        tg_table_schema, tg_table_name, tg_argv[0], tg_argv[1]
        using errcode = 'read_only_sql_transaction',
              hint = 'Write to the database of target ' || tg_argv[0] || ', the new source.';
end
$$;
