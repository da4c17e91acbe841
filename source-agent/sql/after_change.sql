-- After an install that changed a migration or a function: every
-- capture's triggers are made again by the live attach, so they call the
-- functions and take the arguments this version expects.
select pgferry.attach(capture_id)
from (select distinct capture_id from pgferry.tables where not removed) c;

-- The DDL watch and the rewrite note (watch_ddl.sql, note_rewrite.sql),
-- enabled ALWAYS so that session_replication_role cannot switch them off. Event triggers take a superuser: an install by
-- another role goes without them (status says so; docs/reference.md).
do $$
begin
    if (select rolsuper from pg_roles where rolname = current_user) then
        drop event trigger if exists pgferry_watch_ddl;
        drop event trigger if exists pgferry_refuse_rewrite;
        drop function if exists pgferry.refuse_rewrite();
        drop event trigger if exists pgferry_note_rewrite;
        drop event trigger if exists pgferry_watch_drop;
        create event trigger pgferry_watch_ddl on ddl_command_end
            when tag in ('ALTER TABLE', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
            execute function pgferry.watch_ddl();
        create event trigger pgferry_note_rewrite on table_rewrite
            execute function pgferry.note_rewrite();
        create event trigger pgferry_watch_drop on sql_drop
            when tag in ('DROP TABLE') execute function pgferry.watch_drop();
        alter event trigger pgferry_watch_ddl enable always;
        alter event trigger pgferry_note_rewrite enable always;
        alter event trigger pgferry_watch_drop enable always;
    end if;
end
$$;
