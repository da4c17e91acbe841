-- Event trigger pgferry_note_rewrite (table_rewrite; created beside the
-- DDL watch): notes, for the rest of the transaction, that an ALTER
-- rewrote a replicated table. A rewrite for a volatile default
-- (clock_timestamp(), random()) or a type change through USING writes
-- values into every row without firing a row trigger, values a target
-- making the same ALTER would not reproduce: the DDL watch, which runs
-- next, copies such a table again to its targets, in stream order.
create or replace function pgferry.note_rewrite() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_relid oid := pg_event_trigger_table_rewrite_oid();
begin
    if exists (select from pgferry.tables where relid = v_relid and not removed) then
        perform set_config('pgferry.rewritten',
                           coalesce(nullif(current_setting('pgferry.rewritten', true), ''), '') || v_relid || ',',
                           true);
    end if;
end
$$;
