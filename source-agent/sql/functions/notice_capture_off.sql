-- Marks diverged every live registration whose table's capture triggers are
-- disabled (not ENABLE ALWAYS) or dropped, and returns them: writes made
-- meanwhile were not queued, so its targets miss them. Where the DDL watch
-- runs (watch_ddl.sql) disabling them is refused; this catches what it
-- cannot (an install without a superuser, the watch itself disabled, a
-- trigger dropped), within the agent's check interval.
create or replace function pgferry.notice_capture_off()
returns table (source text, target text)
language sql set search_path = pg_catalog, pg_temp as $$
    update pgferry.tables t
       set diverged_at = now(),
           diverged_reason = 'capture triggers found disabled or dropped: writes made meanwhile did not replicate'
      from pgferry.targets g
     where g.target_id = t.target_id and not t.removed and t.diverged_at is null
       and not pgferry.capture_on(t.relid)
    returning t.source_schema || '.' || t.source_name, g.name
$$;
