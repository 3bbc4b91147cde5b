#!/usr/bin/env python3
"""The demo's `writer` agent: a script standing in for an LLM documentation agent.

Agent Factory runs it in the task's git worktree with FACTORY_TASK_ID and FACTORY_TASK_FILE
(see coder.py). It documents the command line in README.md from what the code really does:
the `--help` output and example runs of the package in this worktree.
"""

import json
import os
import pathlib
import subprocess
import sys

SECTION = "## Usage\n"


def textkit(*args, stdin=None):
    result = subprocess.run([sys.executable, "-m", "textkit", *args], input=stdin,
                            capture_output=True, text=True, check=True, timeout=60)
    return result.stdout


def main():
    task = json.loads(pathlib.Path(os.environ["FACTORY_TASK_FILE"]).read_text(encoding="utf-8"))
    print(f"writer: task {os.environ.get('FACTORY_TASK_ID')}, attempt {task['attempt']}: "
          f"{task['title']}", flush=True)
    sample = "the cat and the hat and the bat"
    usage = (
        SECTION + "\n"
        "```\n" + textkit("--help") + "```\n\n"
        "Examples:\n\n"
        "```sh\n"
        '$ python3 -m textkit slug "Crème Brûlée, the Recipe!"\n' +
        textkit("slug", "Crème Brûlée, the Recipe!") +
        f'$ echo "{sample}" | python3 -m textkit top -n 3\n' +
        textkit("top", "-n", "3", stdin=sample) +
        "```\n\n"
        "From Python: `textkit.words(text)`, `textkit.slugify(text, max_length=None)`,\n"
        "`textkit.stats.word_counts(text)`, `textkit.stats.top_words(text, n=10)`,\n"
        "`textkit.normalize.collapse_whitespace(text)`, `textkit.normalize.fold(text)`.\n"
    )
    readme = pathlib.Path("README.md")
    text = readme.read_text(encoding="utf-8")
    start = text.find(SECTION)
    if start < 0:
        print("writer: README.md has no '## Usage' section", file=sys.stderr)
        return 1
    end = text.find("\n## ", start + len(SECTION))
    rest = text[end + 1:] if end >= 0 else ""
    readme.write_text(text[:start] + usage + ("\n" + rest if rest else ""), encoding="utf-8")
    print("writer: README.md: wrote the Usage section", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
