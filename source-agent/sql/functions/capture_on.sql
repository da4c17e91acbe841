-- Whether table p_relid's capture triggers are all there and enabled
-- ALWAYS: only then is every write to it queued.
create or replace function pgferry.capture_on(p_relid oid)
returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select not exists (select from pg_trigger
                       where tgrelid = p_relid and tgname like 'pgferry\_capture%' and tgenabled <> 'A')
       and exists (select from pg_trigger
                   where tgrelid = p_relid and tgname = 'pgferry_capture_truncate')
$$;
