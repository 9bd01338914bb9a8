"""The answer matcher (hybridft.core.answers): the ways one answer is written match, a number inside
a longer number or a name inside a longer word does not; SQuAD's normalisation stays as it was for
exact_match / f1. The "real" rows are the cases found on Wikipedia passages (issue 18), rewritten
in our own words."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import write_jsonl

from hybridft.builders import invar, raft
from hybridft.core.answers import GoldAnswers, answer_forms, holds_answer, match_form, normalize_answer
from hybridft.core.options import resolve
from hybridft.evaluation.metrics import raft_scores

# (gold answer, text, holds it?)
CASES = [
    # real: a hyphenated name in the passage, spaced in the gold answer
    ("Isotta Fraschini Delta", "The Isotta-Fraschini Delta R.C.40 was a V12 aircraft engine.", True),
    # real: a number found in unrelated figures must be the whole number
    ("291", "The village had 1,291 residents and 291 households.", True),
    ("291", "The village had 1,291 residents.", False),
    ("291", "Turnout was 29.1 percent.", False),
    ("291", "Code 2910 applies.", False),
    ("29.1", "Turnout was 29.1 percent.", True),
    # real: a name inside another word is not the name
    ("Cyrus", "Cyrusville is a hamlet in Ohio.", False),
    ("Cyrus", "Miley Cyrus released an album.", True),
    # hyphens and dashes: as spaces, or as nothing
    ("Jay-Z", "Jay Z performed twice.", True),
    ("X-ray", "An xray was taken.", True),
    ("xray", "An x-ray was taken.", True),
    ("1990", "The war (1990–1995) ended.", True),  # en dash between numbers
    ("Rolls Royce", "A Rolls—Royce engine.", True),  # em dash
    # unicode forms: NFKC (full-width digits, ligatures), diacritics, case folding
    ("123", "Route １２３ is closed.", True),
    ("five", "The ﬁve points.", True),
    ("Beyonce", "Beyoncé sang the anthem.", True),
    ("Mötley Crüe", "Motley Crue toured in 1987.", True),
    ("Straße", "Die Strasse ist lang.", True),
    ("Zoë", "ZOË won.", True),
    # & and "and"
    ("AT&T", "AT and T reported earnings.", True),
    ("Simon and Garfunkel", "Simon & Garfunkel reunited.", True),
    ("A&E", "The A&E network aired it.", True),
    # thousands separators
    ("1234", "It holds 1,234 seats.", True),
    ("1,234", "It holds 1234 seats.", True),
    ("1\u202f234", "It holds 1234 seats.", True),  # narrow no-break space
    ("1234", "It holds 1\u00a0234 seats.", True),  # no-break space
    ("12,345,678", "A total of 12345678 votes.", True),
    # SQuAD's rules still apply: articles, punctuation, case
    ("The Beatles", "beatles, of course", True),
    ("U.S.A.", "the USA flag", True),
    ("Paris", "Parisian cafes", False),
    ("red", "Reddish soil", False),
]


@pytest.mark.parametrize(("answer", "text", "expected"), CASES)
def test_written_variants_of_an_answer(answer: str, text: str, expected: bool) -> None:
    assert holds_answer(text, [answer]) is expected
    gold = GoldAnswers([answer])
    assert gold.in_text(text) is expected
    if expected:  # the pre-check never rules out a text that holds the answer
        assert gold.might_be_in(text)


def test_match_forms() -> None:
    assert match_form("The Isotta-Fraschini Delta") == "isotta fraschini delta \x02 isottafraschini delta"
    assert answer_forms("Jay-Z") == ["jay z", "jayz"]
    assert match_form("29.1% of 1,234 & more") == "29.1 of 1234 and more"
    assert match_form("Beyoncé – Crazy in Love") == "beyonce crazy in love"  # a spaced dash: one spelling


def test_squad_normalisation_is_unchanged_for_exact_match_and_f1() -> None:
    # The papers' EM/F1: hyphens are deleted, diacritics stay, as in SQuAD's evaluation script.
    assert normalize_answer("Isotta-Fraschini") == "isottafraschini"
    assert normalize_answer("Beyoncé") == "beyoncé"
    scores = raft_scores("<ANSWER>: Isotta-Fraschini Delta", ["Isotta Fraschini Delta"], [])
    assert scores["exact_match"] == 0.0  # comparable with the papers...
    assert scores["contains"] == 1.0  # ...while `contains` uses the matcher


def test_the_pre_check_is_sound_on_random_texts() -> None:
    """might_be_in never rules out a text that holds an answer."""
    rng = random.Random(3)
    pieces = ["alpha", "beta", "x-ray", "1,234", "29.1", "A&B", "U.S.", "and", "the", "-", "–", "é", "Beyoncé", "co-op"]
    answers = ["alpha beta", "xray", "x ray", "1234", "29.1", "a and b", "us", "beyonce", "coop", "&", "and"]
    for _ in range(2000):
        text = " ".join(rng.choice(pieces) + rng.choice(["", "", ".", ",", "!"]) for _ in range(rng.randint(1, 12)))
        gold = GoldAnswers([rng.choice(answers)])
        if gold.in_normalized(match_form(text)):
            assert gold.might_be_in(text), (gold.answers, text)


def test_a_passage_writing_the_answer_otherwise_is_never_a_distractor_or_negative(tmp_path: Path) -> None:
    # The real case through the builders: the hyphenated passage held the answer and became a RAFT
    # distractor and an Invar-RAG hard negative.
    docs = [
        {"id": "oracle", "text": "The Isotta Fraschini Delta was an inverted V12 engine built in Milan."},
        {"id": "hyphen", "text": "The Isotta-Fraschini Delta R.C.40 engine powered several fighters."},
    ] + [{"id": f"engine{n}", "text": f"The Delta {n} engine was built by another maker in Turin."} for n in range(6)]
    qa = [{"id": "q1", "question": "Which engine was built in Milan?", "answers": ["Isotta Fraschini Delta"]}]
    qa[0]["doc_ids"] = ["oracle"]
    files = {"qa": str(write_jsonl(tmp_path / "qa.jsonl", qa)), "docs": str(write_jsonl(tmp_path / "d.jsonl", docs))}
    raft_config = resolve(raft.OPTIONS, {**files, "distractors": 4, "oracle_p": 1.0, "out": "unused"}, {})
    (record,) = list(raft.build(raft_config).records)
    assert "hyphen" not in {d["id"] for d in record["docs"]} and len(record["docs"]) == 5
    invar_values = {**files, "negatives": 4, "teacher": "none", "n_variants": 0, "out": "unused"}
    invar_config = resolve(invar.OPTIONS, invar_values, {})
    assert invar.check(invar_config) == []
    (row,) = invar.build(invar_config).records
    assert "hyphen" not in {n["id"] for n in row["negatives"]} and len(row["negatives"]) == 4
