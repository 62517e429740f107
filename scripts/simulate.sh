#!/usr/bin/env bash
# Runs the deterministic simulation (tests/Simulation) outside the test runner.
#   scripts/simulate.sh --seeds N [--from S]   run N seeds starting at S (default 100 from 1)
#   scripts/simulate.sh --seed S [--verbose]   run one seed (with its whole trace), twice, and compare trace hashes
# A failing seed is printed with the command that replays it. Exit status 1 when any seed fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_dotnet
cd "$root"
if [[ "${MPROXY_SIM_NO_BUILD:-}" != 1 ]]; then
  dotnet build tests/Simulation/MProxy.Simulation.Tests.csproj -c Release -nologo -v quiet >&2
fi
exec dotnet tests/Simulation/bin/Release/net10.0/MProxy.Simulation.Tests.dll simulate "$@"
