-- One change of a table captured per row, from the row trigger function
-- attach makes for it (pgferry.capture_filtered_<id>), with its old and new
-- row as JSON objects of the captured columns' text forms and, when some
-- registration filters rows, the registrations whose filters the old and
-- the new row match: queues the new row's captured columns, the old key
-- for a delete or a key change, and the two lists. A change no
-- registration takes (every one filters and neither row matches) is not
-- queued. An update that keeps the key queues the key and the columns it
-- changed (their text forms compared: 1.0 and 1.00 differ), or nothing
-- when none changed, unless a registration's filter matches the new row
-- and not the old: that registration takes it as an insert of the whole
-- row (route.sql).
create or replace function pgferry.capture_row(
    p_capture int, p_op text, p_keys text[], p_columns text[], p_everyone boolean,
    p_old json, p_new json, p_old_hits int[], p_new_hits int[]) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_new json := p_new;
    v_old_key json;
    v_key_changed boolean := false;
begin
    if not p_everyone and cardinality(p_old_hits) = 0 and cardinality(p_new_hits) = 0 then
        return;
    end if;
    if p_new is not null and p_columns is not null then
        -- Only the replicated columns leave the source.
        v_new := (select json_object_agg(c, p_new -> c) from unnest(p_columns) c);
    end if;
    if p_old is not null then
        v_old_key := (select json_object_agg(k, p_old -> k) from unnest(p_keys) k);
        -- Text forms compare as the source wrote them: a key rewritten to
        -- an equal value of another text (1.0 -> 1.00) moves the row.
        v_key_changed := p_new is not null
            and exists (select from unnest(p_keys) k where (p_new ->> k) is distinct from (p_old ->> k));
    end if;
    if p_op = 'UPDATE' and not v_key_changed
       and not exists (select from unnest(p_new_hits) h where not h = any (p_old_hits)) then
        v_new := (select json_object_agg(k.c, v_new -> k.c order by k.p)
                  from json_object_keys(v_new) with ordinality k(c, p)
                  where k.c = any (p_keys) or (v_new ->> k.c) is distinct from (p_old ->> k.c));
        if (select count(*) from json_object_keys(v_new)) = cardinality(p_keys) then
            return;
        end if;
    end if;
    insert into pgferry.queue (table_id, op, old_key, new_row, old_hits, new_hits)
    values (p_capture,
            case p_op when 'INSERT' then 'I' when 'UPDATE' then 'U' else 'D' end,
            case when p_op = 'DELETE' or v_key_changed then v_old_key end,
            v_new, p_old_hits, p_new_hits);
end
$$;
