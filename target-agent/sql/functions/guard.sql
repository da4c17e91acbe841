-- Statement-level BEFORE trigger on every replicated target table, enabled
-- ALWAYS (session_replication_role does not switch it off). Lets through only
-- sessions logged in as the applier role named by the trigger's argument:
-- session_user is what a client cannot just claim, unlike application_name.
create or replace function pgferry.guard() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    if session_user = tg_argv[0]::name then
        return null;
    end if;
    raise exception 'table %.% is replicated by pgferry: only its applier role "%" may write it',
        tg_table_schema, tg_table_name, tg_argv[0]
        using errcode = 'insufficient_privilege',
              hint = 'Write to the source database; pgferry applies the change here.';
end
$$;
