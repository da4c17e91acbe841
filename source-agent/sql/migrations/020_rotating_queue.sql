-- Version 20: rotating queue tables (docs/architecture.md, "Rotating queue").
--
-- Acknowledged changes left the queue by DELETE, and the dead rows by
-- VACUUM: a WAL record per row deleted, then the vacuum's own reads and
-- writes, all on the source, beside its writers. The compiled capture now
-- queues into one of pgferry.queue_0 .. queue_{parts-1}, children of
-- pgferry.queue (inheritance: every read of pgferry.queue reads them too),
-- the one for its transaction id's range (txid >> shift, modulo parts).
-- Once no row of a child is needed by any target, upkeep empties it whole
-- with TRUNCATE (pgferry.rotate_queue). Rows queued by the PL/pgSQL capture
-- still go to pgferry.queue itself, and leave it by DELETE as before.
--
-- Which child a row lands in never decides whether it ships: reads find
-- rows by transaction id wherever they are, and a TRUNCATE removes only
-- rows of transactions every target has acknowledged, checked under the
-- child's exclusive lock.

-- shift: 2^shift transaction ids per range (2^14: about three seconds of
-- five thousand writes a second). parts: the children. Read by the
-- compiled capture once per session; changing them moves where new rows
-- go, never whether they are kept.
create table pgferry.queue_rotation (
    singleton boolean primary key default true check (singleton),
    shift     int not null default 14 check (shift between 0 and 40),
    parts     int not null default 8 check (parts between 1 and 64)
);
insert into pgferry.queue_rotation default values;

do $$
declare
    v_parts int := (select parts from pgferry.queue_rotation);
    v_seq regclass := pg_get_serial_sequence('pgferry.queue', 'seq');
    v_child text;
begin
    for i in 0 .. v_parts - 1 loop
        v_child := 'queue_' || i;
        execute format('create table pgferry.%I () inherits (pgferry.queue)', v_child);
        -- Identity is not inherited: the children draw capture order from
        -- the parent's sequence, named by oid (looking it up by the table's
        -- name at every insert cost a single-row statement's capture a
        -- catalog search).
        execute format('alter table pgferry.%I alter column seq set default nextval(%L::regclass)',
                       v_child, v_seq::oid);
        execute format('create index on pgferry.%I (txid)', v_child);
        execute format('create index on pgferry.%I (table_id, seq) where op = ''S''', v_child);
        -- See version 2: no vacuum truncation under the writers.
        execute format('alter table pgferry.%I set (vacuum_truncate = false,
                                                    toast.vacuum_truncate = false)', v_child);
    end loop;
end
$$;
