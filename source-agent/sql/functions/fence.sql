-- Fences target p_target's tables for a switchover to epoch p_epoch (the
-- new source reaches this database at p_reverse_address with p_files: TLS
-- CA, certificate, key and token file on its host, or nulls): from
-- this transaction's commit every write to them is refused (pgferry.fenced,
-- on each table and each of its partitions: a statement fires only the
-- statement triggers of the table it names). Creating a trigger waits for
-- the transactions writing the table, so every write before the fence has
-- committed before it; the first batch cut whose snapshot sees this
-- transaction (cut_batches.sql) holds them all and is the final one.
create or replace function pgferry.fence(p_target int, p_epoch bigint, p_reverse_address text,
                                         p_files text[])
returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_name text := (select name from pgferry.targets where target_id = p_target);
    v_rel regclass;
begin
    -- The DDL watch lets these ALTERs pass, as attach's.
    perform set_config('pgferry.attaching', 'on', true);
    insert into pgferry.switchovers (target_id, epoch, reverse_address, tls_ca, tls_cert, tls_key,
                                     auth_token_file)
    values (p_target, p_epoch, p_reverse_address, p_files[1], p_files[2], p_files[3], p_files[4]);
    for v_rel in
        select distinct m.relid::regclass
        from pgferry.tables t
        -- pg_partition_tree lists nothing for a table that has no partitions.
        cross join lateral (select t.relid union select relid from pg_partition_tree(t.relid)) m
        where t.target_id = p_target and not t.removed
        order by 1
    loop
        execute format('create trigger pgferry_fence before insert or update or delete or truncate on %s
                          for each statement execute function pgferry.fenced(%L, %L)',
                       v_rel, v_name, p_epoch);
        execute format('alter table %s enable always trigger pgferry_fence', v_rel);
    end loop;
    perform set_config('pgferry.attaching', 'off', true);
end
$$;
