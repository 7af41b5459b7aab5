"""Request text to the words an English ASR should hear: lower case, numbers spelled out.

Only Latin-script words and digits count; other scripts (e.g. Chinese) are left out, because
the built-in recognizer (pocketsphinx en-US) cannot transcribe them. A text with no such word
has no English reference, and its read-back is not scored.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?%?|\d+(?:\.\d+)?%?|[a-z]+(?:'[a-z]+)*")
_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"))
MAX_SPELLED = 10**12 - 1


def number_words(value: int) -> list[str]:
    """``42`` -> ``["forty", "two"]``; 0 <= value <= MAX_SPELLED, else digit by digit."""
    if value < 0 or value > MAX_SPELLED:
        return [_ONES[int(d)] for d in str(abs(value))]
    if value < 20:
        return [_ONES[value]]
    if value < 100:
        tens, ones = divmod(value, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    for scale, name in _SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            return number_words(high) + [name] + (number_words(rest) if rest else [])
    raise AssertionError("unreachable")


def _token_words(token: str) -> list[str]:
    if not token[0].isdigit():
        return [token]
    percent = token.endswith("%")
    whole, _, fraction = token.rstrip("%").replace(",", "").partition(".")
    if len(whole) > len(str(MAX_SPELLED)):
        words = [_ONES[int(d)] for d in whole]
    else:
        words = number_words(int(whole))
    if fraction:
        words += ["point"] + [_ONES[int(d)] for d in fraction[:6]]
    return words + (["percent"] if percent else [])


def reference_words(text: str) -> list[str]:
    """The words a listener should hear in ``text``, as an English ASR would write them."""
    words: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        words.extend(_token_words(token))
    return words
