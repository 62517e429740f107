#!/usr/bin/env bash
# mproxy against a direct connection and PgBouncer, side by side, in one run on this machine.
#
# Starts a throwaway PostgreSQL, PgBouncer (transaction mode) and mproxy (transaction mode), both
# with the same pool size, and runs pgbench through each and directly, interleaved (each round
# starting with the next of them), ROUNDS times;
# prints the median TPS of each and the ratios mproxy/direct and mproxy/PgBouncer.
# Each proxy runs in a session of its own, as a service would: PgBouncer daemonizes, mproxy is
# started with setsid. The kernel's autogroup scheduling (sched_autogroup_enabled, on by default)
# shares CPU between sessions first, so an mproxy left in this script's session would share one
# scheduling group with pgbench's threads while PgBouncer had a group to itself.
#
# Usage: bench/pgbench.sh [rows...]      rows: select50 tpcb50 select250 prepared50 extended50 connect50
# Env:   DURATION=20 ROUNDS=3 POOL=20 SCALE=10 WARMUP=40
#        WARMUP seconds of select-only load (then a quarter of that with 250 clients, and a quarter of
#        TPC-B-like load, whose transaction blocks take paths select-only never does) go through each
#        proxy before the first round, unmeasured:
#        .NET compiles its hot code again with optimizations during the first tens of seconds
#        (tiered compilation), which is start-up cost, not per-query cost. Under this load the JIT
#        thread still took a tenth of the edge's user time 40-60 s after start (and none a minute
#        later), hence 40 s.
#        Before every measured run the database is put back into the same state (reset_bench_database
#        in scripts/lib.sh: TPC-B's small tables vacuumed, its history emptied, a checkpoint), as
#        pgbench does itself when not given -n.
#        RAW=1 also prints every run's TPS (in the order run) under the table, to stderr.
#        CANDIDATE_DLL=path/to/mproxy.dll, CANDIDATE_ENV="NAME=value ..." and/or CANDIDATE_ARGS="--option
#        value ..." add a second mproxy (another build, or the same build with other runtime settings or
#        options, e.g. CANDIDATE_ARGS="--transport sockets"), measured in the same rounds and printed as
#        its own columns: the A/B comparison this noisy box allows.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages postgresql-15 postgresql-client-15 pgbouncer curl

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
POOL=${POOL:-20}
SCALE=${SCALE:-10}
WARMUP=${WARMUP:-40}
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(select50 tpcb50 select250)

bench_workdir mproxy-bench
read -r pg_port bouncer_port mproxy_port candidate_port mproxy_admin candidate_admin < <(free_ports 6)
CANDIDATE_DLL=${CANDIDATE_DLL:-}; CANDIDATE_ENV=${CANDIDATE_ENV:-}; CANDIDATE_ARGS=${CANDIDATE_ARGS:-}
candidate=""; [ -n "$CANDIDATE_DLL$CANDIDATE_ENV$CANDIDATE_ARGS" ] && candidate=1

echo "==> PostgreSQL on $pg_port, PgBouncer on $bouncer_port, mproxy on $mproxy_port (pool $POOL, ${DURATION}s x $ROUNDS rounds)" >&2
start_bench_postgres "$work" "$pg_port" "$SCALE"

# PgBouncer: transaction pooling, same pool size, SCRAM to the server.
bouncer_pid=$(start_bench_pgbouncer "$work" "$pg_port" "$bouncer_port" "$POOL")

dotnet build "$root/src/Edge/MProxy.Edge.csproj" -c Release -v quiet -nologo >/dev/null
setsid dotnet "$root/src/Edge/bin/Release/net10.0/mproxy.dll" --listen "127.0.0.1:$mproxy_port" \
  --primary "postgres://bench:bench@127.0.0.1:$pg_port/bench" --pool-size "$POOL" --pool-mode transaction \
  --admin-listen "127.0.0.1:$mproxy_admin" --log-level Warning > "$work/mproxy.log" 2>&1 &
