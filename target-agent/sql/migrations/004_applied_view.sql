-- Version 4: applied progress in SQL.
--
-- A row per source: its last batch applied and when, and when the target
-- last made its applied batches durable (batches applied after that may be
-- lost in a crash of this server; the source keeps them until durable), for
-- psql and SQL-based monitoring without the agent binary.
create view pgferry.applied as
select p.source_id,
       p.last_batch,
       p.applied_at,
       f.flushed_at as durable_at,
       extract(epoch from now() - p.applied_at)::float8 as seconds_since_applied
from pgferry.progress p
left join pgferry.flushes f on f.source_id = p.source_id;
