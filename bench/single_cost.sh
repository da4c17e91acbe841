#!/usr/bin/env bash
# What capture costs single-statement autocommit writes, agents not running:
# one pgbench client runs 20,000 one-row INSERTs, 10,000 UPDATEs and 10,000
# DELETEs on a plain table, on one replicated with the PL/pgSQL capture and
# on one with the compiled capture (each in a database of its own, as
# `install --capture` picks per database), in turn, two rounds (the first
# warms the cache up). Prints TPS and WAL bytes per statement for each phase,
# and the seconds of the three.
# One throwaway cluster (fsync on); release build; the compiled capture must
# be installed (source-agent/capture-extension/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
cargo build --release -p source-agent

source bench/scratch_cluster.sh
lsn() { psql -qXtA "$db" -c "select pg_current_wal_insert_lsn()"; }
run() { # database, table, statement (with the table as %s twice at most), count
    printf "$3" "$2" "$2" >"$dir/s.sql"
    local before
    before=$(lsn)
    "$PG_BINDIR/pgbench" -n -h "$dir" -p "$port" -U postgres -c 1 -t "$4" -f "$dir/s.sql" "$1" 2>/dev/null |
        awk '/^tps/ {printf "%.0f", $3}'
    # WAL bytes per statement (checkpoints' full-page images included).
    printf "/%s" "$(psql -qXtA "$db" -c "select round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$before') / $4)")"
}
for capture in plpgsql compiled; do
    sql "create database $capture"
    cdb="host=$dir port=$port user=postgres dbname=$capture"
    psql -qX -v ON_ERROR_STOP=1 "$cdb" -c "create table s_rep (id int primary key, v int not null);
        create sequence s_rep_insert; create sequence s_rep_delete;" >/dev/null
    target/release/source-agent install --source-db "$cdb" --capture "$capture" >/dev/null
    target/release/source-agent add-table --source-db "$cdb" public.s_rep >/dev/null
done
sql "create table s_rep (id int primary key, v int not null);
     create sequence s_rep_insert; create sequence s_rep_delete;"
echo "| round | capture | INSERT TPS / WAL bytes each | UPDATE | DELETE | seconds |"
echo "|---|---|---|---|---|---|"
for round in 1 2; do
    for database in plpgsql compiled postgres; do
        i=$(run $database s_rep "insert into %s values (nextval('%s_insert'), 0);" 20000)
        u=$(run $database s_rep "\\\\set id random(1, 20000)\nupdate %s set v = v + 1 where id = :id;\n" 10000)
        # The id in a subquery: nextval in the WHERE clause runs per row scanned.
        d=$(run $database s_rep "delete from %s where id = (select nextval('%s_delete'));" 10000)
        name=$database
        [ "$database" = postgres ] && name="none (plain table)"
        awk -v r=$round -v t="$name" -v i=$i -v u=$u -v d=$d \
            'BEGIN { printf "| %d | %s | %s | %s | %s | %.1f |\n", r, t, i, u, d, 20000/i + 10000/u + 10000/d }'
    done
done
