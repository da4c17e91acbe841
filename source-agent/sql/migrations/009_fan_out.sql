-- Version 9: several targets (fan-out).
--
-- Each target has its own tables (a table may go to several targets, each
-- with its own name, columns and row filter), its own batch sequence and
-- progress. A table's changes are captured once for all its targets: the
-- queue's table_id is the capture id, shared by a table's registrations,
-- and each target's read routes and projects them (batch_changes).
--
-- An installation of one target upgrades in place: its progress moves
-- from the singleton pgferry.target onto its target's row (the one
-- add-target recorded, or an unnamed one, `default`, whose address
-- `run --target` gives), and its tables, batches and sequences become that
-- target's, with their queued changes.

alter table pgferry.targets
    alter column address drop not null,
    add column acked_batch    bigint not null default 0,
    add column acked_at       timestamptz,
    add column last_error     text,
    add column last_error_at  timestamptz,
    -- Bumped by every change of this target's table or sequence list, so
    -- its running stream knows to announce the new list.
    add column tables_version bigint not null default 0;

insert into pgferry.targets (name)
select 'default' where not exists (select from pgferry.targets);

update pgferry.targets t
set acked_batch = o.acked_batch, acked_at = o.acked_at, last_error = o.last_error,
    last_error_at = o.last_error_at, tables_version = o.tables_version
from pgferry.target o
where t.target_id = (select min(target_id) from pgferry.targets);

alter table pgferry.tables
    add column target_id int references pgferry.targets on delete cascade,
    -- What the capture triggers queue the table's changes under: the
    -- table_id of its first registration, shared by the later ones.
    add column capture_id int;
update pgferry.tables
set target_id = (select min(target_id) from pgferry.targets), capture_id = table_id;
alter table pgferry.tables
    alter column target_id set not null,
    alter column capture_id set not null,
    drop constraint tables_relid_key,
    add unique (relid, target_id);
create index tables_capture on pgferry.tables (capture_id);

alter table pgferry.sequences
    add column target_id int references pgferry.targets on delete cascade;
update pgferry.sequences set target_id = (select min(target_id) from pgferry.targets);
alter table pgferry.sequences
    alter column target_id set not null,
    drop constraint sequences_relid_key,
    add unique (relid, target_id);

-- Batch k of a target: the changes of the transactions visible in its
-- snapshot k and not in its k-1.
alter table pgferry.batch add column target_id int references pgferry.targets on delete cascade;
update pgferry.batch set target_id = (select min(target_id) from pgferry.targets);
alter table pgferry.batch
    alter column target_id set not null,
    drop constraint batch_pkey,
    add primary key (target_id, batch_id);

-- A change of a table some registration filters by rows: the
-- registrations whose filter the old row and the new row match (empty
-- where there is no such row); null for every other change. The read
-- turns it into what each target gets (pgferry.route).
alter table pgferry.queue
    add column old_hits int[],
    add column new_hits int[];

drop view pgferry.status;
drop view pgferry.table_status;
drop table pgferry.target;

drop function if exists pgferry.cut_batch(bigint, bigint);
drop function if exists pgferry.batch_changes(bigint);
drop function if exists pgferry.acknowledge(bigint, boolean);
drop function if exists pgferry.forget_removed();
-- They now take a capture id.
drop function if exists pgferry.attach(int);
drop function if exists pgferry.detach(int);
-- The per-table row filter functions and the triggers that call them in
-- their WHEN clauses; the install re-makes both (after_change.sql).
do $$
declare
    v_filter regprocedure;
begin
    for v_filter in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'pgferry'::regnamespace and p.proname like 'row\_filter\_%'
    loop
        execute format('drop function %s cascade', v_filter);
    end loop;
end
$$;

-- Status in SQL (see version 8), per target.
create view pgferry.status as
select t.name as target,
       t.address,
       coalesce(p.changes, 0)::bigint as pending_changes,
       coalesce(extract(epoch from now() - p.oldest)::float8, 0) as oldest_pending_age_secs,
       coalesce((select max(batch_id) from pgferry.batch b where b.target_id = t.target_id),
                t.acked_batch) as newest_batch,
       t.acked_batch,
       t.acked_at,
       coalesce((select extract(epoch from now() - b.cut_at)::float8 from pgferry.batch b
                 where b.target_id = t.target_id and b.batch_id = t.acked_batch + 1), 0) as delay_secs,
       t.last_error,
       t.last_error_at,
       case when exists (select from pg_extension where extname = 'pgferry_capture')
            then 'compiled' else 'plpgsql' end as capture
from pgferry.targets t
left join lateral (
    select sum(coalesce(q.statement_rows, 1)) as changes, min(q.captured_at) as oldest
    from pgferry.queue q
    where q.table_id in (select s.capture_id from pgferry.tables s where s.target_id = t.target_id)
      and not pg_visible_in_snapshot(q.txid, (select b.snapshot from pgferry.batch b
                                              where b.target_id = t.target_id
                                                and b.batch_id = t.acked_batch))
) p on true;

create view pgferry.table_status as
select g.name as target,
       t.source_schema || '.' || t.source_name as source,
       t.target_schema || '.' || t.target_name as target_table,
       t.key_columns,
       case when t.removed then 'removed' else t.state end as state,
       (select coalesce(sum(coalesce(statement_rows, 1)), 0)::bigint
        from pgferry.queue q
        where q.table_id = t.capture_id
          and not pg_visible_in_snapshot(q.txid, (select b.snapshot from pgferry.batch b
                                                  where b.target_id = g.target_id
                                                    and b.batch_id = g.acked_batch))) as pending_changes,
       t.columns,
       t.row_filter,
       t.copy_rows,
       t.copy_rows_estimate,
       t.copy_bytes,
       t.copy_bytes_estimate,
       t.copy_batch,
       t.copied_at
from pgferry.tables t
join pgferry.targets g using (target_id);
