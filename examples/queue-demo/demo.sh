#!/usr/bin/env bash
# The task commands are single-quoted on purpose: they expand when the worker runs them.
# shellcheck disable=SC2016
# The queue demo (`make demo`): a small DAG of shell-command tasks, processed by a worker with
# concurrency 2, then the queue's stats and the audit of its hash-chained event log.
#
#   fetch -> compile -> flaky test --\
#        \-> lint -------------------+-> package
#
# "flaky test" fails on its first attempt and passes on its retry (a marker file remembers),
# so the run shows retries with backoff. Everything happens in a fresh temp directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
factory=${FACTORY_BIN:-$repo/build/factory}
if [[ ! -x "$factory" ]]; then
  echo "demo: $factory is not built; run 'make demo'" >&2
  exit 1
fi
work=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/factory-demo.XXXXXX")}
mkdir -p "$work"
cd "$work"

if [[ -t 1 ]]; then bold=$'\033[1m'; plain=$'\033[0m'; else bold=; plain=; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
run() { printf '$ factory %s\n' "$*"; "$factory" "$@"; }

step "Initialise a factory in $work"
run init

step "Enqueue a DAG of shell-command tasks"
fetch=$("$factory" task add --title "fetch sources" --priority 10 --idempotency-key fetch-v1 \
  --command 'mkdir -p src && for i in $(seq 1 500); do echo "record $i: $((i * 7919 % 1000))"; done > src/data.txt && echo "fetched $(wc -l < src/data.txt) records"')
compile=$("$factory" task add --title "compile" --depends-on "$fetch" \
  --command 'sleep 0.5; mkdir -p out && tr a-z A-Z < src/data.txt > out/DATA.TXT && wc -c out/DATA.TXT')
lint=$("$factory" task add --title "lint" --depends-on "$fetch" \
  --command 'sleep 0.5; n=$(grep -c "^record" src/data.txt); echo "lint: $n records well-formed"')
flaky=$("$factory" task add --title "flaky integration test" --depends-on "$compile" --max-attempts 3 \
  --command 'if [ ! -f .flaky-marker ]; then touch .flaky-marker; echo "connection reset (transient)" >&2; exit 1; fi; echo "passed on attempt $FACTORY_ATTEMPT"')
package=$("$factory" task add --title "package" --depends-on "$compile,$lint,$flaky" \
  --command 'tar cf package.tar out src && sha256sum package.tar | tee package.sha256')
echo "fetch=$fetch compile=$compile lint=$lint flaky=$flaky package=$package"
again=$("$factory" task add --title "fetch sources" --idempotency-key fetch-v1 --command true)
echo "adding 'fetch sources' again with the same idempotency key returns the same task: $again"
run task list

step "Run a worker until the queue is idle (concurrency 2)"
run worker --until-idle --concurrency 2 --poll-ms 100

step "Results"
run task list
run queue stats
run task show "$flaky"
run audit verify

step "Where things are"
echo "database:  $work/.factory/factory.db"
echo "artifacts: $work/.factory/artifacts/<task id>/<attempt>/{stdout,stderr}.log"
echo "package stdout: $(cat "$work/.factory/artifacts/$package/1/stdout.log")"
echo "try: $factory --db $work/.factory/factory.db task show $package"
