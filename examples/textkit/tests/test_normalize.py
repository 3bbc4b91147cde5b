import unittest

from tests.support import require

normalize = require("normalize")


class CollapseWhitespaceTest(unittest.TestCase):
    def test_runs_of_whitespace_become_one_space(self):
        self.assertEqual(normalize.collapse_whitespace("a  b\t\tc\n\nd"), "a b c d")

    def test_strips_both_ends(self):
        self.assertEqual(normalize.collapse_whitespace("  hi there \n"), "hi there")

    def test_blank_text_becomes_empty(self):
        self.assertEqual(normalize.collapse_whitespace(""), "")
        self.assertEqual(normalize.collapse_whitespace(" \t\n "), "")


class FoldTest(unittest.TestCase):
    def test_lowercases(self):
        self.assertEqual(normalize.fold("HeLLo"), "hello")

    def test_strips_accents(self):
        self.assertEqual(normalize.fold("Crème Brûlée"), "creme brulee")

    def test_case_folds_beyond_lowercase(self):
        self.assertEqual(normalize.fold("Straße"), "strasse")

    def test_keeps_spacing_and_punctuation(self):
        self.assertEqual(normalize.fold("A, b!  C"), "a, b!  c")


if __name__ == "__main__":
    unittest.main()
