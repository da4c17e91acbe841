-- Version 19: switchover (docs/architecture.md, "Switchover").
--
-- This database's epoch as a source. Every hello carries it; a target
-- refuses a source whose epoch is below the one it recorded, so a
-- database that handed the source role on (or a copy of it from before)
-- never writes there again. A take-over raises it to the switchover's.
create table pgferry.epoch (
    singleton boolean primary key default true check (singleton),
    epoch     bigint not null default 1
);
insert into pgferry.epoch default values;

-- A switchover of a target's tables: fenced here by the transaction
-- fence_xid, then the first batch whose snapshot sees that transaction
-- (final_batch) carries the fence and the new epoch; once the target has
-- it on disk (done_at) this database replicates none of them any more and
-- waits to become the new source's target.
create table pgferry.switchovers (
    target_id       int primary key references pgferry.targets on delete cascade,
    epoch           bigint not null,
    -- The reverse target's address and the files the new source's agent
    -- reaches it with (paths on its host), for the take-over.
    reverse_address text not null,
    tls_ca          text,
    tls_cert        text,
    tls_key         text,
    auth_token_file text,
    fence_xid       xid8 not null default pg_current_xact_id(),
    fenced_at       timestamptz not null default now(),
    final_batch     bigint,
    done_at         timestamptz
);

-- When the target's stream last became ready, and whether its database
-- has pgferry's source schema, so that it can take the source role (what
-- that Ready said).
alter table pgferry.targets
    add column ready_at      timestamptz,
    add column can_take_over boolean not null default false;
