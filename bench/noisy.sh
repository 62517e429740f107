#!/usr/bin/env bash
# Noisy neighbour (issue 4): does a flooding LOW tenant wreck a HIGH tenant's tail latency?
#
# Starts a throwaway PostgreSQL (pgbench tables at SCALE), PgBouncer (transaction mode) and mproxy
# (transaction mode, QoS on), both with one shared pool of POOL server connections (every client
# logs in to the server as `bench`, so the two tenants compete for the same pool, as on a shared
# database). Two tenants, which are users:
#   tenant A (tenant_a, HIGH): point selects (pgbench -S), 8 clients at a fixed rate of RATE tx/s,
#                              per-transaction latency log (-l) -> exact p50/p99; with -R the
#                              logged latency counts from the scheduled start, so queueing shows.
#   tenant B (tenant_b, LOW):  32 clients of `SELECT count(*), sum(abalance) FROM pgbench_accounts`
#                              (a full scan of SCALE x 100k rows; the script prints what one takes
#                              without parallel workers: 270-350 ms at SCALE 10 on this shared
#                              2-core machine while other jobs ran).
# For each target — direct, PgBouncer, mproxy (and, if asked, mproxy without QoS) — it runs A alone
# and A under B's flood, interleaved, ROUNDS times, and prints medians of A's p50/p99 in each phase,
# the ratio p99 flood/alone, and B's TPS (also relative to PgBouncer).
#
# mproxy QoS settings chosen (the `qos:` section written below):
#   - group `interactive` (tenant_a): priority high. Strict priority in the pool's scheduler means
#     A never queues behind B for a server connection.
#   - group `reports` (tenant_b): priority low, maxConcurrent 4 (B_MAX_CONCURRENT), serverSettings
#     max_parallel_workers_per_gather 0, queueTimeoutMs 60000. Directly or through PgBouncer, B's
#     32 scans (20 through the pool) with 2 parallel workers each put dozens of CPU-bound processes
#     on 2 cores, and A's point selects wait for CPU — and, through a shared FIFO pool, for one of
#     the 20 connections, all held by B. Through mproxy, strict priority gives A the next free
#     connection; the cap bounds B to 4 scans at a time and the setting keeps each of them to one
#     process, so at most 4 CPU-bound backends compete with A. Full scans are CPU-bound: once the
#     cores are busy, more scans in flight add queueing, not throughput, so B keeps most of its
#     TPS. Why 4 and not 1: on a dedicated 2-core host 1–2 would do, but this machine is shared
#     and the kernel shares CPU per process, so B with one backend gets a small slice next to other
#     jobs (a 10 s trial here: maxConcurrent 1 -> B at 0.16x its PgBouncer TPS; 4 -> 0.84x, with A's
#     p99 under flood no higher than alone). The long queue timeout is because B's 32 clients
#     queue behind its cap by design; the default pool wait (5 s) would turn that into 53300
#     errors. CoDel ignores waiters of a tenant at its cap, so B is not shed for queueing behind
#     its own cap.
#   - RU budgets set very high (1e6 RU/s) for both: this scenario measures scheduling, caps and
#     group settings, not budgets.
# Target (issue 4): through mproxy, A's p99 under flood <= 2x its p99 alone, and B keeps >= 50% of
# the TPS it gets through PgBouncer.
#
# Usage: bench/noisy.sh [targets...]      targets: direct bouncer mproxy mproxy-noqos
#                                         (default: direct bouncer mproxy)
# Env:   DURATION=20 ROUNDS=3 SCALE=10 POOL=20 RATE=300 A_CLIENTS=8 B_CLIENTS=32 B_MAX_CONCURRENT=4
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages postgresql-15 postgresql-client-15 pgbouncer

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
POOL=${POOL:-20}
RATE=${RATE:-300}
A_CLIENTS=${A_CLIENTS:-8}
B_CLIENTS=${B_CLIENTS:-32}
B_MAX_CONCURRENT=${B_MAX_CONCURRENT:-4}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(direct bouncer mproxy)

