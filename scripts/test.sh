#!/usr/bin/env bash
# Runs mproxy's whole test suite — the command CI runs. Installs what the tests need first:
# PostgreSQL 15 (the tests start their own throwaway servers), PgBouncer, MariaDB and Chromium.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
ensure_packages postgresql-15 postgresql-client-15 pgbouncer mariadb-server mariadb-client chromium sysbench

# Test fixtures run PostgreSQL as the postgres user; it must be able to reach the temp directories.
chmod 1777 /tmp 2>/dev/null || true

cd "$root"
dotnet build MProxy.sln -c Release -nologo -v quiet
# A hung test fails the run (with the test named) instead of running into the CI time limit.
dotnet test MProxy.sln -c Release --no-build -nologo --logger "console;verbosity=minimal" --blame-hang-timeout 10m --blame-hang-dump-type none "$@"
