# Sourced by the cost scripts (bench/capture_cost.sh, bench/statement_cost.sh):
# one throwaway cluster on a Unix socket in its own directory (no TCP port to
# collide with), as the postgres user when run as root, stopped and removed
# on exit. Sets $dir, $port and $db, and sql() runs one statement quietly.
dir=$(mktemp -d /tmp/pgferry-cost-XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    as_pg=(runuser -u postgres --)
fi
port=5432
"${as_pg[@]}" "$PG_BINDIR/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
"${as_pg[@]}" "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses='' -c shared_buffers=256MB -c max_wal_size=2GB" start >/dev/null
trap '"${as_pg[@]}" "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null; rm -rf "$dir"' EXIT

db="host=$dir port=$port user=postgres dbname=postgres"
sql() { psql -qX -v ON_ERROR_STOP=1 "$db" -c "$1" >/dev/null; }
