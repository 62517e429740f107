#!/usr/bin/env bash
# Where mproxy's CPU per transaction stands between PgBouncer and the floor of its own platform.
#
# Starts a throwaway PostgreSQL, PgBouncer (transaction mode), mproxy (transaction mode, same pool)
# on each of its transports (the runtime's sockets, and --transport epoll), and bench/RelayFloor
# twice — the least a .NET proxy can do: copy bytes between a client and its own server connection,
# nothing else; once on the edge's socket stack and runtime settings (relay-floor), once on its own
# single-threaded epoll loop calling recv/send directly (relay-floor-epoll, PgBouncer's shape in
# C#) — and runs short pgbench rounds through each, interleaved, after a warm-up long enough for
# .NET's tiered compilation to finish. Prints, per proxy, the median user and system CPU per
# transaction (from /proc/PID/stat), voluntary + involuntary context switches per transaction and TPS.
#
# The relays have no pool: their server sees every client, so their TPS is not comparable (their CPU
# per transaction is). What they show: how much of mproxy's cost the runtime's socket path takes before
# any proxy logic runs, and how much of that a transport of its own could save.
#
# Usage: bench/floor.sh [pgbench args]      default: -S (select-only)
# Env:   ROUNDS=8 SECONDS_PER_ROUND=8 CLIENTS=50 POOL=20 SCALE=10 WARMUP=40
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages postgresql-15 postgresql-client-15 pgbouncer

pgbench_args=("$@")
[ ${#pgbench_args[@]} -gt 0 ] || pgbench_args=(-S)
ROUNDS=${ROUNDS:-8}; SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-8}; CLIENTS=${CLIENTS:-50}; POOL=${POOL:-20}
SCALE=${SCALE:-10}; WARMUP=${WARMUP:-40}

bench_workdir mproxy-floor
read -r pg_port bouncer_port mproxy_port mproxy_epoll_port relay_port epoll_port < <(free_ports 6)

start_bench_postgres "$work" "$pg_port" "$SCALE"
pids+=("$(start_bench_pgbouncer "$work" "$pg_port" "$bouncer_port" "$POOL")")

dotnet build "$root/src/Edge/MProxy.Edge.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$root/bench/RelayFloor/MProxy.Bench.RelayFloor.csproj" -c Release -v quiet -nologo >/dev/null
setsid dotnet "$root/src/Edge/bin/Release/net10.0/mproxy.dll" --listen "127.0.0.1:$mproxy_port" \
  --primary "postgres://bench:bench@127.0.0.1:$pg_port/bench" --pool-size "$POOL" --pool-mode transaction \
  --transport sockets --log-level Warning > "$work/mproxy.log" 2>&1 &
pids+=("$!")
setsid dotnet "$root/src/Edge/bin/Release/net10.0/mproxy.dll" --listen "127.0.0.1:$mproxy_epoll_port" \
  --primary "postgres://bench:bench@127.0.0.1:$pg_port/bench" --pool-size "$POOL" --pool-mode transaction \
  --transport epoll --log-level Warning > "$work/mproxy-epoll.log" 2>&1 &
pids+=("$!")
setsid dotnet "$root/bench/RelayFloor/bin/Release/net10.0/relay-floor.dll" "$relay_port" 127.0.0.1 "$pg_port" > "$work/relay.log" 2>&1 &
pids+=("$!")
setsid dotnet "$root/bench/RelayFloor/bin/Release/net10.0/relay-floor.dll" --epoll "$epoll_port" 127.0.0.1 "$pg_port" > "$work/relay-epoll.log" 2>&1 &
pids+=("$!")
names=(PgBouncer "mproxy --transport sockets" "mproxy --transport epoll" relay-floor relay-floor-epoll)
ports=("$bouncer_port" "$mproxy_port" "$mproxy_epoll_port" "$relay_port" "$epoll_port")
wait_ports "${ports[@]}"
echo "==> warm-up ${WARMUP}s each; then $ROUNDS interleaved rounds of ${SECONDS_PER_ROUND}s, $CLIENTS clients, pool $POOL, pgbench ${pgbench_args[*]}" >&2
for port in "${ports[@]}"; do
  pgbench -n -T "$WARMUP" -c "$CLIENTS" -j 2 "${pgbench_args[@]}" -h 127.0.0.1 -p "$port" -U bench bench >/dev/null 2>&1 || true
done

clk=$(getconf CLK_TCK)
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }'; }
round() { # pid port -> "user_us_per_tx sys_us_per_tx switches_per_tx tps"
  local u1 s1 u2 s2 c1 c2 out n tps
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$1/stat"); c1=$(switches "$1")
  out=$(pgbench -n -T "$SECONDS_PER_ROUND" -c "$CLIENTS" -j 2 "${pgbench_args[@]}" -h 127.0.0.1 -p "$2" -U bench bench 2>&1)
  read -r u2 s2 < <(awk '{print $14, $15}' "/proc/$1/stat"); c2=$(switches "$1")
  n=$(grep -oP "actually processed: \K[0-9]+" <<<"$out"); tps=$(grep -oP "tps = \K[0-9.]+" <<<"$out")
  python3 -c "print(f'{($u2-$u1)*1e6/$clk/$n:.2f} {($s2-$s1)*1e6/$clk/$n:.2f} {($c2-$c1)/$n:.3f} {float($tps):.1f}')"
}
declare -A rows
for ((r = 0; r < ROUNDS; r++)); do
  for ((k = 0; k < ${#ports[@]}; k++)); do
    i=$(( (k + r) % ${#ports[@]} ))   # rotate which proxy goes first
    rows[$i]+="$(round "${pids[$i]}" "${ports[$i]}")"$'\n'
  done
done
python3 - "${names[@]}" "${rows[0]}" "${rows[1]}" "${rows[2]}" "${rows[3]}" "${rows[4]}" <<'PY'
import statistics, sys
n = (len(sys.argv) - 1) // 2
names, texts = sys.argv[1:1 + n], sys.argv[1 + n:]
med = []
for t in texts:
    rs = [list(map(float, l.split())) for l in t.strip().split("\n")]
    med.append([statistics.median(r[i] for r in rs) for i in range(4)])
base = med[0][0] + med[0][1]
print("| proxy | user µs/tx | system µs/tx | CPU µs/tx | CPU ÷ PgBouncer | switches/tx | TPS |")
print("|---|---:|---:|---:|---:|---:|---:|")
for n, m in zip(names, med):
    print(f"| {n} | {m[0]:.1f} | {m[1]:.1f} | {m[0]+m[1]:.1f} | {(m[0]+m[1])/base:.2f} | {m[2]:.2f} | {m[3]:.0f} |")
PY
