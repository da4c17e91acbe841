-- BEFORE TRUNCATE of a replicated partitioned table, its root or any of
-- its partitions (trigger argument: the capture id). One TRUNCATE fires this on
-- every table it empties, the named ones first, each before its partitions,
-- all before any row goes. The tables being emptied whole are listed for
-- the transaction in pgferry.truncating: the root's TRUNCATE is queued as
-- one 'T' by its AFTER trigger (pgferry_capture_truncate), and a
-- partition's as the deletes of its rows, read here while they are still
-- there, unless an ancestor's TRUNCATE already covers them.
-- truncate_ends.sql takes each table off the list after the statement.
create or replace function pgferry.truncate_begins() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_listed text := coalesce(current_setting('pgferry.truncating', true), '');
begin
    if exists (select from pg_partition_ancestors(tg_relid) a
                  where a.relid <> tg_relid and (',' || v_listed) like ('%,' || a.relid || ',%')) then
        return null;
    end if;
    perform set_config('pgferry.truncating', v_listed || tg_relid || ',', true);
    if not exists (select from pgferry.tables where relid = tg_relid and capture_id = tg_argv[0]::int) then
        execute format('select pgferry.capture_rows_of_%s($1, $2)', tg_argv[0]::int)
        using tg_relid::regclass, 'DELETE';
    end if;
    return null;
end
$$;
