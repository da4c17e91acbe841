#!/usr/bin/env bash
# What capture costs a writer, piece by piece: pgbench single-row UPDATEs
# (4 clients, 5 s slices, fsync on) on a plain table and on copies of it
# with ever more of the capture work in an AFTER UPDATE trigger, agents not
# running. Each line is TPS on the variant and on the plain table in the
# slice right after it, and the overhead (three rounds: slices swing by a few
# points). Then a 100,000-row UPDATE, INSERT and DELETE, plain, captured, and
# captured on a table with a jsonb column (which travels in its text form).
# One throwaway cluster; release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
cargo build --release -p source-agent

source bench/scratch_cluster.sh
tps() {
    printf '\\set id random(1, 100000)\nupdate %s set v = v + 1 where id = :id;\n' "$1" >"$dir/$1.sql"
    "$PG_BINDIR/pgbench" -n -h "$dir" -p "$port" -U postgres -c 4 -j 2 -T 5 -f "$dir/$1.sql" postgres 2>/dev/null |
        awk '/^tps/ {printf "%.0f", $3}'
}
measure() {
    local rep plain
    rep=$(tps "$2")
    plain=$(tps t_plain)
    awk -v name="$1" -v rep="$rep" -v plain="$plain" \
        'BEGIN { printf "| %s | %d | %d | %.1f |\n", name, rep, plain, (1 - rep / plain) * 100 }'
}

sql "create table t_plain (id int primary key, v int not null, info text);
     insert into t_plain select g, 0, md5(g::text) from generate_series(1, 100000) g;"
for t in t_noop t_insert t_row t_nokey t_capture t_notify; do
    sql "create table $t (like t_plain including all); insert into $t select * from t_plain;"
done
sql "create table t_json (like t_plain including all, j jsonb);
     insert into t_json select *, '{\"a\": null}' from t_plain;"
target/release/source-agent install --source-db "$db" >/dev/null 2>&1
for t in t_nokey t_capture t_notify t_json; do
    target/release/source-agent add-table --source-db "$db" "public.$t" >/dev/null 2>&1
done
# What the row trigger that catches key changes costs beside the statement's.
sql "drop trigger pgferry_capture_update_key on t_nokey"
sql "create function noop() returns trigger language plpgsql as 'begin return null; end';
     create trigger x after update on t_noop for each row execute function noop();
     create function queue_const() returns trigger language plpgsql security definer as \$\$
     begin insert into pgferry.queue (table_id, op, new_row) values (0, 'U', '{}'); return null; end \$\$;
     create trigger x after update on t_insert for each row execute function queue_const();
     create function queue_row() returns trigger language plpgsql security definer as \$\$
     begin insert into pgferry.queue (table_id, op, new_row) values (0, 'U', row_to_json(new)); return null; end \$\$;
     create trigger x after update on t_row for each row execute function queue_row();
     create function notify() returns trigger language plpgsql as \$\$
     begin perform pg_notify('pgferry', ''); return null; end \$\$;
     create trigger y after update on t_notify for each row execute function notify();"

echo "| AFTER UPDATE trigger | TPS | plain TPS | overhead % |"
echo "|---|---|---|---|"
for round in 1 2 3; do
    measure "empty PL/pgSQL function" t_noop
    measure "+ queue insert of a constant" t_insert
    measure "+ row_to_json(new) as the row" t_row
    measure "pgferry capture without its key-change row trigger" t_nokey
    measure "pgferry capture (add-table)" t_capture
    measure "pgferry capture + pg_notify (LISTEN/NOTIFY wake-up)" t_notify
    sql "truncate pgferry.queue"
done

# Bulk statements: an UPDATE of all 100,000 rows, an INSERT of 100,000
# more, and a DELETE of those, plain and captured.
bulk_ms() {
    psql -qX "$db" -c '\timing on' -c "$1" | awk '/^Time/ {printf "%.0f", $2}'
}
update="update %s set v = v + 1"
insert="insert into %s (id, v, info) select g, 0, md5(g::text) from generate_series(100001, 200000) g"
delete="delete from %s where id > 100000"
echo
echo "| statement | plain ms | pgferry capture ms | with a jsonb column (text form) ms |"
echo "|---|---|---|---|"
for statement in "$update" "$insert" "$delete"; do
    # shellcheck disable=SC2059
    echo "| ${statement%% *} of 100,000 rows | $(bulk_ms "$(printf "$statement" t_plain)") | $(bulk_ms "$(printf "$statement" t_capture)") | $(bulk_ms "$(printf "$statement" t_json)") |"
done
