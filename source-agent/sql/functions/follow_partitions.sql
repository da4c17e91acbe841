-- Brings the capture of a replicated partitioned table (p_capture_id) up to
-- its partition tree after a DDL (the DDL watch calls it, in the DDL's own
-- transaction, before the table's schema change is recorded), comparing
-- the tree with pgferry.partitions:
-- - a partition created or attached: its rows enter the stream as inserts
--   (none for one just created; an attached table's rows as they are, at
--   the ATTACH's place in the stream: the ATTACH holds the table's lock
--   until commit), and it gets its TRUNCATE triggers (partition_triggers);
--   the row trigger comes to it from the root by itself;
-- - a partition detached: its rows leave the stream as deletes, as they
--   left the table, and its TRUNCATE triggers go (PostgreSQL takes the
--   inherited row trigger off it);
-- - a partition dropped took its rows with no row trigger firing: the
--   dropped-object watch (watch_drop.sql) copies the table again.
-- Only a leaf holds rows; a sub-partitioned partition's rows are its
-- leaves'. Also refuses a partition whose capture triggers were disabled,
-- as the DDL watch does for the table itself.
create or replace function pgferry.follow_partitions(p_capture_id int) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_root oid;
    v_part record;
    v_trigger name;
begin
    select min(relid) into v_root from pgferry.tables where capture_id = p_capture_id and not removed;
    if v_root is null or (select relkind from pg_class where oid = v_root) <> 'p' then
        return;
    end if;
    for v_part in
        select p.relid, p.isleaf from pg_partition_tree(v_root) p
        where p.relid <> v_root
          and not exists (select from pgferry.partitions k where k.capture_id = p_capture_id and k.relid = p.relid)
        order by p.level
    loop
        if v_part.isleaf then
            execute format('select pgferry.capture_rows_of_%s($1, $2)', p_capture_id)
            using v_part.relid::regclass, 'INSERT';
        end if;
        perform pgferry.partition_triggers(p_capture_id, v_part.relid);
        insert into pgferry.partitions (relid, capture_id) values (v_part.relid, p_capture_id);
    end loop;
    for v_part in
        select k.relid, c.relkind = 'r' as isleaf from pgferry.partitions k
        join pg_class c on c.oid = k.relid
        where k.capture_id = p_capture_id
          and k.relid not in (select relid from pg_partition_tree(v_root))
    loop
        if v_part.isleaf then
            execute format('select pgferry.capture_rows_of_%s($1, $2)', p_capture_id)
            using v_part.relid::regclass, 'DELETE';
        end if;
        for v_trigger in
            select tgname from pg_trigger
            where tgrelid = v_part.relid and tgname like ('pgferry\_partitioned\_%\_' || p_capture_id)
        loop
            execute format('drop trigger %I on %s', v_trigger, v_part.relid::regclass);
        end loop;
        delete from pgferry.partitions where capture_id = p_capture_id and relid = v_part.relid;
    end loop;
    select t.tgrelid::regclass::text as partition into v_part
    from pg_partition_tree(v_root) p join pg_trigger t on t.tgrelid = p.relid
    where p.relid <> v_root and t.tgname like 'pgferry\_partitioned%' and t.tgenabled = 'D'
    limit 1;
    if found then
        raise exception 'partition % of table % is replicated by pgferry: its capture triggers cannot be disabled',
                        v_part.partition, v_root::regclass
            using errcode = 'object_in_use',
                  detail = 'Writes made while they are disabled would never reach the targets.',
                  hint = 'Disable other triggers by name, or take the table out of replication first (source-agent remove-table).';
    end if;
end
$$;
