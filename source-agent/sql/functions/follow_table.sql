-- A table created (p_relid) in a schema some target follows (`add-table
-- --schema S --follow`): registered for each such target, in the CREATE's
-- own transaction, as `add-table` would (its sequences with it), under the
-- same name there, and copied with that target's next batch, so its rows
-- (those of the creating transaction too) arrive in stream order. A
-- partitioned table is registered by its root; a partition is left out
-- quietly (its rows are its root's: follow_partitions.sql). A table
-- pgferry could not replicate (no key, unlogged) or whose name matches the
-- registration's --exclude is left out, with a notice.
create or replace function pgferry.follow_table(p_relid oid) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_follow record;
    v_class record;
    v_key text[];
    v_table_id int;
    v_capture_id int;
begin
    select c.relname::text as name, n.nspname::text as schema, c.relkind, c.relpersistence, c.relispartition
    into v_class
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.oid = p_relid;
    for v_follow in
        select f.* from pgferry.followed_schemas f
        where f.schema_name = v_class.schema
          and not exists (select from pgferry.tables t where t.relid = p_relid and t.target_id = f.target_id)
    loop
        if exists (select from unnest(v_follow.exclude) p where v_class.name like p) then
            continue;
        end if;
        if v_class.relispartition then
            return;
        end if;
        v_key := pgferry.table_key(p_relid);
        if v_class.relkind not in ('r', 'p') or v_class.relpersistence <> 'p' or v_key is null then
            raise notice 'pgferry: new table %.% is not replicated: %', v_class.schema, v_class.name,
                case when v_key is null then 'it has no primary key or unique NOT NULL index'
                     else 'only ordinary logged tables are' end;
            return;
        end if;
        v_capture_id := (select capture_id from pgferry.tables where relid = p_relid order by table_id limit 1);
        insert into pgferry.tables (relid, source_schema, source_name, target_schema, target_name,
                                    key_columns, create_target, state, target_id, capture_id)
        values (p_relid, v_class.schema, v_class.name, v_class.schema, v_class.name,
                v_key, v_follow.create_target, 'copy_pending', v_follow.target_id, coalesce(v_capture_id, 0))
        returning table_id into v_table_id;
        if v_capture_id is null then
            v_capture_id := v_table_id;
            update pgferry.tables set capture_id = v_table_id where table_id = v_table_id;
        end if;
        perform pgferry.attach(v_capture_id);
        perform pgferry.add_table_sequences(v_table_id);
        update pgferry.targets set tables_version = tables_version + 1 where target_id = v_follow.target_id;
    end loop;
end
$$;