mproxy_pid=$!
pids+=("$mproxy_pid" "$bouncer_pid")
ports=("$bouncer_port" "$mproxy_port")
if [ -n "$candidate" ]; then
  # shellcheck disable=SC2086 # CANDIDATE_ENV and CANDIDATE_ARGS are lists of words
  setsid env $CANDIDATE_ENV dotnet "${CANDIDATE_DLL:-$root/src/Edge/bin/Release/net10.0/mproxy.dll}" --listen "127.0.0.1:$candidate_port" \
    --primary "postgres://bench:bench@127.0.0.1:$pg_port/bench" --pool-size "$POOL" --pool-mode transaction \
    --admin-listen "127.0.0.1:$candidate_admin" --log-level Warning $CANDIDATE_ARGS > "$work/candidate.log" 2>&1 &
  candidate_pid=$!
  pids+=("$candidate_pid"); ports+=("$candidate_port")
  echo "==> candidate mproxy on $candidate_port: ${CANDIDATE_DLL:-same build} ${CANDIDATE_ENV} ${CANDIDATE_ARGS}" >&2
fi
wait_ports "${ports[@]}"

cpu_ticks() { # pid -> user+system clock ticks so far (0 when no pid)
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

allocated_bytes() { # admin-port -> bytes the edge's runtime allocated so far (its /metrics), or nothing
  [ -n "${1:-}" ] || return 0
  curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null | awk '/^dotnet_gc_heap_total_allocated_bytes_total / { print $2 }'
}

run_pgbench() { # target-port row [proxy-pid] [edge-admin-port] -> "tps failed cpu-us-per-tx allocated-bytes-per-tx"
  local port=$1 row=$2 pid=${3:-} admin=${4:-} args
  case $row in
    select50)   args=(-S -c 50 -j 2 -M simple) ;;
    tpcb50)     args=(-c 50 -j 2 -M simple) ;;
    select250)  args=(-S -c 250 -j 2 -M simple) ;;
    prepared50) args=(-S -c 50 -j 2 -M prepared) ;;
    extended50) args=(-S -c 50 -j 2 -M extended) ;;
    connect50)  args=(-S -C -c 50 -j 2 -M simple) ;;   # a new connection (and login) per transaction
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
  local out before after abefore aafter
  reset_bench_database "$work" "$pg_port"
  before=$(cpu_ticks "$pid"); abefore=$(allocated_bytes "$admin")
  out=$(pgbench -n -T "$DURATION" "${args[@]}" -h 127.0.0.1 -p "$port" -U bench bench 2>&1) || true
  after=$(cpu_ticks "$pid"); aafter=$(allocated_bytes "$admin")
  local tps failed tx us bpt
  tx=$(grep -oP 'number of transactions actually processed: \K[0-9]+' <<<"$out" | head -n1 || true)
  us=$(python3 -c "import os; t=int('${tx:-0}'); print(f'{($after-$before)*1e6/os.sysconf(\"SC_CLK_TCK\")/t:.1f}' if t else 'nan')")
  tps=$(grep -oP 'tps = \K[0-9.]+' <<<"$out" | head -n1 || true)
  failed=$(grep -oP 'number of failed transactions: \K[0-9]+' <<<"$out" | head -n1 || true)
  bpt=$(python3 -c "t=int('${tx:-0}'); a='$abefore'; b='$aafter'; print(f'{(float(b)-float(a))/t:.0f}' if t and a and b else 'nan')")
  if [ -z "$tps" ]; then echo "pgbench failed on port $port ($row):" >&2; echo "$out" | tail -5 >&2; tps=0; fi
  echo "$tps ${failed:-?} $us $bpt"
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.0f}")' "$@"; }
median1() { python3 -c 'import sys,math,statistics; v=[float(x) for x in sys.argv[1:] if not math.isnan(float(x))]; print(f"{statistics.median(v):.1f}" if v else "n/a")' "$@"; }

# Proxy CPU per transaction (user + system time of the proxy process ÷ transactions) is the steadier
# figure on a shared box: TPS moves with whatever else runs, the proxy's own cost per query less so
# (two copies of one build still read 23.6 and 27.4 µs per select-only transaction in one A/A run).
# B/tx is what the edge's runtime allocated per transaction (dotnet_gc_heap_total_allocated_bytes_total
# from its /metrics, which the edge serves on an admin port here). Most of it is the run's client
# connections (about 12 KB each, so a row with fewer transactions per run shows more per transaction).
# The warm-up also waits in the pool (250 clients) for a while, so that the code of waiting leases is
# compiled with optimizations before select250 is measured.
for port in "${ports[@]}"; do
  if [ "$WARMUP" -gt 0 ]; then
    pgbench -n -S -T "$WARMUP" -c 50 -j 2 -h 127.0.0.1 -p "$port" -U bench bench >/dev/null 2>&1 || true
    pgbench -n -S -T $(( (WARMUP + 3) / 4 )) -c 250 -j 2 -h 127.0.0.1 -p "$port" -U bench bench >/dev/null 2>&1 || true
    pgbench -n -T $(( (WARMUP + 3) / 4 )) -c 50 -j 2 -h 127.0.0.1 -p "$port" -U bench bench >/dev/null 2>&1 || true
  fi
