import unittest

import textkit
from tests.support import require

tokenize = require("tokenize")


class WordsTest(unittest.TestCase):
    def test_splits_on_punctuation_and_folds(self):
        self.assertEqual(tokenize.words("Hello, World!"), ["hello", "world"])

    def test_keeps_inner_apostrophes(self):
        self.assertEqual(tokenize.words("Don't stop 'til"), ["don't", "stop", "til"])

    def test_accents_and_digits(self):
        self.assertEqual(tokenize.words("Crème brûlée, 2 ways"), ["creme", "brulee", "2", "ways"])

    def test_no_words(self):
        self.assertEqual(tokenize.words(""), [])
        self.assertEqual(tokenize.words("--- ... !?"), [])

    def test_exported_by_the_package(self):
        self.assertIs(textkit.words, tokenize.words)


if __name__ == "__main__":
    unittest.main()
