-- pgferry target schema: per-source progress, guarded tables and the guard.

-- The last batch applied from each source, written in the same transaction
-- as the batch's changes: the exactly-once record.
create table pgferry.progress (
    source_id  text primary key,
    last_batch bigint not null default 0,
    applied_at timestamptz
);

-- Statement-level BEFORE trigger on every replicated target table, enabled
-- ALWAYS (session_replication_role does not switch it off). Lets through only
-- sessions logged in as the applier role named by the trigger's argument:
-- session_user is what a client cannot just claim, unlike application_name.
create function pgferry.guard() returns trigger
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

-- Which tables each source has guarded, so the guard comes off a table its
-- source no longer replicates.
create table pgferry.guarded (
    source_id    text not null,
    table_schema text not null,
    table_name   text not null,
    primary key (source_id, table_schema, table_name)
);
