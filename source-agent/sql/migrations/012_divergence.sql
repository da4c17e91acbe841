-- Version 12: a table's registration can be diverged: its target copy
-- misses changes (its capture was found switched off, or an operator set it
-- aside), shown in status until `add-table` copies it again. A table set
-- aside also leaves its target's stream: batches after set_aside_batch (the
-- target's acknowledged batch then) carry none of its changes.
alter table pgferry.tables
    add column diverged_at     timestamptz,
    add column diverged_reason text,
    add column set_aside_batch bigint;

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
       t.diverged_reason
from pgferry.tables t
join pgferry.targets g using (target_id);
