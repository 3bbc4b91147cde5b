import pathlib
import subprocess
import sys
import unittest

from tests.support import require

require("__main__")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def textkit(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "textkit", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


class CliTest(unittest.TestCase):
    def test_slug_joins_its_arguments(self):
        result = textkit("slug", "Crème", "Brûlée!")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "creme-brulee\n")

    def test_top_reads_stdin(self):
        result = textkit("top", "-n", "2", stdin="b a b c b a")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "b\t3\na\t2\n")

    def test_top_reads_a_file(self):
        result = textkit("top", "-n", "1", "README.md")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"^\S+\t\d+\n$")

    def test_unknown_command_is_a_usage_error(self):
        result = textkit("frobnicate")
        self.assertEqual(result.returncode, 2)
        self.assertIn("usage:", result.stderr)


if __name__ == "__main__":
    unittest.main()
