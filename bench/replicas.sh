#!/usr/bin/env bash
# Replicas and failover (issue 5), in one run on this machine.
#
# (a) Read split. Starts a throwaway PostgreSQL primary (pgbench tables at SCALE) and a streaming
#     replica (pg_basebackup -R -c fast -X stream), and two mproxy edges (transaction mode, pool
#     POOL per host): one with the primary only, one with `backends: { primary, replicas: [replica] }`
#     (reads go to the replica). Runs select-only pgbench (CLIENTS=50 clients) directly against the
#     primary, directly against the replica, through mproxy with the primary only and through mproxy with the replica, interleaved,
#     ROUNDS times; prints median TPS, ratios, and the share of the run's transactions that the
#     replica served (from pg_stat_database.xact_commit on each host, so it shows where reads went).
#     Both servers share this machine's 2 cores: the row measures what routing costs and that reads
#     really move, not the extra capacity a replica on its own host would add.
# (b) Failover. Each round builds a fresh primary + replica pair and an mproxy in front of them
#     (healthCheck.intervalMs HEALTH_MS, breaker failuresToOpen FAILURES, failoverWaitMs 10000),
#     starts a writer — a bash loop of `psql -c "INSERT … RETURNING inet_server_port()"`, a new
#     client connection per write, timestamped on completion — lets it write for a while, then stops
#     the primary (`pg_ctl stop -m immediate`, a crash), promotes the replica (`pg_ctl promote -w`,
#     at once: the best case for an orchestrator), and measures the time from the stop to the first
#     write that succeeded on the promoted host, and from the promote command to that write.
#     Prints medians over FAILOVERS rounds (and the writes that failed during the switch). The
#     resolution is one write cycle (a psql start, SCRAM login and INSERT: tens of ms on an idle
#     machine, 150-400 ms on this busy one; the log says how many writes the 3 s before the stop saw).
#
# Usage: bench/replicas.sh [parts...]     parts: select failover (default both)
# Env:   DURATION=20 ROUNDS=3 SCALE=10 POOL=20 CLIENTS=50 FAILOVERS=$ROUNDS HEALTH_MS=1000 FAILURES=3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages postgresql-15 postgresql-client-15

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
POOL=${POOL:-20}
CLIENTS=${CLIENTS:-50}
FAILOVERS=${FAILOVERS:-$ROUNDS}
HEALTH_MS=${HEALTH_MS:-1000}
FAILURES=${FAILURES:-3}
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(select failover)

