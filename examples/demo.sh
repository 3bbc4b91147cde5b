#!/usr/bin/env bash
# The Agent Factory demo (`make demo`): builds the small Python package in examples/textkit/
# from its backlog, end to end, with `script` agents standing in for LLM agents (no model or API
# key needed).
#
#   1. copies examples/textkit/ into a fresh temporary directory and makes it a git repository
#      (one commit on `main`: the package skeleton, its test suite, .factory/ with the config,
#      the agents and their scripts, and backlog.yaml);
#   2. `factory run --backlog backlog.yaml --run-id demo`: six tasks, each in its own worktree
#      and sandbox, gated by the test suite, merged one at a time into factory/demo (a live view
#      on a terminal, progress lines otherwise);
#   3. checks the result: every test passes on factory/demo with no module missing, the audit
#      chain verifies, `main` is untouched; then prints what happened and where to look.
#
# Exit 0 only when the run is fully done and the checks pass.
# Environment: FACTORY_BIN (default: build/factory of this repository), DEMO_DIR (default: a new
# directory under $TMPDIR), DEMO_RUN_ARGS (extra arguments for `factory run`, e.g. --plain).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
factory=${FACTORY_BIN:-$repo/build/factory}
if [[ ! -x "$factory" ]]; then
  echo "demo: $factory is not built; run 'make demo'" >&2
  exit 1
fi
for tool in git python3; do
  command -v "$tool" >/dev/null || { echo "demo: needs $tool (scripts/install-deps)" >&2; exit 1; }
done

# The demo's database is the project's own (.factory/factory.db), whatever the caller's setting.
unset FACTORY_DB

work=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/factory-demo.XXXXXX")}
project=$work/textkit
if [[ -e "$project" ]]; then
  echo "demo: $project already exists; give an empty DEMO_DIR" >&2
  exit 1
fi
run_id=demo
branch=factory/$run_id

if [[ -t 1 ]]; then bold=$'\033[1m'; plain=$'\033[0m'; else bold=; plain=; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
factory() { "$factory" "$@"; }

step "The project: examples/textkit copied to $project"
mkdir -p "$project"
cp -R "$here/textkit/." "$project/"
cd "$project"
git init -q -b main
git add -A
git -c user.name="Demo User" -c user.email=demo@example.com -c commit.gpgsign=false commit -q \
  -m "textkit: package skeleton, test suite, factory config, agents and backlog"
git --no-pager log --oneline
# Only `factory init` creates the database. The example brings its own config and agents, so
# the database is made in a scratch directory (init's example files stay there) and moved in.
scratch=$(mktemp -d)
factory --db "$scratch/factory.db" init >/dev/null
mv "$scratch/factory.db" .factory/factory.db
rm -rf "$scratch"
echo "agents:"
factory agents
echo "gates and protected paths (.factory/config.yaml):"
sed -n -e '/^gates:/,/^$/p' -e '/^protected:/,/^$/p' .factory/config.yaml | grep -v -e '^#' -e '^$' | sed 's/^/  /'

step "factory run --backlog backlog.yaml --run-id $run_id"
read -r -a extra_args <<<"${DEMO_RUN_ARGS:-}"
set +e
factory run --backlog backlog.yaml --run-id "$run_id" ${extra_args[@]+"${extra_args[@]}"}
run_status=$?
set -e

step "What happened, task by task"
factory run show "$run_id" --json >"$work/run.json"
python3 - "$factory" "$work/run.json" <<'EOF'
import json
import subprocess
import sys

factory, run_file = sys.argv[1], sys.argv[2]
run = json.load(open(run_file))
for task in run["tasks"]:
    shown = json.loads(subprocess.run([factory, "task", "show", task["task_id"], "--json"],
                                      capture_output=True, text=True, check=True).stdout)
    print(f"{task['key']:10} {task['state']:8} agent {task['agent'] or '-'}")
    for attempt in shown["attempt_history"]:
        details = attempt.get("details") or {}
        outcome = attempt["status"]
        if attempt.get("error"):
            outcome += ": " + attempt["error"].splitlines()[0][:100]
        elif details.get("merge_commit"):
            outcome += ", merged as " + details["merge_commit"][:10]
        extra = " (had feedback)" if details.get("had_feedback") else ""
        print(f"    attempt {attempt['number']}{extra}: {outcome}")
EOF
stats_feedback=.factory/runs/$run_id/stats-2/task.json
if [[ -f "$stats_feedback" ]]; then
  echo
  echo "The feedback the retry of 'stats' got (from $stats_feedback), first lines:"
  python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["feedback"].splitlines()[:8]))' \
    "$stats_feedback" | sed 's/^/    /'
  echo "and what the coder script did with it (.factory/runs/$run_id/stats-2/runner.stdout.log):"
  sed 's/^/    /' ".factory/runs/$run_id/stats-2/runner.stdout.log"
fi

if [[ $run_status -ne 0 ]]; then
  echo "demo: factory run exited with $run_status; see 'factory run show $run_id'" >&2
  exit "$run_status"
fi

step "Checks"
checkout=$work/integration-checkout
mkdir -p "$checkout"
git archive "$branch" | tar -x -C "$checkout"
echo "the project's tests on $branch, every module required:"
if ! (cd "$checkout" && TEXTKIT_REQUIRE_ALL=1 PYTHONDONTWRITEBYTECODE=1 \
      python3 -m unittest discover -s tests -t . >"$work/tests.log" 2>&1); then
  cat "$work/tests.log" >&2
  echo "demo: the tests fail on $branch" >&2
  exit 1
fi
tail -n 3 "$work/tests.log" | sed 's/^/    /'
echo "merge commits on $branch, per task:"
git log --merges --format=%B "$branch" | sed -n 's/^Factory-Task: //p' | sort | uniq -c |
  sed 's/^/   /'
factory audit verify
if [[ $(git rev-list --count main) -ne 1 ]]; then
  echo "demo: main moved; factory run must never touch the base branch" >&2
  exit 1
fi
echo "main is untouched (1 commit); the work is on $branch"

step "Where to look"
if [[ "$(command -v factory || true)" != "$factory" ]]; then
  echo "  alias factory=$factory"
fi
cat <<EOF
  cd $project
  git log --oneline --graph $branch  # one --no-ff merge per task, trailers in the messages
  git show $branch:textkit/stats.py  # code written by the agents
  factory run show $run_id                   # tasks, agents, attempts
  factory task show TASK_ID               # one task's attempts and events (ids: run show --json)
  ls .factory/runs/$run_id/                  # per attempt: task.json, runner logs, gates/*.log
  factory costs                           # the model-call ledger (empty: scripts call no model)
  factory audit verify                    # the hash-chained event log
  factory run merge $run_id                  # merge $branch into main
EOF
