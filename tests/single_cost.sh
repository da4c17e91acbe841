#!/usr/bin/env bash
# What capture costs single-statement autocommit writes, agents not running:
# one pgbench client runs 20,000 one-row INSERTs, 10,000 UPDATEs and 10,000
# DELETEs on a replicated table and on an identical plain one, in turn, two
# rounds (the first warms the cache up). Prints TPS per phase and the
# seconds of the three. One throwaway cluster (fsync on); release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
cargo build --release -p source-agent

source tests/scratch_cluster.sh
run() { # table, statement (with the table as %s twice at most), count
    printf "$2" "$1" "$1" >"$dir/s.sql"
    "$PG_BINDIR/pgbench" -n -h "$dir" -p "$port" -U postgres -c 1 -t "$3" -f "$dir/s.sql" postgres 2>/dev/null |
        awk '/^tps/ {printf "%.0f", $3}'
}
for t in s_plain s_rep; do
    sql "create table $t (id int primary key, v int not null);
         create sequence ${t}_insert; create sequence ${t}_delete;"
done
target/release/source-agent install --source-db "$db" >/dev/null
target/release/source-agent add-table --source-db "$db" public.s_rep >/dev/null
echo "| round | table | INSERT TPS | UPDATE TPS | DELETE TPS | seconds |"
echo "|---|---|---|---|---|---|"
for round in 1 2; do
    for t in s_rep s_plain; do
        i=$(run $t "insert into %s values (nextval('%s_insert'), 0);" 20000)
        u=$(run $t "\\\\set id random(1, 20000)\nupdate %s set v = v + 1 where id = :id;\n" 10000)
        # The id in a subquery: nextval in the WHERE clause runs per row scanned.
        d=$(run $t "delete from %s where id = (select nextval('%s_delete'));" 10000)
        awk -v r=$round -v t=$t -v i=$i -v u=$u -v d=$d \
            'BEGIN { printf "| %d | %s | %d | %d | %d | %.1f |\n", r, t, i, u, d, 20000/i + 10000/u + 10000/d }'
    done
done
