-- The changes of target p_target's batches after p_after, each as its
-- registration takes it (route), with its batch and transaction: what a
-- promoted target never applied (`source-agent rejoin`). A transaction's
-- commit time comes with it where track_commit_timestamp is on (it orders
-- the transactions of one batch by commit; without it they keep the order
-- of their first change).
create or replace function pgferry.lost_changes(p_target int, p_after bigint)
returns table (batch_id bigint, txid xid8, committed_at timestamptz, seq bigint, source text,
               op "char", old_key json, new_row json, statement_rows int)
language sql stable as $$
    select c.batch_id, q.txid,
           case when current_setting('track_commit_timestamp')::boolean
                then pg_xact_commit_timestamp(q.txid::xid) end,
           q.seq, t.source_schema || '.' || t.source_name, d.op, d.old_key, d.new_row,
           q.statement_rows
    from pgferry.batch c
    join pgferry.batch p on p.target_id = p_target and p.batch_id = c.batch_id - 1
    cross join lateral pgferry.committed_ranges(c.snapshot, p.snapshot) r
    cross join lateral (select * from pgferry.queue q
                        where q.txid >= r.lo and q.txid < r.hi offset 0) q
    join pgferry.tables t on t.capture_id = q.table_id and t.target_id = p_target and not t.removed
    cross join lateral pgferry.route(q.op, q.old_key, q.new_row, q.statement_rows is not null,
                                     q.old_hits, q.new_hits, t.table_id, t.key_columns,
                                     t.columns, t.row_filter is not null) d
    where c.target_id = p_target and c.batch_id > p_after
    order by c.batch_id, q.seq
$$;