bin=$(pg_bindir)
work=$(mktemp -d /tmp/mproxy-noisy.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" -eq 0 ] && chown postgres "$work"
read -r pg_port bouncer_port mproxy_port noqos_port < <(free_ports 4)
pids=()
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_postgres "$bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> PostgreSQL on $pg_port, PgBouncer on $bouncer_port, mproxy on $mproxy_port (pool $POOL, scale $SCALE, ${DURATION}s x $ROUNDS rounds)" >&2
as_postgres "$bin/initdb" -D "$work/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
max_connections = 200
shared_buffers = 256MB
CONF
as_postgres "$bin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w start >/dev/null
as_postgres "$bin/psql" -h "$work" -p "$pg_port" -U postgres -q \
  -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE bench OWNER bench" \
  -c "CREATE ROLE tenant_a LOGIN PASSWORD 'tenant_a'" -c "CREATE ROLE tenant_b LOGIN PASSWORD 'tenant_b'"
PGPASSWORD=bench pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$pg_port" -U bench bench >/dev/null 2>&1
PGPASSWORD=bench psql -h 127.0.0.1 -p "$pg_port" -U bench -d bench -q -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO tenant_a, tenant_b"

echo 'SELECT count(*), sum(abalance) FROM pgbench_accounts;' > "$work/flood.sql"
scan_ms=$(PGPASSWORD=bench psql -h 127.0.0.1 -p "$pg_port" -U bench -d bench -Atq \
  -c "SET max_parallel_workers_per_gather = 0" -c '\timing on' -f "$work/flood.sql" 2>&1 | grep -oP 'Time: \K[0-9.]+' | tail -n1)
echo "==> one full scan without parallel workers: ${scan_ms:-?} ms" >&2

# PgBouncer: transaction pooling; the server user is forced to `bench`, so both tenants share one pool.
pids+=("$(start_bench_pgbouncer "$work" "$pg_port" "$bouncer_port" "$POOL" "user=bench password=bench" \
  $'"tenant_a" "tenant_a"\n"tenant_b" "tenant_b"')")

# mproxy: same pool size, one server user, tenants by user name.
write_mproxy_config() { # file port with-qos
  cat > "$1" <<YAML
listen:
  postgres: 127.0.0.1:$2
users:
  - { name: tenant_a, password: tenant_a }
  - { name: tenant_b, password: tenant_b }
pool:
  mode: transaction
  size: $POOL
databases:
  - name: bench
    primary: 127.0.0.1:$pg_port
    serverUser: bench
    serverPassword: bench
YAML
  [ "$3" = qos ] || return 0
  cat >> "$1" <<YAML
qos:
  tenantFrom: user
  defaultGroup: interactive
  groups:
    - name: interactive
      priority: high
      ruPerSecond: 1000000
      burst: 1000000
    - name: reports
      priority: low
      ruPerSecond: 1000000
      burst: 1000000
      maxConcurrent: $B_MAX_CONCURRENT
      queueTimeoutMs: 60000
      serverSettings: { max_parallel_workers_per_gather: "0" }
  tenants:
    - { name: tenant_a, group: interactive }
    - { name: tenant_b, group: reports }
YAML
}
dotnet build "$root/src/Edge/MProxy.Edge.csproj" -c Release -v quiet -nologo >/dev/null
write_mproxy_config "$work/mproxy.yaml" "$mproxy_port" qos
setsid dotnet "$root/src/Edge/bin/Release/net10.0/mproxy.dll" --config "$work/mproxy.yaml" --log-level Warning > "$work/mproxy.log" 2>&1 &
pids+=($!)
wait_ports=("$bouncer_port" "$mproxy_port")
if [[ " ${targets[*]} " == *" mproxy-noqos "* ]]; then
  write_mproxy_config "$work/mproxy-noqos.yaml" "$noqos_port" none
  setsid dotnet "$root/src/Edge/bin/Release/net10.0/mproxy.dll" --config "$work/mproxy-noqos.yaml" --log-level Warning > "$work/mproxy-noqos.log" 2>&1 &
  pids+=($!)
  wait_ports+=("$noqos_port")
fi
wait_ports "${wait_ports[@]}"

port_of() {
  case $1 in
    direct) echo "$pg_port" ;; bouncer) echo "$bouncer_port" ;; mproxy) echo "$mproxy_port" ;; mproxy-noqos) echo "$noqos_port" ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
  esac
}
label_of() {
  case $1 in direct) echo direct ;; bouncer) echo PgBouncer ;; mproxy) echo "mproxy (QoS)" ;; mproxy-noqos) echo "mproxy (no QoS)" ;; esac
}

