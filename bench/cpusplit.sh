#!/usr/bin/env bash
# Where the box's CPU goes per transaction, through PgBouncer and through mproxy, side by side.
#
# On this project's 2-core box PostgreSQL, pgbench and the proxy share the cores, so a proxy's TPS
# follows the CPU the whole box spends per transaction — its own, and what its way of talking costs
# the others (a client woken more often burns more CPU too). For each proxy the script reports, per
# transaction and as medians of ROUNDS alternating pgbench runs (each after the database is reset):
# the proxy's user and system CPU (from /proc), pgbench's CPU and voluntary context switches (its
# sleeps; from GNU time), PostgreSQL's CPU (every postgres process), the whole box's busy and idle
# time (from /proc/stat), and TPS.
#
# Usage: bench/cpusplit.sh [pgbench args]     default: TPC-B-like; e.g. bench/cpusplit.sh -S
# Env:   ROUNDS=3 DURATION=10 CLIENTS=50 POOL=20 SCALE=10 WARMUP=30 MPROXY_ARGS="--epoll-loops 1 …"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages postgresql-15 postgresql-client-15 pgbouncer time

ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; CLIENTS=${CLIENTS:-50}; POOL=${POOL:-20}; SCALE=${SCALE:-10}
WARMUP=${WARMUP:-30}; MPROXY_ARGS=${MPROXY_ARGS:-}
pgbench_args=("$@")

bench_workdir mproxy-cpusplit
read -r pg_port bouncer_port mproxy_port < <(free_ports 3)
start_bench_postgres "$work" "$pg_port" "$SCALE"
bouncer_pid=$(start_bench_pgbouncer "$work" "$pg_port" "$bouncer_port" "$POOL")
dotnet build "$root/src/Edge/MProxy.Edge.csproj" -c Release -v quiet -nologo >/dev/null
# shellcheck disable=SC2086 # MPROXY_ARGS is a list of words
setsid dotnet "$root/src/Edge/bin/Release/net10.0/mproxy.dll" --listen "127.0.0.1:$mproxy_port" \
  --primary "postgres://bench:bench@127.0.0.1:$pg_port/bench" --pool-size "$POOL" --pool-mode transaction \
  --log-level Warning $MPROXY_ARGS > "$work/mproxy.log" 2>&1 &
mproxy_pid=$!
pids+=("$mproxy_pid" "$bouncer_pid")
wait_ports "$bouncer_port" "$mproxy_port"

run_pgbench() { # port seconds [extra args]
  local port=$1 seconds=$2; shift 2
  pgbench -n -T "$seconds" -c "$CLIENTS" -j 2 "$@" -h 127.0.0.1 -p "$port" -U bench bench
}
echo "==> warming both proxies up (${WARMUP}s select-only, then the measured load for a third of that)" >&2
for port in "$bouncer_port" "$mproxy_port"; do
  run_pgbench "$port" "$WARMUP" -S >/dev/null 2>&1
  run_pgbench "$port" $((WARMUP / 3)) "${pgbench_args[@]}" >/dev/null 2>&1
done

ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }                        # user, system
postgres_ticks() { local p; for p in $(pgrep -x postgres); do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }
box_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 }' /proc/stat; }  # busy (user, nice, system, irq, softirq), idle

results="$work/results"
for round in $(seq 1 "$ROUNDS"); do
  for name in PgBouncer mproxy; do
    if [ "$name" = PgBouncer ]; then pid=$bouncer_pid; port=$bouncer_port; else pid=$mproxy_pid; port=$mproxy_port; fi
    reset_bench_database "$work" "$pg_port"
    read -r u1 s1 < <(ticks "$pid"); read -r busy1 idle1 < <(box_ticks); pg1=$(postgres_ticks)
    /usr/bin/time -o "$work/pgbench.time" -f "%U %S %w" pgbench -n -T "$DURATION" -c "$CLIENTS" -j 2 "${pgbench_args[@]}" \
      -h 127.0.0.1 -p "$port" -U bench bench > "$work/pgbench.out" 2>&1
    read -r u2 s2 < <(ticks "$pid"); read -r busy2 idle2 < <(box_ticks); pg2=$(postgres_ticks)
    read -r bu bs bw < "$work/pgbench.time"
    tx=$(grep -oP "actually processed: \K[0-9]+" "$work/pgbench.out")
    tps=$(grep -oP "tps = \K[0-9.]+" "$work/pgbench.out")
    echo "$name $round $tx $tps $((u2 - u1)) $((s2 - s1)) $bu $bs $bw $((pg2 - pg1)) $((busy2 - busy1)) $((idle2 - idle1))" >> "$results"
    echo "==> round $round $name: $tps TPS" >&2
  done
done

python3 - "$results" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
path, hz = sys.argv[1], float(sys.argv[2])
rows = {}
for line in open(path):
    name, _, tx, tps, pu, ps, bu, bs, bw, pg, busy, idle = line.split()
    tx = int(tx)
    per = lambda ticks: float(ticks) * 1e6 / hz / tx
    rows.setdefault(name, []).append({
        "proxy user": per(pu), "proxy system": per(ps),
        "pgbench CPU": (float(bu) + float(bs)) * 1e6 / tx, "pgbench sleeps": int(bw) / tx,
        "postgres CPU": per(pg), "box busy": per(busy), "box idle": per(idle), "TPS": float(tps)})
columns = ["proxy user", "proxy system", "pgbench CPU", "pgbench sleeps", "postgres CPU", "box busy", "box idle", "TPS"]
print("| per transaction (medians) | " + " | ".join(c + (" /tx" if c == "pgbench sleeps" else "" if c == "TPS" else " µs") for c in columns) + " |")
print("|---|" + "---:|" * len(columns))
for name in ("PgBouncer", "mproxy"):
    med = {c: statistics.median(r[c] for r in rows[name]) for c in columns}
    print(f"| {name} | " + " | ".join(f"{med[c]:.2f}" if c == "pgbench sleeps" else f"{med[c]:.0f}" if c == "TPS" else f"{med[c]:.1f}" for c in columns) + " |")
PY
