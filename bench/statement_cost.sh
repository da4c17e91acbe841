#!/usr/bin/env bash
# What pgferry's own statements cost, on one throwaway cluster (release build):
# 1. Apply: 1,000,000 rows as 1000-row JSON arrays, the way a batch reaches
#    the target, all in one transaction, with the applier's planner settings:
#    the upsert forms (inserting into an empty table, then updating every
#    row), the plain insert a run of inserts alone gets, and the delete
#    forms. Milliseconds per million rows.
# 2. Queue: while a 1,000,000-row INSERT into a replicated table is still
#    running, eight cuts (PL/pgSQL plans the cut generically after five; the
#    first cuts the one-row batch written meanwhile) and reads of that batch,
#    with the server's JIT setting and without JIT. Milliseconds each.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
cargo build --release -p source-agent
source bench/scratch_cluster.sh

sql "create table bulk (id int primary key, v int);
     create table chunks as
     select g / 1000 as c,
            '[' || string_agg(format('{\"id\": %s, \"v\": 0}', g), ', ' order by g) || ']' as j
     from generate_series(0, 999999) g group by 1;"

# Runs $2 (with the chunk as \$1) for every chunk in one transaction, after $1.
apply_ms() {
    psql -qX -v ON_ERROR_STOP=1 "$db" <<SQL | awk '/^Time/ {printf "%.0f", $2}'
$1;
checkpoint;
set enable_seqscan = off; set enable_hashjoin = off; set enable_mergejoin = off;
\timing on
do \$\$ declare r record; begin
    for r in select j from chunks order by c loop execute \$s\$$2\$s\$ using r.j; end loop;
end \$\$;
SQL
}
last="select distinct on (r.id) r.id, r.v
      from rows from (json_to_recordset(\$1::text::json) as (id integer, v integer))
           with ordinality as r(id, v, ord)
      order by r.id, r.ord desc"
declare -A upserts=(
    ["jsonb elements + jsonb_populate_record, ON CONFLICT (before)"]="insert into bulk as t (id, v)
        select distinct on (r.id) r.id, r.v
        from jsonb_array_elements(\$1::text::jsonb) with ordinality as e(row, ord)
        cross join lateral jsonb_populate_record(null::bulk, e.row) as r
        order by r.id, e.ord desc
        on conflict (id) do update set id = excluded.id, v = excluded.v"
    ["json_to_recordset, ON CONFLICT (PostgreSQL before 15)"]="insert into bulk as t (id, v) $last
        on conflict (id) do update set id = excluded.id, v = excluded.v"
    ["json_to_recordset, MERGE (PostgreSQL 15 and newer)"]="merge into bulk as t using ($last) as n
        on t.id = n.id when matched then update set v = n.v
        when not matched then insert (id, v) values (n.id, n.v)"
)
echo "| apply of 1M rows | insert, ms | update, ms |"
echo "|---|---|---|"
for name in "${!upserts[@]}"; do
    echo "| $name | $(apply_ms "truncate bulk" "${upserts[$name]}") | $(apply_ms "vacuum bulk" "${upserts[$name]}") |"
done | sort
echo "| plain INSERT from json_to_recordset (a run of inserts alone) | $(apply_ms "truncate bulk" "insert into bulk (id, v)
    select id, v from json_to_recordset(\$1::text::json) as r(id integer, v integer)") | - |"
echo
echo "| delete of 1M rows (rolled back) | ms |"
echo "|---|---|"
echo "| a ctid lookup per key (current) | $(apply_ms "begin" "delete from bulk as t where t.ctid = any(array(
    select (select s.ctid from bulk as s where s.id = r.id)
    from json_to_recordset(\$1::text::json) as r(id integer)))") |"
echo "| DELETE ... USING | $(apply_ms "begin" "delete from bulk as t using json_to_recordset(\$1::text::json) as r(id integer) where t.id = r.id") |"

target/release/source-agent install --source-db "$db" >/dev/null 2>&1
sql "create table queued (id int primary key, v int)"
target/release/source-agent add-table --source-db "$db" public.queued >/dev/null 2>&1
sql "select pgferry.cut_batch(100, 0)"
sql "update pgferry.tables set state = 'replicating'"
psql -qX "$db" -c "begin; insert into queued select generate_series(1, 1000000), 0;
                   select pg_sleep(20); commit;" >/dev/null &
writer=$!
# Long enough for the writer to have queued its rows (about 3 s here) and
# still be holding its transaction open.
sleep 8
sql "insert into queued values (0, 0)"
timings=$(psql -qX -v ON_ERROR_STOP=1 "$db" <<'SQL' | awk '/^Time/ {printf "%s ", $2}'
\timing on
select pgferry.cut_batch(100, 0);
select pgferry.cut_batch(100, 0);
select pgferry.cut_batch(100, 0);
select pgferry.cut_batch(100, 0);
select pgferry.cut_batch(100, 0);
select pgferry.cut_batch(100, 0);
select pgferry.cut_batch(100, 0);
select pgferry.cut_batch(100, 0);
select count(*) from pgferry.batch_changes(2);
select count(*) from pgferry.batch_changes(2);
set jit = off;
select count(*) from pgferry.batch_changes(2);
select count(*) from pgferry.batch_changes(2);
SQL
)
wait "$writer"
read -ra t <<<"$timings"
echo
echo "| while a 1M-row INSERT runs | ms |"
echo "|---|---|"
echo "| cuts 1-8 | ${t[*]:0:8} |"
echo "| reads of the one-row batch (batch 2), twice, server default jit | ${t[*]:8:2} |"
echo "| the same with jit = off (the agents' sessions) | ${t[*]:10:2} |"