done

header='| row | direct TPS | PgBouncer TPS | mproxy TPS | mproxy/direct | mproxy/PgBouncer | per round | mproxy failed tx | PgBouncer CPU µs/tx | mproxy CPU µs/tx | mproxy B/tx |'
rule='|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|'
[ -n "$candidate" ] && header+=' candidate TPS | candidate/PgBouncer | candidate CPU µs/tx | candidate B/tx |' && rule+='---:|---:|---:|---:|'
printf '\n%s\n%s\n' "$header" "$rule"
for row in "${rows[@]}"; do
  d=(); b=(); m=(); bc=(); mc=(); ma=(); k=(); kc=(); ka=(); mf=0
  targets=(direct bouncer mproxy); [ -n "$candidate" ] && targets+=(candidate)
  for ((r = 1; r <= ROUNDS; r++)); do
    # Each round starts with the next target: whatever PostgreSQL does in the background after a
    # round (checkpoints, autovacuum after TPC-B's updates) does not always fall on the same one.
    for ((i = 0; i < ${#targets[@]}; i++)); do
      case ${targets[(i + r - 1) % ${#targets[@]}]} in
        direct) read -r t _ _ _ < <(run_pgbench "$pg_port" "$row"); d+=("$t") ;;
        bouncer) read -r t _ c _ < <(run_pgbench "$bouncer_port" "$row" "$bouncer_pid"); b+=("$t"); bc+=("$c") ;;
        mproxy) read -r t f c a < <(run_pgbench "$mproxy_port" "$row" "$mproxy_pid" "$mproxy_admin"); m+=("$t"); mc+=("$c"); ma+=("$a"); [ "$f" = "?" ] || mf=$((mf + f)) ;;
        candidate) read -r t _ c a < <(run_pgbench "$candidate_port" "$row" "$candidate_pid" "$candidate_admin"); k+=("$t"); kc+=("$c"); ka+=("$a") ;;
      esac
    done
  done
  if [ -n "${RAW:-}" ]; then
    printf '%s TPS per round: direct %s | PgBouncer %s | mproxy %s%s\n' "$row" "${d[*]}" "${b[*]}" "${m[*]}" "${candidate:+ | candidate ${k[*]}}" >&2
  fi
  dm=$(median "${d[@]}"); bm=$(median "${b[@]}"); mm=$(median "${m[@]}"); bcm=$(median1 "${bc[@]}"); mcm=$(median1 "${mc[@]}")
  rd=$(python3 -c "print(f'{$mm/$dm:.2f}' if $dm else 'n/a')"); rb=$(python3 -c "print(f'{$mm/$bm:.2f}' if $bm else 'n/a')")
  mam=$(median1 "${ma[@]}")
  # Paired within each round (run minutes apart, not a whole row apart): the median of the rounds'
  # own mproxy/PgBouncer ratios, their range, and in how many rounds mproxy was ahead.
  pr=$(python3 -c "import statistics as s; r=sorted(m/b for m, b in zip([${m[*]/%/,}], [${b[*]/%/,}]) if b); print(f'{s.median(r):.2f}× ({r[0]:.2f}–{r[-1]:.2f}, ahead in {sum(x > 1 for x in r)} of {len(r)})' if r else 'n/a')")
  line=$(printf '| %s | %s | %s | %s | %s× | %s× | %s | %s | %s | %s | %s |' "$row" "$dm" "$bm" "$mm" "$rd" "$rb" "$pr" "$mf" "$bcm" "$mcm" "${mam%.0}")
  if [ -n "$candidate" ]; then
    km=$(median "${k[@]}"); kcm=$(median1 "${kc[@]}"); kam=$(median1 "${ka[@]}"); kb=$(python3 -c "print(f'{$km/$bm:.2f}' if $bm else 'n/a')")
    line+=$(printf ' %s | %s× | %s | %s |' "$km" "$kb" "$kcm" "${kam%.0}")
  fi
  printf '%s\n' "$line"
done
