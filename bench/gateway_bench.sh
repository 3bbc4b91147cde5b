#!/usr/bin/env bash
# Gateway overhead: installs Portkey's gateway once (`npm ci` from
# bench/gateway_bench/package-lock.json into <build>/bench/gateway_peers; it runs offline after
# that), then runs gateway_bench: direct vs `factory gateway` vs Portkey in front of the same
# upstream, at concurrency 1 and 32. Usage: bench/gateway_bench.sh [build-dir]
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
peers="$build/bench/gateway_peers"
mkdir -p "$peers"
cp "$here/gateway_bench/package.json" "$here/gateway_bench/package-lock.json" \
   "$here/gateway_bench/bind-loopback.cjs" "$peers/"
if [[ ! -f "$peers/node_modules/@portkey-ai/gateway/build/start-server.js" ]]; then
  (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "machine load before: $(uptime)"
"$build/bench/gateway_bench" --factory "$build/factory" --portkey-dir "$(cd "$peers" && pwd)" \
  --dir "$here/out/gateway" --seconds "${BENCH_GATEWAY_SECONDS:-5}"
echo "machine load after: $(uptime)"
