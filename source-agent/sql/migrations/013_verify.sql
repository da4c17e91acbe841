-- Version 13: verify and repair. A batch can carry checks (`verify`'s
-- questions, answered by the target in the batch's transaction) and
-- repairs (rows read in the batch's own snapshot, applied after its
-- changes); the target's answers wait in check_results for the command
-- that asked; each registration keeps its last verify for `status`.
alter table pgferry.batch add column checks jsonb;

-- cut_batches now also returns each target's newest batch.
drop function if exists pgferry.cut_batches(int[], bigint[], bigint);

-- The source's rows of a repair, as COPY text, read in the snapshot that
-- cut their batch: they go and come with it.
create table pgferry.repair_rows (
    target_id int    not null,
    batch_id  bigint not null,
    table_id  int    not null,
    -- The repaired keys, a JSON array of key objects.
    keys      text   not null,
    rows      bytea  not null,
    primary key (target_id, batch_id, table_id),
    foreign key (target_id, batch_id) references pgferry.batch on delete cascade
);

-- A target's answers to a batch's checks, as the agent received them.
create table pgferry.check_results (
    target_id   int    not null references pgferry.targets on delete cascade,
    batch_id    bigint not null,
    answers     jsonb  not null,
    received_at timestamptz not null default now(),
    primary key (target_id, batch_id)
);

alter table pgferry.tables
    add column verified_at        timestamptz,
    add column verify_rows        bigint,
    add column verify_differences bigint,
    add column repaired_at        timestamptz,
    add column repaired_rows      bigint;

drop view pgferry.table_status;
create view pgferry.table_status as
select g.name as target,
       t.source_schema || '.' || t.source_name as source,
       t.target_schema || '.' || t.target_name as target_table,
       t.key_columns,
       case when t.removed then 'removed'
            when t.diverged_at is not null then 'diverged'
            else t.state end as state,
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
       t.copied_at,
       t.diverged_at,
       t.diverged_reason,
       t.verified_at,
       t.verify_rows,
       t.verify_differences,
       t.repaired_at,
       t.repaired_rows
from pgferry.tables t
join pgferry.targets g using (target_id);
