#!/usr/bin/env bash
# Two mproxy builds (or runtime settings) side by side: the steadier A/B for a small change.
#
# Starts a throwaway PostgreSQL and both builds in front of it (transaction mode, same pool), warms
# both up, then runs short pgbench rounds through each, alternating which goes first, and prints the
# median CPU per transaction (user + system of each process, from /proc), user time per transaction
# and TPS of each, with the ratios B/A. Both processes are warm and measured under the same load in
# every round, so a change of a few percent shows; run it once with A = B first (an A/A run) to see
# the harness's own bias and noise on the day. The last line gives each round's own B/A range and in
# how many rounds B was lower (CPU) or higher (TPS): a difference that is not in most rounds is noise.
#
# Usage: bench/ab.sh A_DLL B_DLL [pgbench args]     e.g. bench/ab.sh /tmp/old/mproxy.dll src/Edge/bin/Release/net10.0/mproxy.dll -S
# Env:   ROUNDS=10 SECONDS_PER_ROUND=5 CLIENTS=50 POOL=20 SCALE=10 WARMUP=40 A_ENV="NAME=value …" B_ENV="NAME=value …" A_ARGS="--option value …" B_ARGS="…"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages postgresql-15 postgresql-client-15

[ $# -ge 2 ] || { echo "usage: bench/ab.sh A_DLL B_DLL [pgbench args]" >&2; exit 2; }
a_dll=$1; b_dll=$2; shift 2
pgbench_args=("$@")
ROUNDS=${ROUNDS:-10}; SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-5}; CLIENTS=${CLIENTS:-50}; POOL=${POOL:-20}
SCALE=${SCALE:-10}; WARMUP=${WARMUP:-40}; A_ENV=${A_ENV:-}; B_ENV=${B_ENV:-}; A_ARGS=${A_ARGS:-}; B_ARGS=${B_ARGS:-}

bench_workdir mproxy-ab
read -r pg_port a_port b_port < <(free_ports 3)

start_bench_postgres "$work" "$pg_port" "$SCALE"

start() { # env dll port log args
  # shellcheck disable=SC2086 # the env settings and extra arguments are lists of words
  setsid env $1 dotnet "$2" --listen "127.0.0.1:$3" --primary "postgres://bench:bench@127.0.0.1:$pg_port/bench" \
    --pool-size "$POOL" --pool-mode transaction --log-level Warning $5 > "$4" 2>&1 &
  pids+=("$!")
}
start "$A_ENV" "$a_dll" "$a_port" "$work/a.log" "$A_ARGS"; a_pid=${pids[-1]}
start "$B_ENV" "$b_dll" "$b_port" "$work/b.log" "$B_ARGS"; b_pid=${pids[-1]}
for port in "$a_port" "$b_port"; do
  wait_ports "$port"
  pgbench -n -T "$WARMUP" -c "$CLIENTS" -j 2 "${pgbench_args[@]}" -h 127.0.0.1 -p "$port" -U bench bench >/dev/null 2>&1
done
echo "==> A: $a_dll ${A_ENV} ${A_ARGS} (port $a_port)   B: $b_dll ${B_ENV} ${B_ARGS} (port $b_port)   ${ROUNDS} rounds of ${SECONDS_PER_ROUND}s, ${CLIENTS} clients, pool $POOL" >&2

clk=$(getconf CLK_TCK)
round() { # pid port -> "cpu_us_per_tx user_us_per_tx tps"
  local u1 s1 u2 s2 out n tps
  reset_bench_database "$work" "$pg_port"
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$1/stat")
  out=$(pgbench -n -T "$SECONDS_PER_ROUND" -c "$CLIENTS" -j 2 "${pgbench_args[@]}" -h 127.0.0.1 -p "$2" -U bench bench 2>&1)
  read -r u2 s2 < <(awk '{print $14, $15}' "/proc/$1/stat")
  n=$(grep -oP "actually processed: \K[0-9]+" <<<"$out"); tps=$(grep -oP "tps = \K[0-9.]+" <<<"$out")
  python3 -c "print(f'{(($u2-$u1)+($s2-$s1))*1e6/$clk/$n:.2f} {($u2-$u1)*1e6/$clk/$n:.2f} {float($tps):.1f}')"
}
a_rows=(); b_rows=()
for ((i = 0; i < ROUNDS; i++)); do
  if ((i % 2 == 0)); then a_rows+=("$(round "$a_pid" "$a_port")"); b_rows+=("$(round "$b_pid" "$b_port")")
  else b_rows+=("$(round "$b_pid" "$b_port")"); a_rows+=("$(round "$a_pid" "$a_port")"); fi
done
python3 - "$(printf '%s\n' "${a_rows[@]}")" "$(printf '%s\n' "${b_rows[@]}")" <<'PY'
import statistics, sys
def medians(text):
    rows = [list(map(float, line.split())) for line in text.strip().split("\n")]
    return [statistics.median(r[i] for r in rows) for i in range(3)]
a, b = medians(sys.argv[1]), medians(sys.argv[2])
print("| build | CPU µs/tx | user µs/tx | TPS |")
print("|---|---:|---:|---:|")
print(f"| A | {a[0]:.1f} | {a[1]:.1f} | {a[2]:.0f} |")
print(f"| B | {b[0]:.1f} | {b[1]:.1f} | {b[2]:.0f} |")
print(f"| B/A | {b[0]/a[0]:.3f} | {b[1]/a[1]:.3f} | {b[2]/a[2]:.3f} |")
# Each round measured A and B back to back: the rounds' own ratios show whether a difference is
# steadier than the day's drift (B below A in 8 of 8 rounds happens by chance once in 128 A/A runs).
pairs = [(list(map(float, x.split())), list(map(float, y.split()))) for x, y in zip(sys.argv[1].strip().split("\n"), sys.argv[2].strip().split("\n"))]
cpu = sorted(y[0] / x[0] for x, y in pairs); tps = sorted(y[2] / x[2] for x, y in pairs)
print(f"per round B/A: CPU {cpu[0]:.3f}..{cpu[-1]:.3f} (B lower in {sum(r < 1 for r in cpu)} of {len(cpu)}), "
      f"TPS {tps[0]:.3f}..{tps[-1]:.3f} (B higher in {sum(r > 1 for r in tps)} of {len(tps)})")
PY