bin=$(pg_bindir)
mproxy_dll="$root/src/Edge/bin/Release/net10.0/mproxy.dll"
work=$(mktemp -d /tmp/mproxy-replicas.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" -eq 0 ] && chown postgres "$work"
pids=()     # edges and writers we started
clusters=() # data directories we started
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "${clusters[@]}"; do as_postgres "$bin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export PGPASSWORD=bench PGCONNECT_TIMEOUT=15

now() { date +%s.%N; }

# new_primary DIR PORT: initdb, start, role and database `bench`.
new_primary() {
  local dir=$1 port=$2
  mkdir -p "$dir"; [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 --no-sync >/dev/null
  cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 128MB
wal_level = replica
max_wal_senders = 10
hot_standby = on
CONF
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  clusters+=("$dir/data")
  as_postgres "$bin/psql" -h "$dir" -p "$port" -U postgres -q \
    -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE bench OWNER bench"
}

# new_replica PRIMARY_DIR PRIMARY_PORT DIR PORT: pg_basebackup over the primary's socket, start.
new_replica() {
  local pdir=$1 pport=$2 dir=$3 port=$4
  mkdir -p "$dir"; [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  as_postgres "$bin/pg_basebackup" -h "$pdir" -p "$pport" -U postgres -D "$dir/data" -R -c fast -X stream
  cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$dir'
CONF
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  clusters+=("$dir/data")
}

# start_edge CONFIG PORT PRIMARY_PORT [REPLICA_PORT]: mproxy in front of the primary (and replica).
start_edge() {
  local config=$1 port=$2 pport=$3 rport=${4:-}
  cat > "$config" <<YAML
listen:
  postgres: 127.0.0.1:$port
users:
  - { name: bench, password: bench }
pool:
  mode: transaction
  size: $POOL
databases:
  - name: bench
    primary: 127.0.0.1:$pport
    serverUser: bench
    serverPassword: bench
YAML
  if [ -n "$rport" ]; then
    cat >> "$config" <<YAML
    backends:
      primary: 127.0.0.1:$pport
      replicas: [127.0.0.1:$rport]
      monitor: { user: bench, password: bench, database: bench }
      healthCheck: { intervalMs: $HEALTH_MS }
      breaker: { failuresToOpen: $FAILURES }
      failoverWaitMs: 10000
YAML
  fi
  setsid dotnet "$mproxy_dll" --config "$config" --log-level Warning > "${config%.yaml}.log" 2>&1 &
  pids+=($!)
  wait_ports "$port"
}

dotnet build "$root/src/Edge/MProxy.Edge.csproj" -c Release -v quiet -nologo >/dev/null
median() { local prec=$1; shift; python3 -c "import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.${prec}f}')" "$@"; }
commits() { as_postgres "$bin/psql" -h "$1" -p "$2" -U postgres -d bench -Atq -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'"; }

select_table=""
if [[ " ${parts[*]} " == *" select "* ]]; then
  read -r p_port r_port solo_port split_port < <(free_ports 4)
  echo "==> (a) primary on $p_port, replica on $r_port; mproxy primary-only on $solo_port, with replica on $split_port (pool $POOL, $CLIENTS clients, ${DURATION}s x $ROUNDS rounds)" >&2
  new_primary "$work/p" "$p_port"
  pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$p_port" -U bench bench >/dev/null 2>&1
  new_replica "$work/p" "$p_port" "$work/r" "$r_port"
  # The replica has replayed the tables before we measure.
  for _ in $(seq 1 100); do
    [ "$(as_postgres "$bin/psql" -h "$work/r" -p "$r_port" -U postgres -d bench -Atq -c "SELECT count(*) FROM pgbench_branches" 2>/dev/null || true)" = "$SCALE" ] && break
    sleep 0.2
  done
  start_edge "$work/solo.yaml" "$solo_port" "$p_port"
  start_edge "$work/split.yaml" "$split_port" "$p_port" "$r_port"
  sleep $(( (HEALTH_MS * 2 + 999) / 1000 ))   # let the monitor probe both hosts

  run_select() { # port -> "tps failed replica_share"
    local port=$1 out tps failed p0 r0 p1 r1
    p0=$(commits "$work/p" "$p_port"); r0=$(commits "$work/r" "$r_port")
    out=$(pgbench -n -S -M simple -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$port" -U bench bench 2>&1) || true
    p1=$(commits "$work/p" "$p_port"); r1=$(commits "$work/r" "$r_port")
    tps=$(grep -oP 'tps = \K[0-9.]+' <<<"$out" | head -n1 || true)
    failed=$(grep -oP 'number of failed transactions: \K[0-9]+' <<<"$out" | head -n1 || true)
    if [ -z "$tps" ]; then echo "pgbench failed on port $port:" >&2; echo "$out" | tail -5 >&2; tps=0; fi
    echo "$tps ${failed:-?} $(python3 -c "d=($r1-$r0)+($p1-$p0); print(f'{($r1-$r0)/d:.2f}' if d>0 else 'n/a')")"
  }
  d=(); dr=(); s=(); x=(); xs=(); sf=0; xf=0
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r t _ _ < <(run_select "$p_port"); d+=("$t")
    read -r t _ _ < <(run_select "$r_port"); dr+=("$t")
    read -r t f _ < <(run_select "$solo_port"); s+=("$t"); [ "$f" = "?" ] || sf=$((sf + f))
    read -r t f sh < <(run_select "$split_port"); x+=("$t"); xs+=("$sh"); [ "$f" = "?" ] || xf=$((xf + f))
    echo "    round $r: direct ${d[-1]}, direct to the replica ${dr[-1]}, mproxy primary only ${s[-1]}, mproxy + replica ${x[-1]} (replica share $sh)" >&2
  done
  dm=$(median 0 "${d[@]}"); drm=$(median 0 "${dr[@]}"); sm=$(median 0 "${s[@]}"); xm=$(median 0 "${x[@]}")
  share=$(python3 -c 'import sys,statistics; v=[float(a) for a in sys.argv[1:] if a!="n/a"]; print(f"{statistics.median(v):.2f}" if v else "n/a")' "${xs[@]}")
  ratio() { python3 -c "print(f'{$1/$2:.2f}×' if $2 else 'n/a')"; }
  select_table=$(
    printf '| row (select-only, %s clients, pool %s per host) | TPS | vs direct | vs mproxy primary only | share of transactions on the replica | failed tx |\n' "$CLIENTS" "$POOL"
    printf '|---|---:|---:|---:|---:|---:|\n'
    printf '| direct to the primary | %s | 1.00× | | 0.00 | |\n' "$dm"
    printf '| direct to the replica | %s | %s | | 1.00 | |\n' "$drm" "$(ratio "$drm" "$dm")"
    printf '| mproxy, primary only | %s | %s | 1.00× | 0.00 | %s |\n' "$sm" "$(ratio "$sm" "$dm")" "$sf"
    printf '| mproxy, primary + 1 replica (reads split) | %s | %s | %s | %s | %s |\n' "$xm" "$(ratio "$xm" "$dm")" "$(ratio "$xm" "$sm")" "$share" "$xf"
  )
  if [ -s "$work/split.log" ]; then
    echo "==> mproxy (primary + replica) logged $(wc -l < "$work/split.log") lines at Warning or above; the first ones:" >&2
    head -n 8 "$work/split.log" >&2
  fi
  # Free the machine for the failover part.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
  as_postgres "$bin/pg_ctl" -D "$work/r/data" -m fast stop >/dev/null 2>&1 || true
  as_postgres "$bin/pg_ctl" -D "$work/p/data" -m fast stop >/dev/null 2>&1 || true
fi

failover_table=""
if [[ " ${parts[*]} " == *" failover "* ]]; then
  stop_to=(); promote_to=(); promote_took=(); errors_total=0; lost=0
  for ((r = 1; r <= FAILOVERS; r++)); do
    read -r p_port r_port e_port < <(free_ports 3)
    dir="$work/f$r"
    echo "==> (b) failover round $r: primary on $p_port, replica on $r_port, mproxy on $e_port" >&2
    new_primary "$dir/p" "$p_port"
    psql -h 127.0.0.1 -p "$p_port" -U bench -d bench -q -c "CREATE TABLE failover_probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
    new_replica "$dir/p" "$p_port" "$dir/r" "$r_port"
    start_edge "$dir/edge.yaml" "$e_port" "$p_port" "$r_port"
    sleep $(( (HEALTH_MS * 2 + 999) / 1000 ))

    # The writer: one psql (one client connection) per write; "completion_time port" or "completion_time ERR".
    (
      while true; do
        if out=$(psql -h 127.0.0.1 -p "$e_port" -U bench -d bench -Atq -v ON_ERROR_STOP=1 \
                   -c "INSERT INTO failover_probe DEFAULT VALUES RETURNING inet_server_port()" 2>>"$dir/writer.err"); then
          echo "$(now) $out"
        else
          echo "$(now) ERR"
        fi
      done
    ) > "$dir/writes.log" &
    writer=$!
    sleep 3
    before=$(grep -c " $p_port\$" "$dir/writes.log" || true)
    t_stop=$(now)
    as_postgres "$bin/pg_ctl" -D "$dir/p/data" -m immediate stop >/dev/null 2>&1 || true
    t_promote=$(now)
    as_postgres "$bin/pg_ctl" -D "$dir/r/data" -w -t 60 promote >/dev/null
    t_promoted=$(now)
    # Wait for the first write on the promoted host (at most 60 s).
    for _ in $(seq 1 600); do grep -q " $r_port\$" "$dir/writes.log" && break; sleep 0.1; done
    sleep 1
    kill "$writer" 2>/dev/null || true; wait "$writer" 2>/dev/null || true
    read -r a b c errs < <(python3 - "$dir/writes.log" "$r_port" "$t_stop" "$t_promote" "$t_promoted" <<'PY'
import sys
log, rport, t_stop, t_prom, t_promoted = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
first, errs = None, 0
for line in open(log):
    p = line.split()
    if len(p) < 2:
        continue
    t = float(p[0])
    if t >= t_stop and first is None:
        if p[1] == "ERR":
            errs += 1
        elif p[1] == rport:
            first = t
if first is None:
    print("n/a n/a", f"{t_promoted - t_prom:.3f}", errs)
else:
    print(f"{first - t_stop:.3f} {first - t_prom:.3f} {t_promoted - t_prom:.3f} {errs}")
PY
    )
    echo "    $before writes before the stop; stop -> first write on the promoted host ${a}s, promote -> that write ${b}s (pg_ctl promote took ${c}s), $errs failed writes in between" >&2
    if [ "$a" = "n/a" ]; then lost=$((lost + 1)); tail -3 "$dir/writer.err" >&2 || true; else stop_to+=("$a"); promote_to+=("$b"); fi
    promote_took+=("$c"); errors_total=$((errors_total + errs))
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pids=()
    as_postgres "$bin/pg_ctl" -D "$dir/r/data" -m immediate stop >/dev/null 2>&1 || true
  done
  med() { if [ $# -gt 0 ]; then median 2 "$@"; else echo n/a; fi; }
  failover_table=$(
    printf '| failover (healthCheck %s ms, failuresToOpen %s), %s rounds | median (s) | min (s) | max (s) |\n' "$HEALTH_MS" "$FAILURES" "$FAILOVERS"
    printf '|---|---:|---:|---:|\n'
    mm() { python3 -c 'import sys; v=[float(a) for a in sys.argv[1:]]; print(f"{min(v):.2f} | {max(v):.2f}" if v else "n/a | n/a")' "$@"; }
    printf '| primary stopped → first write through mproxy on the promoted replica | %s | %s |\n' "$(med "${stop_to[@]}")" "$(mm "${stop_to[@]}")"
    printf '| promote issued → that write | %s | %s |\n' "$(med "${promote_to[@]}")" "$(mm "${promote_to[@]}")"
    printf '| (pg_ctl promote -w itself) | %s | %s |\n' "$(med "${promote_took[@]}")" "$(mm "${promote_took[@]}")"
    printf '\nwrites that failed during the switches: %s in total; rounds without a write on the promoted host within 60 s: %s\n' "$errors_total" "$lost"
  )
fi

echo
[ -z "$select_table" ] || printf '%s\n\n' "$select_table"
[ -z "$failover_table" ] || printf '%s\n' "$failover_table"
