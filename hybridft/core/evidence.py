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

from collections.abc import Iterable
from dataclasses import dataclass

from hybridft.core.answers import GoldAnswers, match_form
from hybridft.core.text import sentence_spans

# A candidate oracle is relevant when it holds at least this share of the question's content words.
# Measured on the real cases in tests/test_evidence.py: right oracles hold 0.33-1.0, wrong ones 0-0.2.
MIN_COVERAGE = 0.3

# Function words and the words every question is framed with: they say nothing about the topic.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "down",
        "during",
        "each",
        "either",
        "else",
        "ever",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "name",
        "named",
        "called",
        "no",
        "nor",
        "not",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "many",
        "much",
    ]
)
_SUFFIXES = (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))


def _stem(word: str) -> str:
    """Plural and verb endings folded, so "episodes" meets "episode" and "freed" meets "free"."""
    if len(word) > 4 and not word.endswith("ss"):
        for suffix, replacement in _SUFFIXES:
            if word.endswith(suffix):
                return word[: -len(suffix)] + replacement
    return word


def _stems(matched_text: str) -> set[str]:
    return {_stem(word) for word in matched_text.split()}


def question_terms(question: str, answers: Iterable[str]) -> frozenset[str]:
    """The question's content words (stemmed), less any word of a gold answer."""
    answer_words = {word for answer in answers for word in _stems(match_form(answer))}
    words = (word for word in match_form(question).split() if word not in STOPWORDS and not word.isdigit())
    return frozenset(_stem(word) for word in words) - answer_words


def matched_coverage(terms: frozenset[str], matched_text: str) -> float:
    """The share of ``terms`` that a text in :func:`match_form` holds (1.0 when there are none)."""
    if not terms:
        return 1.0
    return len(terms & _stems(matched_text)) / len(terms)


def is_relevant(terms: frozenset[str], text: str) -> bool:
    """Whether ``text`` holds at least :data:`MIN_COVERAGE` of the question's ``terms``."""
    return matched_coverage(terms, match_form(text)) >= MIN_COVERAGE


@dataclass(frozen=True)
class Quote:
    """The quoted text (verbatim in its passage), the passage's index and title, the gold answer
    it holds, how many of the question's content words it holds, and whether it was chosen by
    fallback (it holds none of them)."""

    text: str
    passage: int
    title: str
    answer: str
    held: int
    fallback: bool


def choose_quote(question: str, passages: list[tuple[str, str]], gold: GoldAnswers) -> Quote | None:
    """The sentence that holds a gold answer and most of the question's content words, over
    ``passages`` as ``(title, text)``; ties go to the earlier. A sentence holding the answer but
    none of those words is quoted with the sentence before it when that one holds some (it names
    what "it" refers to). None when no sentence holds an answer."""
    terms = question_terms(question, gold.answers)
    best: Quote | None = None
    for number, (title, text) in enumerate(passages):
        bound = gold.sentence_end_bound(text)  # sentences ending before it cannot hold an answer
        spans = list(sentence_spans(text))
        for position, (start, end) in enumerate(spans):
            if end < bound or not gold.might_be_in(sentence := text[start:end]):
                continue
            matched = match_form(sentence)
            answer = gold.found_in(matched)
            if answer is None:
                continue
            held = terms & _stems(matched)
            quote = sentence
            if position and not held:
                # The sentence before may name what this one refers to ("It ...", "The column ...").
                before_start, before_end = spans[position - 1]
                with_before = held | (terms & _stems(match_form(text[before_start:before_end])))
                if len(with_before) > len(held):
                    held, quote = with_before, text[before_start:end]
            if best is None or len(held) > best.held:
                best = Quote(quote, number, title, answer, len(held), fallback=bool(terms) and not held)
                if len(held) == len(terms):
                    return best
    return best


def supports(quotes: list[str], question: str, passages: list[str], gold: GoldAnswers) -> bool:
    """The gate a generated chain of thought passes: one of its quotes is part of (or holds) the
    quote :func:`choose_quote` picks, or holds a gold answer and as many of the question's words.
    True when no sentence of ``passages`` holds an answer or the choice is a fallback: there is
    nothing better to hold the answer to."""
    chosen = choose_quote(question, [("", text) for text in passages], gold)
    if chosen is None or chosen.fallback:
        return True
    terms = question_terms(question, gold.answers)
    target = " ".join(chosen.text.split())
    for quote in quotes:
        quote = " ".join(quote.split())
        if not quote:
            continue
        if quote in target or target in quote:
            return True
        matched = match_form(quote)
        if gold.in_normalized(matched) and len(terms & _stems(matched)) >= chosen.held:
            return True
    return False
