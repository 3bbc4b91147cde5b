import unittest

import textkit
from tests.support import require

slug = require("slug")


class SlugifyTest(unittest.TestCase):
    def test_words_joined_by_dashes(self):
        self.assertEqual(slug.slugify("Hello, World!"), "hello-world")

    def test_accents_and_extra_spaces(self):
        self.assertEqual(slug.slugify("  Crème   Brûlée "), "creme-brulee")

    def test_runs_of_separators_collapse(self):
        self.assertEqual(slug.slugify("a -- b__c"), "a-b-c")

    def test_apostrophes_are_dropped(self):
        self.assertEqual(slug.slugify("Don't panic"), "dont-panic")

    def test_max_length_cuts_at_a_word_boundary(self):
        self.assertEqual(slug.slugify("the quick brown fox", max_length=12), "the-quick")
        self.assertEqual(slug.slugify("extraordinary", max_length=5), "extra")

    def test_nothing_sluggable(self):
        self.assertEqual(slug.slugify("!!!"), "")

    def test_exported_by_the_package(self):
        self.assertIs(textkit.slugify, slug.slugify)


if __name__ == "__main__":
    unittest.main()
