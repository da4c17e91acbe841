-- The triggers a partition (p_relid, at any depth) of the partitioned table
-- captured as p_capture_id needs besides the row trigger it inherits
-- (attach): TRUNCATE fires only the statement triggers of the tables it
-- empties, and emptying a partition is not emptying the table. Before:
-- the partition's rows are queued as deletes, unless an ancestor's TRUNCATE
-- empties it (truncate_begins.sql); after: the bookkeeping is undone.
-- Enabled ALWAYS, as every capture trigger; the DDL watch lets these
-- ALTERs pass, as attach's.
create or replace function pgferry.partition_triggers(p_capture_id int, p_relid oid) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_attaching text := coalesce(current_setting('pgferry.attaching', true), 'off');
begin
    perform set_config('pgferry.attaching', 'on', true);
    execute format('create trigger %I before truncate on %s for each statement
                    execute function pgferry.truncate_begins(%L)',
                   'pgferry_partitioned_truncate_' || p_capture_id, p_relid::regclass, p_capture_id);
    execute format('create trigger %I after truncate on %s for each statement
                    execute function pgferry.truncate_ends()',
                   'pgferry_partitioned_truncated_' || p_capture_id, p_relid::regclass);
    execute format('alter table %s enable always trigger %I', p_relid::regclass,
                   'pgferry_partitioned_truncate_' || p_capture_id);
    execute format('alter table %s enable always trigger %I', p_relid::regclass,
                   'pgferry_partitioned_truncated_' || p_capture_id);
    perform set_config('pgferry.attaching', v_attaching, true);
end
$$;
