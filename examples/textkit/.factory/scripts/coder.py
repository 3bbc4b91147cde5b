#!/usr/bin/env python3
"""The demo's `coder` agent: a script standing in for an LLM coding agent.

Agent Factory runs it in the task's git worktree (the current directory) with
  FACTORY_TASK_ID    the backlog id of the task (normalize, tokenize, ...)
  FACTORY_TASK_FILE  JSON: title, spec, acceptance, attempt, max_attempts, feedback
and commits whatever it changes; the gates (.factory/config.yaml) then run the test suite.

It knows the code each task needs, which a model would have to work out, and otherwise
behaves like an agent: it writes real files, and on a retry it reads the previous attempt's
feedback. The `stats` task starts from a deliberately naive first draft; on the retry the
script finds the failing tests named in the gate output it got as feedback and fixes exactly
those, so the retry passes only because the feedback arrived.
"""

import json
import os
import pathlib
import re
import sys

NORMALIZE = '''\
"""Whitespace and case folding."""

import re
import unicodedata

_WHITESPACE = re.compile(r"\\s+")


def collapse_whitespace(text):
    """Runs of whitespace become one space; leading and trailing whitespace goes."""
    return _WHITESPACE.sub(" ", text).strip()


def fold(text):
    """Case-folded text without accents ("Crème" -> "creme"), for comparing words."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))
'''

TOKENIZE = '''\
"""Splitting text into words."""

import re

from textkit.normalize import fold

# Letters and digits, with apostrophes inside a word ("don't") kept.
_WORD = re.compile(r"[^\\W_]+(?:'[^\\W_]+)*")


def words(text):
    """The folded words of `text`, in order."""
    return _WORD.findall(fold(text))
'''

SLUG = '''\
"""URL slugs."""

import re

from textkit.normalize import fold

_PART = re.compile(r"[^\\W_]+")


def slugify(text, max_length=None):
    """Lowercase ASCII words joined by dashes: "Crème Brûlée!" -> "creme-brulee".

    With max_length, whole words are kept while they fit; a first word longer than the limit
    is cut.
    """
    parts = _PART.findall(fold(text).replace("'", ""))
    slug = "-".join(parts)
    if max_length is None or len(slug) <= max_length:
        return slug
    kept = ""
    for part in parts:
        candidate = f"{kept}-{part}" if kept else part
        if len(candidate) > max_length:
            break
        kept = candidate
    return kept or parts[0][:max_length]
'''

# The first draft of stats.py: splits on whitespace and trusts Counter.most_common, whose ties
# come out in first-seen order.
STATS_DRAFT = '''\
"""Word statistics."""

from collections import Counter


def word_counts(text):
    """How often each word occurs."""
    return dict(Counter(text.lower().split()))


def top_words(text, n=10):
    """The n most frequent words with their counts, most frequent first."""
    return Counter(text.lower().split()).most_common(n)
'''

# What to change when a test fails: test name -> (why, [(old, new), ...]) on stats.py.
STATS_FIXES = {
    "test_counts_words_not_raw_tokens": (
        "count words from textkit.tokenize instead of whitespace-separated tokens",
        [
            ("from collections import Counter\n",
             "from collections import Counter\n\nfrom textkit.tokenize import words\n"),
            ("return dict(Counter(text.lower().split()))", "return dict(Counter(words(text)))"),
            ("return Counter(text.lower().split()).most_common(n)",
             "return Counter(words(text)).most_common(n)"),
        ],
    ),
    "test_ties_break_alphabetically": (
        "sort by count, then alphabetically, instead of most_common's first-seen order",
        [
            ('    """The n most frequent words with their counts, most frequent first."""\n',
             '    """The n most frequent words with their counts, most frequent first (ties in\n'
             '    alphabetical order); nothing when n <= 0."""\n'
             "    if n <= 0:\n"
             "        return []\n"),
            ("return Counter(words(text)).most_common(n)",
             "counts = Counter(words(text))\n"
             "    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]"),
            ("return Counter(text.lower().split()).most_common(n)",
             "counts = Counter(text.lower().split())\n"
             "    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]"),
        ],
    ),
}

MAIN = '''\
"""The command line: python3 -m textkit {slug,top} ..."""

import argparse
import sys

from textkit.slug import slugify
from textkit.stats import top_words


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m textkit",
                                     description="Small text utilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    slug = commands.add_parser("slug", help="print the URL slug of TEXT")
    slug.add_argument("text", nargs="+", metavar="TEXT")
    slug.add_argument("--max-length", type=int, default=None,
                      help="keep whole words up to this many characters")
    top = commands.add_parser("top", help="print the most frequent words of FILE (or stdin)")
    top.add_argument("file", nargs="?", metavar="FILE")
    top.add_argument("-n", type=int, default=10, help="how many words (default 10)")
    args = parser.parse_args(argv)

    if args.command == "slug":
        print(slugify(" ".join(args.text), max_length=args.max_length))
        return 0
    if args.file:
        with open(args.file, encoding="utf-8") as source:
            text = source.read()
    else:
        text = sys.stdin.read()
    for word, count in top_words(text, args.n):
        print(f"{word}\\t{count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def say(message):
    print(f"coder: {message}", flush=True)


def write(path, content):
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    say(f"wrote {path} ({len(content.splitlines())} lines)")


def export(line):
    """Adds an import to the package's public API (textkit/__init__.py), once."""
    init = pathlib.Path("textkit/__init__.py")
    text = init.read_text(encoding="utf-8")
    if line in text.splitlines():
        return
    if not text.endswith("\n"):
        text += "\n"
    init.write_text(text + line + "\n", encoding="utf-8")
    say(f"textkit/__init__.py: added '{line}'")


def failing_tests(feedback):
    """Names of the tests the gate output reports as failed or erroring."""
    return sorted(set(re.findall(r"^(?:FAIL|ERROR): (test_\w+)", feedback, re.MULTILINE)))


def stats(task):
    source = STATS_DRAFT
    failures = failing_tests(task["feedback"])
    if not failures:
        say("first draft of textkit/stats.py")
    for test in failures:
        if test not in STATS_FIXES:
            say(f"the feedback reports {test}, which this script cannot fix")
            sys.exit(1)
        why, edits = STATS_FIXES[test]
        say(f"feedback: {test} failed -> {why}")
        for old, new in edits:
            source = source.replace(old, new)
    write("textkit/stats.py", source)


def main():
    task = json.loads(pathlib.Path(os.environ["FACTORY_TASK_FILE"]).read_text(encoding="utf-8"))
    key = os.environ.get("FACTORY_TASK_ID", task.get("task_id", ""))
    say(f"task {key}, attempt {task['attempt']}/{task['max_attempts']}: {task['title']}")
    if task["feedback"]:
        first_line = task["feedback"].strip().splitlines()[0]
        say(f"the previous attempt was rejected: {first_line}")

    if key == "normalize":
        write("textkit/normalize.py", NORMALIZE)
    elif key == "tokenize":
        write("textkit/tokenize.py", TOKENIZE)
        export("from textkit.tokenize import words")
    elif key == "slugify":
        write("textkit/slug.py", SLUG)
        export("from textkit.slug import slugify")
    elif key == "stats":
        stats(task)
    elif key == "cli":
        write("textkit/__main__.py", MAIN)
    else:
        say(f"no recipe for task '{key}'")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