# Tenant A: fixed rate, per-transaction log. Prints "p50_ms p99_ms transactions failed".
run_a() { # port tag
  local port=$1 tag=$2 out
  rm -f "$work/$tag".*
  out=$(cd "$work" && PGPASSWORD=tenant_a pgbench -n -S -M simple -c "$A_CLIENTS" -j 2 -R "$RATE" -T "$DURATION" \
    -l --log-prefix="$tag" -h 127.0.0.1 -p "$port" -U tenant_a bench 2>&1) || true
  echo "$out" > "$work/$tag.out"
  local failed
  failed=$(grep -oP 'number of failed transactions: \K[0-9]+' <<<"$out" | head -n1 || true)
  [ -z "$failed" ] && failed=$(grep -c 'aborted' <<<"$out" || true)
  python3 - "$work" "$tag" "$failed" <<'PY'
import glob, os, sys
work, tag, failed = sys.argv[1:]
lat = []
for f in glob.glob(os.path.join(work, tag + ".*")):
    if f.endswith(".out"):
        continue
    with open(f) as fh:
        for line in fh:
            p = line.split()
            if len(p) >= 6 and p[2].isdigit():
                lat.append(int(p[2]) / 1000.0)
lat.sort()
def pct(q):
    if not lat:
        return 0.0
    return lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{pct(0.50):.2f} {pct(0.99):.2f} {len(lat)} {failed or 0}")
PY
}

# Tenant B: the flood, in the background (call without $(...), so that it stays our child); output to FILE.
start_b() { # port file seconds
  PGPASSWORD=tenant_b pgbench -n -f "$work/flood.sql" -M simple -c "$B_CLIENTS" -j 2 -T "$3" \
    -h 127.0.0.1 -p "$1" -U tenant_b bench > "$2" 2>&1 &
}
b_result() { # file -> "tps failed"
  local tps failed
  tps=$(grep -oP 'tps = \K[0-9.]+' "$1" | head -n1 || true)
  failed=$(grep -oP 'number of failed transactions: \K[0-9]+' "$1" | head -n1 || true)
  [ -n "$failed" ] || failed=$(grep -c 'aborted' "$1" || true)
  if [ -z "$tps" ]; then echo "flood pgbench failed:" >&2; tail -5 "$1" >&2; tps=0; fi
  echo "$tps ${failed:-0}"
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f}")' "$@"; }

declare -A a50 a99 f50 f99 btps afail bfail
for ((r = 1; r <= ROUNDS; r++)); do
  for t in "${targets[@]}"; do
    port=$(port_of "$t")
    echo "==> round $r: $t, A alone" >&2
    read -r p50 p99 n fa < <(run_a "$port" "a-alone-$t-$r")
    a50[$t]+=" $p50"; a99[$t]+=" $p99"; afail[$t]=$(( ${afail[$t]:-0} + fa ))
    echo "    A alone: p50 $p50 ms, p99 $p99 ms ($n tx, $fa failed)" >&2
    echo "==> round $r: $t, A under B's flood" >&2
    start_b "$port" "$work/b-$t-$r.out" $((DURATION + 6)); bpid=$!
    sleep 3
    read -r p50 p99 n fa < <(run_a "$port" "a-flood-$t-$r")
    wait "$bpid" || true
    read -r tps fb < <(b_result "$work/b-$t-$r.out")
    f50[$t]+=" $p50"; f99[$t]+=" $p99"; btps[$t]+=" $tps"
    afail[$t]=$(( ${afail[$t]:-0} + fa )); bfail[$t]=$(( ${bfail[$t]:-0} + fb ))
    echo "    A under flood: p50 $p50 ms, p99 $p99 ms ($n tx, $fa failed); B: $tps tps ($fb failed)" >&2
  done
done

bouncer_tps=""
[ -n "${btps[bouncer]:-}" ] && bouncer_tps=$(median ${btps[bouncer]})
printf '\nA: %s clients, %s tx/s point selects (HIGH); B: %s clients of full-table aggregates (LOW); scale %s, pool %s, %ss x %s rounds, medians\n\n' \
  "$A_CLIENTS" "$RATE" "$B_CLIENTS" "$SCALE" "$POOL" "$DURATION" "$ROUNDS"
printf '| target | A p50 alone (ms) | A p99 alone (ms) | A p50 flood (ms) | A p99 flood (ms) | A p99 flood/alone | B TPS | B TPS / PgBouncer | A failed tx | B failed tx |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for t in "${targets[@]}"; do
  m50=$(median ${a50[$t]}); m99=$(median ${a99[$t]}); n50=$(median ${f50[$t]}); n99=$(median ${f99[$t]}); b=$(median ${btps[$t]})
  ratio=$(python3 -c "print(f'{$n99/$m99:.1f}' if $m99 else 'n/a')")
  rb=$(python3 -c "print(f'{$b/$bouncer_tps:.2f}×' if '$bouncer_tps' and float('${bouncer_tps:-0}') else 'n/a')")
  printf '| %s | %s | %s | %s | %s | %s× | %s | %s | %s | %s |\n' "$(label_of "$t")" "$m50" "$m99" "$n50" "$n99" "$ratio" "$b" "$rb" "${afail[$t]:-0}" "${bfail[$t]:-0}"
done
