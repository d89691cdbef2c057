"""Words about handwriting and the seed's MNIST numbers appear in a report only where they
belong: real runs on MNIST digits (mnist-5k), scikit-learn's 8x8 digits and Fashion-MNIST."""

import re

from markupsafe import Markup

DIGIT_WORDS = re.compile(r"\b(digits?|handwrit\w*|strokes?|writings?|MNIST|4/9|3/5/8)\b",
                         re.IGNORECASE)
# The seed's numbers, measured on MNIST: 28x28 digits only.
SEED_MNIST = re.compile(r"homogeneity 0\.485|1,049 s|0\.26 for its MLP|first 200 components|"
                        r"seed's MNIST table|10 digits")


def _prose(run) -> str:
    """The report's text as a reader sees it, without the configuration block (the parameters'
    own documentation) and without the figures' embedded data."""
    html = (run / "report.html").read_text()
    html = re.sub(r"<pre>.*?</pre>", "", html, flags=re.S)
    html = re.sub(r'src="data:[^"]*"', "", html)
    return Markup(re.sub(r"<[^>]+>", " ", html)).unescape()


def test_a_clothes_report_speaks_of_no_digit_and_no_seed_number(fashion_like_run):
    text = _prose(fashion_like_run)
    assert DIGIT_WORDS.findall(text) == []
    assert SEED_MNIST.findall(text) == []
    assert "deskew" not in text  # the embedding deskews digits only


def test_8x8_digits_get_digit_words_but_not_the_seeds_mnist_numbers(full_digits_run):
    text = _prose(full_digits_run)
    assert SEED_MNIST.findall(text) == ["10 digits"]  # the seed's reasoning, not its numbers
    assert "deskewed" in text


def test_mnist_digits_are_compared_with_the_seeds_numbers(quick_run):
    found = set(SEED_MNIST.findall(_prose(quick_run)))
    assert {"homogeneity 0.485", "1,049 s", "0.26 for its MLP", "seed's MNIST table"} <= found
