#!/usr/bin/env bash
# Lease traffic and budget error of the policy tier: a silo process and E edges' policy clients
# (3 × 100 tenants by default), demand that changes every 5 s and is split unevenly over the edges.
# Prints exchanges/s per edge, mean exchange latency, the silo's CPU, and per tenant-second the RU
# admitted over all edges against one ideal shared bucket. See bench/PolicyLease/Program.cs.
#
# Usage: bench/policy-lease.sh [--seconds 60] [--edges 3] [--tenants 100] [--budget 100] [--shift 5] [--store memory|postgres://…] [--seed 1]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
dotnet build "$root/bench/PolicyLease" -c Release -nologo -v quiet >&2
exec dotnet "$root/bench/PolicyLease/bin/Release/net10.0/MProxy.Benchmarks.dll" "$@"
