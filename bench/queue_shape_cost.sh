#!/usr/bin/env bash
# What the queue's shape costs the agents' two commonest statements: the
# cut's probe (is any row of these transaction ids queued?) and a batch's
# read (the rows of 20 transaction ids, in seq order), over one queue table
# of 150,000 rows (q1), an inheritance parent with three children holding
# the same rows by transaction id range (qi, the rotating queue tables of
# commit 1fe0b46), and a list-partitioned queue whose statements name the
# one partition a range maps to (qp, pruned when the plan starts). Each
# line: statements a second from one pgbench client for 5 s, prepared,
# generic plans and index scans only (as the agents' sessions plan), three
# rounds. One throwaway cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
source bench/scratch_cluster.sh
sql "create table q1 (seq bigint, txid bigint, table_id int, new_row text);
     insert into q1 select g, 1000000 + g, 1, 'row ' || g from generate_series(1, 150000) g;
     create index on q1 (txid); analyze q1;
     create table qi (seq bigint, txid bigint, table_id int, new_row text);
     create table qi_0 () inherits (qi); create table qi_1 () inherits (qi); create table qi_2 () inherits (qi);
     insert into qi_0 select * from q1 where ((txid >> 16) % 3) = 0;
     insert into qi_1 select * from q1 where ((txid >> 16) % 3) = 1;
     insert into qi_2 select * from q1 where ((txid >> 16) % 3) = 2;
     create index on qi (txid); create index on qi_0 (txid); create index on qi_1 (txid); create index on qi_2 (txid);
     analyze qi; analyze qi_0; analyze qi_1; analyze qi_2;
     create table qp (seq bigint, txid bigint, table_id int, new_row text, part smallint not null) partition by list (part);
     create table qp_0 partition of qp for values in (0);
     create table qp_1 partition of qp for values in (1);
     create table qp_2 partition of qp for values in (2);
     insert into qp select *, (txid >> 16) % 3 from q1;
     create index on qp (txid); analyze qp;"
for t in q1 qi qp; do
  cond=""
  [ $t = qp ] && cond="and part = ((:lo::bigint >> 16) % 3)::smallint"
  cat > $dir/$t-probe.sql <<SQL
\set lo random(1000000, 1149990)
select exists (select from $t where txid >= :lo and txid < :lo + 2 and table_id = 1 $cond);
SQL
  cat > $dir/$t-read.sql <<SQL
\set lo random(1000000, 1149900)
select seq, new_row from $t where txid >= :lo and txid < :lo + 20 $cond order by seq;
SQL
done
for round in 1 2 3; do
  for t in q1 qi qp; do
    for kind in probe read; do
      tps=$(PGOPTIONS='-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off' \
            "$PG_BINDIR/pgbench" -n -M prepared -c 1 -T 5 -f $dir/$t-$kind.sql "$db" 2>/dev/null \
            | awk '/^tps/ {print $3}')
      echo "round $round $t $kind tps $tps"
    done
  done
done
