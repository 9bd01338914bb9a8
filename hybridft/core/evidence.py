"""Whether a passage that holds an answer is evidence for the question, and which of its
sentences to quote.

A string match alone makes wrong oracles ("Cyrus", the Persian king, found in a passage about
Miley Cyrus; "291" episodes found in census figures) and wrong quotes (the first sentence holding
"Back in Time" is about a book titled "A Walk Back in Time"). Both are judged by the same measure:
the share of the question's content words — its words that are not function words and not words
of the answer — that the passage (or sentence) holds, compared in :func:`~core.answers.match_form`
with plural and verb endings folded. docs/decisions.md records why this measure and threshold.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import NamedTuple

from hybridft.core.answers import GoldAnswers, answer_forms, match_form
from hybridft.core.text import sentence_spans

# A candidate oracle is relevant when it holds at least this share of the question's content words.
# Measured on the cases in tests/test_evidence.py: right oracles hold 0.33-1.0, wrong ones 0.
MIN_COVERAGE = 0.3

# Function words and the words every question is framed with: they say nothing about the topic.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be been before being
    below between both but by can could did do does doing done down during each either else ever
    for from further had has have having he her here hers him his how i if in into is it its itself
    just me more most my name named called no nor not of off on once only or other our out over own
    same she should so some such than that the their them then there these they this those through
    to too under until up very was we were what when where which while who whom whose why will with
    would you your many much""".split()  # noqa: SIM905 (a list of 140 one-word strings reads worse)
)
_SUFFIXES = (("ies", "y"), ("ing", ""), ("ed", ""), ("s", ""))


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """Plural and verb endings folded, so "episodes" meets "episode" and "freed" meets "free"."""
    if len(word) > 4 and not word.endswith(("ss", "us", "is")):
        for suffix, replacement in _SUFFIXES:
            if word.endswith(suffix):
                return word[: -len(suffix)] + replacement
    return word


def _stems(matched_text: str) -> set[str]:
    return set(map(_stem, matched_text.split()))


def question_terms(question: str, answers: Iterable[str]) -> frozenset[str]:
    """The question's content words (stemmed), less any word of a gold answer."""
    return _terms(question, [form for answer in answers for form in answer_forms(answer)])


def _terms(question: str, answer_forms: Iterable[str]) -> frozenset[str]:
    """:func:`question_terms` with the answers already in :func:`match_form`."""
    words = (word for word in match_form(question).split() if word not in STOPWORDS and not word.isdigit())
    answer_words = {_stem(word) for form in answer_forms for word in form.split()}
    return frozenset(map(_stem, words)) - answer_words


def _less_title(terms: frozenset[str], title: str) -> frozenset[str]:
    """``terms`` less the words of a passage's title. (Most titles share no word with the
    question: a substring test on the lowercased title passes them over before normalising.)"""
    lowered = title.lower()
    if not any(term in lowered for term in terms):
        return terms
    return terms - _title_stems(title)


@functools.lru_cache(maxsize=1 << 12)
def _title_stems(title: str) -> frozenset[str]:
    return frozenset(_stems(match_form(title)))


def matched_coverage(terms: frozenset[str], matched_text: str) -> float:
    """The share of ``terms`` that a text in :func:`match_form` holds (1.0 when there are none)."""
    if not terms:
        return 1.0
    return len(terms & _stems(matched_text)) / len(terms)


def is_relevant(terms: frozenset[str], matched_text: str) -> bool:
    """Whether a passage (in :func:`match_form`) holds at least :data:`MIN_COVERAGE` of the
    question's ``terms``: whether it can be the question's oracle."""
    return matched_coverage(terms, matched_text) >= MIN_COVERAGE


class Quote(NamedTuple):
    """The quoted text (verbatim in its passage), the passage's index and title, the gold answer
    it holds, how many of the question's content words it holds (None when it was the only
    sentence holding an answer: nothing to choose, nothing scored), and whether it was chosen by
    fallback (several sentences hold an answer, none a word of the question: the first is quoted).
    A NamedTuple: one is made per example, cheaply."""

    text: str
    passage: int
    title: str
    answer: str
    held: int | None
    fallback: bool


