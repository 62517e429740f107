#!/usr/bin/env bash
# mproxy against a direct connection to MariaDB, side by side, in one run on this machine.
#
# Starts a throwaway MariaDB and mproxy (MySQL listener, transaction pooling), loads the sysbench
# OLTP tables, then runs sysbench oltp_read_only and oltp_read_write (MySQL driver, prepared
# statements, THREADS threads) directly, through mproxy, through socat (a plain TCP relay that
# parses nothing: the cost of the extra hop alone) and through bench/RelayFloor (the same plain
# relay on the edge's own .NET socket stack and runtime settings: the floor under any .NET proxy
# here) and through RelayFloor --epoll (the same relay on a single-threaded epoll loop of its own),
# interleaved, ROUNDS times; prints the median TPS and p95 latency of each and the ratios
# mproxy/direct, mproxy/socat and of both relays to direct.
#
# Usage: bench/sysbench.sh [tests...]      tests: oltp_read_only oltp_read_write (default both)
# Env:   DURATION=20 ROUNDS=3 THREADS=32 POOL=32 TABLES=4 TABLE_SIZE=10000
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages mariadb-server mariadb-client sysbench socat

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-32}
POOL=${POOL:-32}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-10000}
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(oltp_read_only oltp_read_write)

work=$(mktemp -d /tmp/mproxy-sysbench.XXXXXX)
chmod 755 "$work"
read -r db_port mysql_port pg_port relay_port floor_port epoll_port < <(free_ports 6)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

user_args=()
[ "$(id -u)" -eq 0 ] && { chown mysql "$work"; user_args=(--user=mysql); }

echo "==> MariaDB on $db_port, mproxy on $mysql_port, socat on $relay_port (pool $POOL, $THREADS threads, ${DURATION}s x $ROUNDS rounds)" >&2
mariadb-install-db --no-defaults --datadir="$work/data" --auth-root-authentication-method=socket --skip-test-db "${user_args[@]}" >/dev/null
mariadbd --no-defaults --datadir="$work/data" --port="$db_port" --bind-address=127.0.0.1 --socket="$work/mysqld.sock" \
  --pid-file="$work/mysqld.pid" --log-error="$work/error.log" --max-connections=500 --skip-name-resolve \
  --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 --character-set-server=utf8mb4 "${user_args[@]}" &
pids+=($!)
mariadb-admin --no-defaults --socket="$work/mysqld.sock" -uroot --wait=60 --connect-timeout=2 ping >/dev/null
mariadb --no-defaults --socket="$work/mysqld.sock" -uroot <<SQL
CREATE USER 'bench'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('bench');
CREATE DATABASE bench;
GRANT ALL ON bench.* TO 'bench'@'%';
SQL

sb_common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=bench --mysql-password=bench --mysql-db=bench
  --mysql-ssl=off --tables="$TABLES" --table-size="$TABLE_SIZE")
sysbench oltp_read_write "${sb_common[@]}" --mysql-port="$db_port" --threads=4 prepare >/dev/null

cat > "$work/mproxy.yaml" <<YAML
listen:
  postgres: 127.0.0.1:$pg_port
  mysql: 127.0.0.1:$mysql_port
auth:
  method: md5
users:
  - name: bench
    password: bench
pool:
  mode: transaction
  size: $POOL
  waitTimeoutMs: 30000
databases:
  - name: bench
    protocol: mysql
    primary: 127.0.0.1:$db_port
YAML
dotnet build "$root/src/Edge/MProxy.Edge.csproj" -c Release -v quiet -nologo >/dev/null
# Socket completions inline on the epoll threads: no thread-pool hop per packet (recommended for the edge).
DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 setsid dotnet "$root/src/Edge/bin/Release/net10.0/mproxy.dll" --config "$work/mproxy.yaml" --log-level Warning > "$work/mproxy.log" 2>&1 &
pids+=($!)
setsid socat "TCP-LISTEN:$relay_port,bind=127.0.0.1,fork,reuseaddr,nodelay,backlog=512" "TCP:127.0.0.1:$db_port,nodelay" &
pids+=($!)
dotnet build "$root/bench/RelayFloor/MProxy.Bench.RelayFloor.csproj" -c Release -v quiet -nologo >/dev/null
setsid dotnet "$root/bench/RelayFloor/bin/Release/net10.0/relay-floor.dll" "$floor_port" 127.0.0.1 "$db_port" > "$work/relay-floor.log" 2>&1 &
pids+=($!)
setsid dotnet "$root/bench/RelayFloor/bin/Release/net10.0/relay-floor.dll" --epoll "$epoll_port" 127.0.0.1 "$db_port" > "$work/relay-epoll.log" 2>&1 &
pids+=($!)
wait_ports "$mysql_port" "$relay_port" "$floor_port" "$epoll_port"

