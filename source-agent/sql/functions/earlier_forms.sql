-- The forms target p_target's tables may still have: for each registration,
-- the shape before each schema change queued and not yet acknowledged by the
-- target (the target may or may not have applied it), oldest first, as the
-- registration takes it: its columns (none the source computes), its target
-- table's name then (the source's, where the registration follows it), and
-- its key columns under their names then. A stream's hello announces them
-- beside the current form.
create or replace function pgferry.earlier_forms(p_target int)
returns table (table_id int, target_schema text, target_name text, key_columns text[],
               names text[], types text[], not_null boolean[], attnums int[])
language sql stable as $$
    select t.table_id,
           case when t.target_schema = t.source_schema and t.target_name = t.source_name
                then s.before ->> 'schema' else t.target_schema end,
           case when t.target_schema = t.source_schema and t.target_name = t.source_name
                then s.before ->> 'name' else t.target_name end,
           array(select coalesce((select b ->> 'name'
                                  from jsonb_array_elements(t.shape -> 'columns') a
                                  join jsonb_array_elements(s.before -> 'columns') b
                                    on b ->> 'attnum' = a ->> 'attnum'
                                  where a ->> 'name' = k), k)
                 from unnest(t.key_columns) with ordinality u(k, n) order by n),
           f.names, f.types, f.not_null, f.attnums
    from pgferry.tables t
    join pgferry.targets g on g.target_id = t.target_id
    join pgferry.batch b on b.target_id = g.target_id and b.batch_id = g.acked_batch
    cross join lateral (select q.seq, (q.new_row -> 'before')::jsonb as before
                        from pgferry.queue q
                        where q.table_id = t.capture_id and q.op = 'S'
                          and not pg_visible_in_snapshot(q.txid, b.snapshot)) s
    cross join lateral pgferry.shape_columns(s.before, t.columns) f
    where t.target_id = p_target and t.shape is not null
    order by t.table_id, s.seq
$$;