class _Candidate(NamedTuple):
    """A sentence holding a gold answer: its passage, span, the span before it, match form, answer."""

    passage: int
    start: int
    end: int
    before: tuple[int, int] | None
    matched: str
    answer: str


def _candidates(passages: list[tuple[str, str]], gold: GoldAnswers) -> list[_Candidate]:
    found = []
    for number, (_, text) in enumerate(passages):
        # Sentences ending before ``bound`` cannot hold an answer, nor more than ``most`` of them.
        bound, most = gold.locate(text)
        if most == 0:
            continue
        before: tuple[int, int] | None = None
        for start, end in sentence_spans(text):
            span, before = before, (start, end)
            if end < bound or not gold.might_be_in(sentence := text[start:end]):
                continue
            matched = match_form(sentence)
            answer = gold.found_in(matched)
            if answer is None:
                continue
            found.append(_Candidate(number, start, end, span, matched, answer))
            if most is not None:
                most -= 1
                if most == 0:
                    break
    return found


def choose_quote(question: str, passages: list[tuple[str, str]], gold: GoldAnswers) -> Quote | None:
    """Of the sentences of ``passages`` (``(title, text)``) that hold a gold answer, the one that
    holds most of the question's content words; ties go to the earlier. One holding the answer but
    none of those words is quoted with the sentence before it when that one holds some (it names
    what "it" refers to). None when no sentence holds an answer."""
    found = _candidates(passages, gold)
    if len(found) <= 1:  # the only evidence there is: quoted as it is
        return Quote(*_quoted(passages, found[0]), None, False) if found else None
    question_words = _terms(question, gold.normalized)
    best: Quote | None = None
    for candidate in found:
        title, text = passages[candidate.passage]
        # The title names what the whole passage is about ("she" in a later sentence): its words
        # do not tell one sentence from another.
        terms = _less_title(question_words, title)
        held = terms & _stems(candidate.matched)
        start = candidate.start
        if candidate.before is not None and terms and not held:
            # The sentence before may name what this one refers to ("It ...", "The column ...").
            held = terms & _stems(match_form(text[candidate.before[0] : candidate.before[1]]))
            if held:
                start = candidate.before[0]
        if best is None or len(held) > (best.held or 0):
            quote = text[start : candidate.end]
            best = Quote(quote, candidate.passage, title, candidate.answer, len(held), bool(terms) and not held)
            if len(held) == len(terms):
                break
    return best


def _quoted(passages: list[tuple[str, str]], candidate: _Candidate) -> tuple[str, int, str, str]:
    title, text = passages[candidate.passage]
    return text[candidate.start : candidate.end], candidate.passage, title, candidate.answer


def supports(quotes: list[str], question: str, passages: list[tuple[str, str]], gold: GoldAnswers) -> bool:
    """The gate a generated chain of thought passes: one of its quotes is part of (or holds) the
    quote :func:`choose_quote` picks, or holds a gold answer and as many of the question's words.
    ``passages`` are ``(title, text)``. True when no sentence of them holds an answer or the choice
    is a fallback: there is nothing better to hold the answer to."""
    chosen = choose_quote(question, passages, gold)
    if chosen is None or chosen.fallback:
        return True
    terms = _less_title(_terms(question, gold.normalized), passages[chosen.passage][0])
    held = len(terms & _stems(match_form(chosen.text))) if chosen.held is None else chosen.held
    target = " ".join(chosen.text.split())
    for quote in quotes:
        quote = " ".join(quote.split())
        if not quote:
            continue
        if quote in target or target in quote:
            return True
        matched = match_form(quote)
        if gold.in_normalized(matched) and len(terms & _stems(matched)) >= held:
            return True
    return False
