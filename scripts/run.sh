#!/usr/bin/env bash
# Builds and runs mproxy on its embedded default: an edge (with the in-process policy tier) in front
# of a throwaway local PostgreSQL that this script starts. With arguments, they go to mproxy as they
# are and no PostgreSQL is started, e.g.: scripts/run.sh --config deploy/mproxy.yaml
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet

echo "==> building mproxy" >&2
dotnet build "$root/src/Edge/MProxy.Edge.csproj" -c Release -v quiet -nologo >/dev/null
edge=("dotnet" "$root/src/Edge/bin/Release/net10.0/mproxy.dll")

if [ $# -gt 0 ]; then
  exec "${edge[@]}" "$@"
fi

ensure_packages postgresql-15 postgresql-client-15
bin=$(pg_bindir)
run_dir=$(mktemp -d /tmp/mproxy-run.XXXXXX)
chmod 755 "$run_dir"
[ "$(id -u)" -eq 0 ] && chown postgres "$run_dir"
pg_port=$(free_port)
listen_port=${MPROXY_PORT:-6432}
admin_port=${MPROXY_ADMIN_PORT:-9930}

cleanup() {
  as_postgres "$bin/pg_ctl" -D "$run_dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

echo "==> starting a throwaway PostgreSQL on 127.0.0.1:$pg_port ($run_dir)" >&2
printf 'app\n' > "$run_dir/pw"; chmod 644 "$run_dir/pw"
as_postgres "$bin/initdb" -D "$run_dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
cat >> "$run_dir/data/postgresql.conf" <<CONF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$run_dir'
max_connections = 200
CONF
as_postgres "$bin/pg_ctl" -D "$run_dir/data" -l "$run_dir/postgres.log" -w start >/dev/null
as_postgres "$bin/psql" -h "$run_dir" -p "$pg_port" -U postgres -q -c "CREATE ROLE app LOGIN PASSWORD 'app'" -c "CREATE DATABASE app OWNER app"

cat >&2 <<MSG

mproxy is starting on 127.0.0.1:$listen_port in front of PostgreSQL 127.0.0.1:$pg_port.
Connect:    psql "postgresql://app:app@127.0.0.1:$listen_port/app"
Try:        pgbench -i -h 127.0.0.1 -p $listen_port -U app app   (password: app)
            pgbench -c 50 -j 2 -T 10 -S -h 127.0.0.1 -p $listen_port -U app app
Health:     curl http://127.0.0.1:$admin_port/healthz
Metrics:    curl http://127.0.0.1:$admin_port/metrics   (Prometheus text)
Stop:       Ctrl-C (the throwaway PostgreSQL is removed)

MSG
"${edge[@]}" --listen "127.0.0.1:$listen_port" --admin-listen "127.0.0.1:$admin_port" \
  --primary "postgres://app:app@127.0.0.1:$pg_port/app" --pool-size 20 --pool-mode transaction
