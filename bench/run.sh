#!/usr/bin/env bash
# Runs every benchmark against its same-run baseline. Usage: bench/run.sh [build-dir]
# Figures are printed; copy them into bench/RESULTS.md with the command that produced them.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
mkdir -p "$out"

echo "== queue throughput: $build/bench/queue_bench --tasks 100000 --dir $out"
"$build/bench/queue_bench" --tasks "${BENCH_TASKS:-100000}" --dir "$out"

echo
echo "== dispatch latency and orchestration overhead: $build/bench/worker_bench --dir $out/worker"
"$build/bench/worker_bench" --factory "$build/factory" --dir "$out/worker"

echo
echo "== gateway overhead: bench/gateway_bench.sh $build"
bash "$here/gateway_bench.sh" "$build"

echo
echo "== sandbox start: $build/bench/sandbox_bench --runs 300 --dir $out/sandbox"
"$build/bench/sandbox_bench" --runs "${BENCH_SANDBOX_RUNS:-300}" --dir "$out/sandbox"
echo "== redaction throughput: $build/bench/redact_bench --mib 8"
"$build/bench/redact_bench" --mib 8

for extra in "$here"/run-*.sh; do
  [[ -e "$extra" ]] || continue
  echo
  bash "$extra" "$build"
done
