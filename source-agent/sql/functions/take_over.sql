-- A switchover's take-over, run by the target agent here in the
-- transaction that applies the final batch of source p_source_id: this
-- database becomes the source of those tables. p_tables holds, for each,
-- the target table here (`table`, a regclass text), its key and the schema
-- and name it has on the old source. Capture begins on each table; a
-- target named after the old source, at p_address, gets them whole under
-- their names there, and its stream starts at batch 0 cut now: the old
-- source has exactly what this transaction leaves, so nothing is copied.
-- This database's epoch becomes p_epoch. Returns the target's id.
--
-- SECURITY DEFINER, since the applier need hold no rights on the source
-- schema; so it checks that its caller is the applier the target agent
-- guards each table for, on behalf of that source (pgferry.guarded, which
-- only the target agent's role writes).
create or replace function pgferry.take_over(p_source_id text, p_address text, p_files text[],
                                             p_epoch bigint, p_tables jsonb)
returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_target int;
    v_table jsonb;
    v_relid oid;
    v_table_id int;
    v_capture int;
begin
    perform set_config('pgferry.attaching', 'on', true);
    for v_table in select * from jsonb_array_elements(p_tables) loop
        v_relid := (v_table->>'table')::regclass;
        if not exists (select from pg_trigger g
                       where g.tgrelid = v_relid and g.tgname = 'pgferry_guard'
                         and g.tgargs = convert_to(session_user, 'UTF8') || '\x00'::bytea)
           or not exists (select from pgferry.guarded d, pg_class c, pg_namespace n
                          where c.oid = v_relid and n.oid = c.relnamespace
                            and d.source_id = p_source_id and d.table_schema = n.nspname
                            and d.table_name = c.relname) then
            raise exception 'take-over: table % is not replicated from source "%" by role "%"',
                v_relid::regclass, p_source_id, session_user
                using errcode = 'insufficient_privilege';
        end if;
    end loop;
    update pgferry.epoch set epoch = greatest(epoch, p_epoch);
    -- The target named so (this database streamed to it before), else
    -- the unnamed one a fresh install has, else a new one.
    select target_id into v_target from pgferry.targets where name = p_source_id;
    if v_target is null then
        update pgferry.targets set name = p_source_id
        where target_id = (select min(target_id) from pgferry.targets where address is null)
        returning target_id into v_target;
    end if;
    if v_target is null then
        insert into pgferry.targets (name) values (p_source_id) returning target_id into v_target;
    else
        -- Whatever it had (an earlier stream to it) goes: the new stream
        -- starts afresh.
        perform pgferry.forget_tables(v_target);
        delete from pgferry.batch where target_id = v_target;
        delete from pgferry.switchovers where target_id = v_target;
    end if;
    update pgferry.targets
    set address = p_address, tls_ca = p_files[1], tls_cert = p_files[2], tls_key = p_files[3],
        auth_token_file = p_files[4], acked_batch = 0, acked_at = null, last_error = null,
        last_error_at = null
    where target_id = v_target;
    insert into pgferry.batch (target_id, batch_id, snapshot)
    values (v_target, 0, pg_current_snapshot());
    for v_table in select * from jsonb_array_elements(p_tables) loop
        v_relid := (v_table->>'table')::regclass;
        insert into pgferry.tables (relid, source_schema, source_name, target_schema, target_name,
                                    key_columns, state, copied_at, target_id, capture_id)
        select v_relid, n.nspname, c.relname, v_table->>'source_schema', v_table->>'source_table',
               array(select jsonb_array_elements_text(v_table->'key_columns')), 'replicating',
               now(), v_target,
               coalesce((select min(capture_id) from pgferry.tables where relid = v_relid and not removed), 0)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.oid = v_relid
        returning table_id, capture_id into v_table_id, v_capture;
        if v_capture = 0 then
            update pgferry.tables set capture_id = table_id where table_id = v_table_id;
            v_capture := v_table_id;
        end if;
        perform pgferry.attach(v_capture);
        perform pgferry.add_table_sequences(v_table_id);
    end loop;
    update pgferry.targets set tables_version = tables_version + 1 where target_id = v_target;
    perform set_config('pgferry.attaching', 'off', true);
    return v_target;
end
$$;
