#!/usr/bin/env bash
# Runs the fuzz targets built in BUILD_DIR (FACTORY_FUZZ=ON), each for FUZZ_SECONDS (default
# 30), starting from its seed corpus fuzz/corpus/<target>/ and the inputs of past findings
# fuzz/regressions/<target>/. Both stay untouched: what a run discovers goes to a scratch
# corpus in BUILD_DIR/fuzz-out/<target>/, crashing inputs to .../artifacts/. With
# FUZZ_KEEP_CORPUS=1 the new inputs are merged (minimised) into fuzz/corpus/<target>/.
# Prints a table (executions, seconds, corpus size, findings), also written to
# BUILD_DIR/fuzz-out/results.md; exits 1 when a target found something.
#
#   fuzz/run.sh BUILD_DIR [TARGET...]     (default: every fuzz_* binary in BUILD_DIR/fuzz)
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 BUILD_DIR [TARGET...]" >&2; exit 2; }
build=$(cd "$1" && pwd)
shift
src=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-30}
out=$build/fuzz-out

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for binary in "$build"/fuzz/fuzz_*; do
    [[ -x $binary ]] && targets+=("$(basename "$binary" | sed 's/^fuzz_//')")
  done
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "no fuzz targets in $build/fuzz (build fuzz_targets)" >&2; exit 2; }

mkdir -p "$out"
table="| target | executions | seconds | corpus (seeds -> end) | findings |"$'\n'
table+="|---|---:|---:|---:|---|"$'\n'
failed=0
for target in "${targets[@]}"; do
  binary=$build/fuzz/fuzz_$target
  [[ -x $binary ]] || { echo "no $binary" >&2; exit 2; }
  work=$out/$target
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts" "$work/cwd"
  inputs=("$work/corpus")
  seeds=0
  for dir in "$src/corpus/$target" "$src/regressions/$target"; do
    if [[ -d $dir ]]; then
      inputs+=("$dir")
      seeds=$((seeds + $(find "$dir" -type f | wc -l)))
    fi
  done
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
           -artifact_prefix="$work/artifacts/")
  [[ -f $src/dict/$target.dict ]] && options+=(-dict="$src/dict/$target.dict")
  echo "== $target: ${seconds}s from $seeds seeds" >&2
  start=$(date +%s)
  status=0
  # In a scratch folder: a target must never write into the checkout, whatever it is fed.
  (cd "$work/cwd" && "$binary" "${options[@]}" "${inputs[@]}") >"$work/log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  corpus=$(grep -o 'corp: [0-9]*' "$work/log" | tail -1 | sed 's/corp: //')
  findings=$(find "$work/artifacts" -type f | wc -l)
  summary="none"
  if [[ $status -ne 0 || $findings -gt 0 ]]; then
    failed=1
    summary="exit $status; $(find "$work/artifacts" -type f -printf '%f ' | head -c 200)"
    summary+="(log: $work/log)"
    grep -m3 -E '^(==[0-9]+==ERROR|SUMMARY|fuzz property violated|.*runtime error)' "$work/log" >&2 || true
  fi
  table+="| $target | ${executions:-?} | $elapsed | $seeds -> ${corpus:-?} | $summary |"$'\n'
  if [[ ${FUZZ_KEEP_CORPUS:-0} == 1 && -d $src/corpus/$target ]]; then
    (cd "$work/cwd" && "$binary" -merge=1 "$src/corpus/$target" "$work/corpus") >>"$work/log" 2>&1
  fi
done
printf '%s' "$table" | tee "$out/results.md"
exit $failed
