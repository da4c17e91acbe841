-- Empties, by TRUNCATE, each rotating child of the queue (migration 20)
-- whose rows every target has acknowledged, and returns how many it
-- emptied. A child qualifies when its newest row's transaction is older
-- than the floor's xmin: every transaction of its rows has ended, and the
-- committed ones are visible in the floor, so acknowledged by all.
-- The child the writers' transaction ids map to now, and the next, are
-- left alone unless they take more than p_busy_above bytes (a burst of
-- large values on a quiet database, whose ids come round slowly): their
-- writers would queue behind the lock for the TRUNCATE's moment. A child
-- is locked without waiting, so neither the cutter's reads nor a writer
-- ever wait for the lock to be granted; a child in use is tried again at
-- the next call. Under the lock no transaction can be adding rows to it,
-- and the check is made again.
create or replace function pgferry.rotate_queue(p_busy_above bigint) returns int
language plpgsql as $$
declare
    v_floor pg_snapshot := pgferry.queue_floor();
    v_rotation pgferry.queue_rotation;
    v_now bigint;
    v_child regclass;
    v_newest xid8;
    v_emptied int := 0;
begin
    if v_floor is null then
        return 0;
    end if;
    select * into v_rotation from pgferry.queue_rotation;
    v_now := pg_snapshot_xmax(pg_current_snapshot())::text::bigint >> v_rotation.shift;
    for i in 0 .. v_rotation.parts - 1 loop
        v_child := to_regclass(format('pgferry.queue_%s', i));
        continue when v_child is null;
        continue when i in (v_now % v_rotation.parts, (v_now + 1) % v_rotation.parts)
                      and pg_total_relation_size(v_child) <= p_busy_above;
        execute format('select max(txid) from %s', v_child) into v_newest;
        continue when v_newest is null or v_newest >= pg_snapshot_xmin(v_floor);
        begin
            execute format('lock table %s in access exclusive mode nowait', v_child);
            execute format('select max(txid) from %s', v_child) into v_newest;
            if v_newest is not null and v_newest < pg_snapshot_xmin(pgferry.queue_floor()) then
                execute format('truncate %s', v_child);
                v_emptied := v_emptied + 1;
            end if;
        exception when lock_not_available then
            null;
        end;
    end loop;
    return v_emptied;
end
$$;
