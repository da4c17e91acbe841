-- Where no DDL watch runs (an install without a superuser), a replicated
-- table altered outside `source-agent ddl` is found here: its shape
-- differs from the one recorded. Its live registrations are marked
-- diverged and set aside (their changes stop shipping: the target could
-- not apply rows of the new shape, and nothing would tell it the change),
-- and returned; `repair` copies such a table again in its new shape.
create or replace function pgferry.notice_shape_changed()
returns table (source text, target text)
language sql set search_path = pg_catalog, pg_temp as $$
    update pgferry.tables t
       set diverged_at = now(),
           diverged_reason = 'its columns or name changed outside pgferry (no DDL watch): run schema changes through source-agent ddl; repair copies it again',
           set_aside_batch = g.acked_batch
      from pgferry.targets g
     where g.target_id = t.target_id and not t.removed and t.diverged_at is null
       and t.shape is not null
       and not exists (select from pg_event_trigger where evtname = 'pgferry_watch_ddl' and evtenabled = 'A')
       and t.shape is distinct from pgferry.table_shape(t.relid)
    returning t.source_schema || '.' || t.source_name, g.name
$$;
