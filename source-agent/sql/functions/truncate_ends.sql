-- AFTER TRUNCATE of a replicated partitioned table or one of its
-- partitions: takes the table off the transaction's list of tables being
-- emptied (truncate_begins.sql), so that a later TRUNCATE of a partition
-- in the same transaction queues its rows again.
create or replace function pgferry.truncate_ends() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_listed text := ',' || coalesce(current_setting('pgferry.truncating', true), '');
begin
    perform set_config('pgferry.truncating', substr(replace(v_listed, ',' || tg_relid || ',', ','), 2), true);
    return null;
end
$$;
