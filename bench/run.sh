#!/usr/bin/env bash
# Runs every benchmark against its same-run baseline. Usage: bench/run.sh [build-dir]
# Figures are printed; copy them into bench/RESULTS.md with the command that produced them.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
mkdir -p "$out"

echo "== queue throughput (issue 2): $build/bench/queue_bench --tasks 100000 --dir $out"
"$build/bench/queue_bench" --tasks "${BENCH_TASKS:-100000}" --dir "$out"

for extra in "$here"/run-*.sh; do
  [[ -e "$extra" ]] || continue
  echo
  bash "$extra" "$build"
done