run_sysbench() { # port test → "tps p95 errors"
  local port=$1 test=$2 out tps p95 errors
  out=$(sysbench "$test" "${sb_common[@]}" --mysql-port="$port" --threads="$THREADS" --time="$DURATION" --report-interval=0 run 2>&1) || true
  tps=$(grep -oP 'transactions:\s+\d+\s+\(\K[0-9.]+' <<<"$out" | head -n1 || true)
  p95=$(grep -oP '95th percentile:\s+\K[0-9.]+' <<<"$out" | head -n1 || true)
  errors=$(grep -oP 'ignored errors:\s+\K\d+' <<<"$out" | head -n1 || true)
  if [ -z "$tps" ]; then echo "sysbench $test failed on port $port:" >&2; echo "$out" | tail -8 >&2; tps=0; p95=0; fi
  echo "$tps ${p95:-0} ${errors:-?}"
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f}")' "$@"; }

# Warm both paths (buffer pool, JIT) before measuring.
for port in "$db_port" "$mysql_port" "$relay_port" "$floor_port" "$epoll_port"; do run_sysbench "$port" oltp_read_only >/dev/null; done

printf '\n| test (%s threads) | direct TPS | socat TPS | relay-floor TPS | relay-floor-epoll TPS | mproxy TPS | mproxy/direct | mproxy/socat | relay-floor/direct | relay-floor-epoll/direct | direct p95 ms | socat p95 ms | relay-floor p95 ms | relay-floor-epoll p95 ms | mproxy p95 ms | ignored errors (direct/socat/floor/epoll/mproxy) |\n' "$THREADS"
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for test in "${tests[@]}"; do
  dt=(); dp=(); st=(); sp=(); ft=(); fp=(); et=(); ep=(); mt=(); mp=(); de=0; se=0; fe=0; ee=0; me=0
  for ((r = 1; r <= ROUNDS; r++)); do
    read -r t p e < <(run_sysbench "$db_port" "$test"); dt+=("$t"); dp+=("$p"); [ "$e" = "?" ] || de=$((de + e))
    read -r t p e < <(run_sysbench "$relay_port" "$test"); st+=("$t"); sp+=("$p"); [ "$e" = "?" ] || se=$((se + e))
    read -r t p e < <(run_sysbench "$floor_port" "$test"); ft+=("$t"); fp+=("$p"); [ "$e" = "?" ] || fe=$((fe + e))
    read -r t p e < <(run_sysbench "$epoll_port" "$test"); et+=("$t"); ep+=("$p"); [ "$e" = "?" ] || ee=$((ee + e))
    read -r t p e < <(run_sysbench "$mysql_port" "$test"); mt+=("$t"); mp+=("$p"); [ "$e" = "?" ] || me=$((me + e))
  done
  dtm=$(median "${dt[@]}"); stm=$(median "${st[@]}"); ftm=$(median "${ft[@]}"); etm=$(median "${et[@]}"); mtm=$(median "${mt[@]}")
  rf=$(python3 -c "print(f'{$ftm/$dtm:.2f}' if $dtm else 'n/a')"); re=$(python3 -c "print(f'{$etm/$dtm:.2f}' if $dtm else 'n/a')")
  rd=$(python3 -c "print(f'{$mtm/$dtm:.2f}' if $dtm else 'n/a')"); rs=$(python3 -c "print(f'{$mtm/$stm:.2f}' if $stm else 'n/a')")
  printf '| %s | %s | %s | %s | %s | %s | %s× | %s× | %s× | %s× | %s | %s | %s | %s | %s | %s |\n' "$test" "$dtm" "$stm" "$ftm" "$etm" "$mtm" "$rd" "$rs" "$rf" "$re" \
    "$(median "${dp[@]}")" "$(median "${sp[@]}")" "$(median "${fp[@]}")" "$(median "${ep[@]}")" "$(median "${mp[@]}")" "$de/$se/$fe/$ee/$me"
done
