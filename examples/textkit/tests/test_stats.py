import unittest

from tests.support import require

stats = require("stats")


class WordCountsTest(unittest.TestCase):
    def test_counts_words_not_raw_tokens(self):
        self.assertEqual(stats.word_counts("Hello, hello! HELLO."), {"hello": 3})

    def test_empty_text(self):
        self.assertEqual(stats.word_counts(""), {})


class TopWordsTest(unittest.TestCase):
    def test_most_frequent_first(self):
        self.assertEqual(stats.top_words("b a b c b a", 2), [("b", 3), ("a", 2)])

    def test_ties_break_alphabetically(self):
        self.assertEqual(stats.top_words("pear apple fig apple fig pear", 3),
                         [("apple", 2), ("fig", 2), ("pear", 2)])

    def test_n_larger_than_the_vocabulary(self):
        self.assertEqual(stats.top_words("x y", 10), [("x", 1), ("y", 1)])

    def test_non_positive_n_gives_nothing(self):
        self.assertEqual(stats.top_words("a b", 0), [])
        self.assertEqual(stats.top_words("a b", -1), [])


if __name__ == "__main__":
    unittest.main()
