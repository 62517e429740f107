# Shared by run.sh, test.sh, .ci/run and bench/: install what is missing, find PostgreSQL's binaries.
# shellcheck shell=bash

# apt-get install the given Debian packages if any is missing.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    # Debian's server packages try to start a cluster; policy-rc.d stops that in containers, which is fine.
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_dotnet() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "mproxy needs the .NET 10 SDK (https://dot.net); dotnet is not on PATH" >&2
    exit 1
  fi
}

pg_bindir() {
  if [ -x /usr/lib/postgresql/15/bin/postgres ]; then echo /usr/lib/postgresql/15/bin; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] && echo "$d"
}

# Run a command as the postgres user when we are root (PostgreSQL refuses to run as root).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# N distinct free loopback ports on one line (free_port called N times may hand out one port twice:
# each probe socket is closed before the next is bound).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# A throwaway PostgreSQL for the pgbench benchmarks: cluster in DIR/data listening on 127.0.0.1:PORT,
# role and database "bench" (password bench, exported as PGPASSWORD), initialized by pgbench at SCALE.
start_bench_postgres() {
  local dir=$1 port=$2 scale=$3 bin
  bin=$(pg_bindir)
  as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 400
shared_buffers = 256MB
CONF
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start >/dev/null
  as_postgres "$bin/psql" -h "$dir" -p "$port" -U postgres -q -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE bench OWNER bench"
  export PGPASSWORD=bench
  pgbench -i -q -s "$scale" -h 127.0.0.1 -p "$port" -U bench bench >/dev/null 2>&1
}

# Puts start_bench_postgres's database back into the same state before a measured pgbench run, as
# pgbench does itself without -n (which the scripts pass, since the run may go through a proxy):
# vacuums the two small tables TPC-B updates on every transaction, empties the history it appends
# to, then checkpoints, so that writing out the previous run's pages does not land in this one: no
# run inherits the bloat or the dirty pages of the runs before it. (It did not make two copies of one
# build agree better in an A/A run of bench/pgbench.sh: single 10-s runs on this shared box still
# differ by up to 15 %; read the medians of several rounds.)
reset_bench_database() { # dir port
  as_postgres "$(pg_bindir)/psql" -h "$1" -p "$2" -U postgres -d bench -q \
    -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history" -c "CHECKPOINT" >/dev/null
}

# PgBouncer for the benchmarks, in front of start_bench_postgres's server: transaction pooling, POOL
# server connections, config and logs in DIR; listens on PORT. SERVER_LOGIN (optional) is added to
# the database line (e.g. "user=bench password=bench" to force one server user); USERS (optional)
# is the auth file, one '"name" "password"' per line, checked with SCRAM. The default is user
# "bench" with the SCRAM verifier PostgreSQL stores for it (pg_authid), as a production auth file or
# auth_query has it: with a plaintext password PgBouncer derives a new verifier (4096 PBKDF2 rounds)
# at every login — 3.4 ms of CPU per connection in the connect50 row, where mproxy, which derives
# its users' verifiers once, spent 0.4 ms.
# Prints its pid once it runs.
start_bench_pgbouncer() {
  local dir=$1 pg_port=$2 port=$3 pool=$4 server_login=${5:-} users=${6:-}
  if [ -z "$users" ]; then
    users="\"bench\" \"$(as_postgres "$(pg_bindir)/psql" -h "$dir" -p "$pg_port" -U postgres -d postgres -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")\""
  fi
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench${server_login:+ $server_login}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool
max_client_conn = 2000
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  printf '%s\n' "$users" > "$dir/userlist.txt"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"/pgbouncer.ini "$dir"/userlist.txt
  as_postgres pgbouncer -d "$dir/pgbouncer.ini"
  for _ in $(seq 1 50); do [ -s "$dir/pgbouncer.pid" ] && break; sleep 0.1; done
  cat "$dir/pgbouncer.pid"
}

# Waits up to 30 s for each PORT in turn to accept a connection on 127.0.0.1; fails, naming the port,
# if one never does.
wait_ports() {
  local port
  for port in "$@"; do
    for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue 2; sleep 0.2; done
    echo "port $port never opened" >&2
    return 1
  done
}

# A benchmark's throwaway directory (readable by postgres) in $work, PostgreSQL's binaries in $bin,
# and an EXIT trap that kills every pid the script adds to $pids, stops the PostgreSQL started in
# $work and removes it. PREFIX names the directory: /tmp/PREFIX.XXXXXX.
bench_workdir() {
  bin=$(pg_bindir)
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$work"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$work"; fi
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_postgres "$bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
