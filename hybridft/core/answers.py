"""Answer normalisation and matching: the one place that decides whether a text holds an answer.

Two normal forms, on purpose:

- :func:`normalize_answer` is SQuAD's (lowercase, drop ASCII punctuation and articles, collapse
  spaces). ``exact_match`` and ``f1`` use it and only it, so they stay comparable with the papers.
- :func:`match_form` is what every builder, check and containment metric uses to ask "does this
  text hold this answer?". It treats the ways one answer is written as the same answer — hyphens
  and dashes as spaces or as nothing ("Isotta-Fraschini" = "Isotta Fraschini", "X-ray" = "Xray":
  a text or answer with a dash is compared in both spellings), unicode compatibility forms
  (NFKC: full-width digits, ligatures), diacritics ("Beyoncé" = "Beyonce"), "&" = "and",
  thousands separators ("1,234" = "1 234" with a thin space = "1234") — while a decimal point
  between digits is kept, so "291" is not found in "29.1". Answers are matched as whole words, so
  a number inside a longer number ("291" in "1291") or a name inside a longer word ("Cyrus" in
  "Cyrusville") is not a match.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ARTICLE_WORDS = frozenset(("a", "an", "the"))
_ODD_ASCII = re.compile(r"[^\w\s]", re.ASCII)
_PUNCT = str.maketrans("", "", string.punctuation)
_PUNCT_BYTES = string.punctuation.encode()
# With deletechars=_PUNCT_BYTES, one bytes.translate pass through this table lowercases ASCII text
# and drops its punctuation: faster than str.lower then str.translate.
_ASCII_LOWER = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())

# match_form on ASCII bytes: "-" becomes a space, "&" is spelled out first, a decimal point is
# parked on \x01 (not punctuation, so it survives the deletion) and put back after it.
_MATCH_TABLE = bytes.maketrans(string.ascii_uppercase.encode() + b"-", string.ascii_lowercase.encode() + b" ")
_MATCH_DELETE = _PUNCT_BYTES.replace(b"-", b"")
# Between the two spellings of a text with dashes (dashes as spaces, then deleted): a word of its
# own, so no answer matches across it.
SPELLINGS = " \x02 "
_DECIMAL_BYTES = re.compile(rb"(?<=\d)\.(?=\d)")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
# A digit group after a no-break, thin or narrow no-break space is a thousands group ("1 234").
_SPACED_THOUSANDS = re.compile(r"(?<=\d)[\u00a0\u2009\u202f](?=\d{3}(?!\d))")
_DIACRITICS = re.compile(r"[\u0300-\u036f]")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    if not text.isascii():
        text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
        return " ".join(text.split())
    return _drop_articles(text.encode("ascii").translate(_ASCII_LOWER, _PUNCT_BYTES).decode("ascii"))


def _drop_articles(text: str) -> str:
    """Articles dropped and whitespace collapsed, in text that is already lowercased."""
    if not _ODD_ASCII.search(text):
        # Only word characters and whitespace are left, so the article regex can only match
        # whole words: filtering words gives the same result, several times faster.
        words = text.split()
        if _ARTICLE_WORDS.isdisjoint(words):
            return " ".join(words)
        return " ".join(word for word in words if word not in _ARTICLE_WORDS)
    return " ".join(_ARTICLES.sub(" ", text).split())


class _UnicodeMatchTable(dict):
    """``str.translate`` table for :func:`match_form`, filled in as characters are met: dashes
    (unicode category Pd) become ``dash``, other punctuation (P*) is deleted, "&" is spelled out,
    and \x01 (a parked decimal point) becomes "." again."""

    def __init__(self, dash: str | None):
        super().__init__({ord("."): None, 1: "."})
        self.dash = dash

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        category = unicodedata.category(char)
        value: str | None
        if char == "&":
            value = " and "
        elif category == "Pd":
            value = self.dash
        elif category.startswith("P") or char in string.punctuation:
            value = None
        else:
            value = char
        self[code] = value
        return value


_DASH_AS_SPACE = _UnicodeMatchTable(" ")
_DASH_DELETED = _UnicodeMatchTable(None)


def match_form(text: str) -> str:
    """The form answers and texts are compared in (see the module docstring); a text with
    dashes gives both spellings, joined by :data:`SPELLINGS`."""
    if text.isascii():
        data = text.encode("ascii")
        if b"&" in data:
            data = data.replace(b"&", b" and ")
        if b"." in data:
            data = _DECIMAL_BYTES.sub(b"\x01", data)
        spaced = data.translate(_MATCH_TABLE, _MATCH_DELETE)
        if b"\x01" in spaced:
            spaced = spaced.replace(b"\x01", b".")
        form = _drop_articles(spaced.decode("ascii"))
        if b"-" not in data:
            return form
        joined = data.translate(_ASCII_LOWER, _PUNCT_BYTES).replace(b"\x01", b".")
        return form + SPELLINGS + _drop_articles(joined.decode("ascii"))
    text = _SPACED_THOUSANDS.sub("", text)
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    text = unicodedata.normalize("NFC", _DIACRITICS.sub("", text)).casefold()
    text = _DECIMAL.sub("\x01", text)
    form = " ".join(_ARTICLES.sub(" ", text.translate(_DASH_AS_SPACE)).split())
    undashed = " ".join(_ARTICLES.sub(" ", text.translate(_DASH_DELETED)).split())
    return form if undashed == form else form + SPELLINGS + undashed


def answer_forms(answer: str) -> list[str]:
    """The spellings of an answer in :func:`match_form` (two when it has a dash)."""
    return match_form(answer).split(SPELLINGS)


def contains_any(matched_text: str, matched_answers: list[str]) -> bool:
    """Whether an answer (in :func:`match_form`) occurs in a text (in :func:`match_form`) as
    whole words."""
    padded = f" {matched_text} "
    return any(answer and f" {answer} " in padded for answer in matched_answers)


def holds_answer(text: str, answers: list[str]) -> bool:
    """Whether ``text`` holds one of ``answers`` (both raw; for one-off checks)."""
    return GoldAnswers(answers).in_text(text)


class GoldAnswers:
    """A question's gold answers, put in :func:`match_form` once for the many containment checks
    made with them."""

    def __init__(self, answers: list[str]):
        self.answers = answers
        # (answer as written, one of its spellings in match_form), in the answers' order.
        self.forms = [(answer, form) for answer in answers for form in answer_forms(answer)]
        self.normalized = [form for _, form in self.forms]
        # The bytes the pre-check looks for: each spelling's words, split at a kept decimal point,
        # without "and" (which may stand for "&" in the text). A spelling with nothing left to look
        # for could be in any text, so it turns the pre-check off.
        self._words: list[list[bytes]] | None = []
        for norm in self.normalized:
            pieces = [p.encode() for p in norm.replace(".", " ").split() if p != "and"]
            if norm and not pieces:
                self._words = None
                break
            if pieces:
                self._words.append(pieces)

    def might_be_in(self, text: str) -> bool:
        """A cheap, sound pre-check: False means :meth:`in_text` is False.

        For ASCII text, every word of ``match_form(text)`` (split at a decimal point, spelled-out
        "&" aside) is a substring of the text lowercased with all punctuation deleted, so an
        answer word missing there is missing from the text. Non-ASCII text is not pre-checked.
        (On bytes: deleting ASCII bytes there is 3x faster than str.translate.)"""
        if self._words is None or not text.isascii():
            return True
        stripped = text.encode("ascii").translate(_ASCII_LOWER, _PUNCT_BYTES)
        for words in self._words:  # plain loops: this runs for every candidate chunk
            for word in words:
                if word not in stripped:
                    break
            else:
                return True
        return False

    def locate(self, text: str) -> tuple[int, int | None]:
        """Where in ``text`` a sentence that passes :meth:`might_be_in` can end at the earliest
        (0: no sentence can be skipped), and at most how many sentences can hold an answer (None:
        not known), so that a search for every such sentence starts late and stops early.

        Sound for ASCII text, where deleting punctuation only moves characters earlier: a sentence
        holding an answer holds the answer's first looked-for word in its stripped form, so it ends
        (in ``text``) at or after the end of that word's first occurrence in the stripped ``text``;
        and distinct sentences hold distinct occurrences, so there are at most as many of them as
        occurrences of the spellings' first words.
        """
        if self._words is None or not text.isascii():
            return 0, None
        stripped = text.encode("ascii").translate(_ASCII_LOWER, _PUNCT_BYTES)
        bound = len(text) + 1  # no answer's first word anywhere: no sentence can pass
        occurrences = 0
        for words in self._words:
            found = stripped.find(words[0])
            if found >= 0:
                bound = min(bound, found + len(words[0]))
                occurrences += stripped.count(words[0], found)
        return bound, occurrences

    def in_normalized(self, matched_text: str) -> bool:
        """Whether a text already in :func:`match_form` holds an answer."""
        return contains_any(matched_text, self.normalized)

    def in_text(self, text: str) -> bool:
        return self.might_be_in(text) and self.in_normalized(match_form(text))

    def found_in(self, matched_text: str) -> str | None:
        """The first gold answer (as written) that a text in :func:`match_form` holds, if any."""
        padded = f" {matched_text} "
        for answer, form in self.forms:
            if form and f" {form} " in padded:
                return answer
        return None


class AnswerFinder:
    """Checks corpus texts for gold answers, normalising each text at most once."""

    def __init__(self, texts: Sequence[str]):
        self._texts = texts
        self._normalized: dict[int, str] = {}

    def normalized(self, index: int) -> str:
        cached = self._normalized.get(index)
        if cached is None:
            cached = self._normalized[index] = match_form(self._texts[index])
        return cached

    def contains(self, index: int, gold: GoldAnswers) -> bool:
        # Most candidates fail the pre-check and are never normalised.
        return gold.might_be_in(self._texts[index]) and gold.in_normalized(self.normalized(index))
