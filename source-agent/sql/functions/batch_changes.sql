-- The changes of target p_target's batch p_batch: those of the transactions
-- visible in its snapshot and not in the previous one, of the target's
-- tables, in seq order, each as that table's registration takes it
-- (route); less, for a copied table, the changes already in its copy, and,
-- for a table removed or set aside, those after the batch its target had
-- acknowledged then. A schema change is as its registration and target
-- take it (schema_change_for). Plain SQL and STABLE,
-- so the planner inlines it and a portal over it streams.
create or replace function pgferry.batch_changes(p_target int, p_batch bigint)
returns table (seq bigint, table_id int, op "char", old_key json, new_row json, statement_rows int)
language sql stable as $$
    select q.seq, t.table_id, d.op, d.old_key,
           case when d.op = 'S'
                then pgferry.schema_change_for(d.new_row, t.columns, t.target_schema, t.target_name,
                        case when exists (select from pgferry.ddl_done o
                                          where o.target_id = p_target and o.seq = q.seq) then 'done'
                             else g.ddl end)
                else d.new_row end,
           q.statement_rows
    from pgferry.batch p
    join pgferry.targets g on g.target_id = p_target
    join pgferry.batch c on c.target_id = p_target and c.batch_id = p_batch
    cross join lateral pgferry.committed_ranges(c.snapshot, p.snapshot) r
    -- OFFSET 0 keeps this a lookup per range: joined flat, the planner
    -- took the ranges for a filter over a sequential scan of the queue.
    cross join lateral (select * from pgferry.queue q
                        where q.txid >= r.lo and q.txid < r.hi offset 0) q
    join pgferry.tables t on t.capture_id = q.table_id and t.target_id = p_target
    cross join lateral pgferry.route(q.op, q.old_key, q.new_row, q.statement_rows is not null,
                                     q.old_hits, q.new_hits, t.table_id, t.key_columns,
                                     t.columns, t.row_filter is not null) d
    where p.target_id = p_target and p.batch_id = p_batch - 1
      and (t.copy_snapshot is null or not pg_visible_in_snapshot(q.txid, t.copy_snapshot))
      and (t.removed_batch is null or p_batch <= t.removed_batch)
      and (t.set_aside_batch is null or p_batch <= t.set_aside_batch)
    order by q.seq
$$;
