-- Version 8: status in SQL.
--
-- What `source-agent status` shows, for psql and any SQL-based monitoring
-- (check_postgres, Zabbix, Datadog custom queries) without the agent binary:
-- pgferry.status, one row, and pgferry.table_status, a row per registered
-- table. `status` reads these views, so both show the same figures.

create view pgferry.status as
select (select coalesce(sum(coalesce(statement_rows, 1)), 0)::bigint
        from pgferry.queue) as pending_changes,
       coalesce((select extract(epoch from now() - min(captured_at))::float8
                 from pgferry.queue), 0) as oldest_pending_age_secs,
       (select max(batch_id) from pgferry.batch) as newest_batch,
       t.acked_batch,
       t.acked_at,
       t.last_error,
       t.last_error_at,
       case when exists (select from pg_extension where extname = 'pgferry_capture')
            then 'compiled' else 'plpgsql' end as capture,
       (select name || ' (' || address || ')' from pgferry.targets
        order by target_id limit 1) as target
from pgferry.target t;

create view pgferry.table_status as
select t.source_schema || '.' || t.source_name as source,
       t.target_schema || '.' || t.target_name as target,
       t.key_columns,
       case when t.removed then 'removed' else t.state end as state,
       (select coalesce(sum(coalesce(statement_rows, 1)), 0)::bigint
        from pgferry.queue q where q.table_id = t.table_id) as pending_changes,
       t.columns,
       t.row_filter,
       t.copy_rows,
       t.copy_rows_estimate,
       t.copy_bytes,
       t.copy_bytes_estimate,
       t.copy_batch,
       t.copied_at
from pgferry.tables t;
