"""Seeded query perturbations: exact behaviour on small queries, distinctness, reproducibility."""

from __future__ import annotations

import random

import pytest

from hybridft.retrieval.variants import (
    PERTURBATIONS,
    PREFIXES,
    drop_words,
    make_variants,
    prefix,
    shuffle_clauses,
    typos,
)

QUERIES = [
    "Which river flows through Paris?",
    "How many Earth days does Mercury take to orbit the Sun?",
    "When was the Eiffel Tower, designed by Gustave Eiffel, finished in 1889?",
    "Who discovered penicillin?",
    "Paris",
]


def test_drop_words_keeps_the_question_word_names_and_numbers() -> None:
    query = "When did Marie Curie win the very first Nobel Prize in 1911 for chemistry?"
    for seed in range(20):
        variant = drop_words(query, random.Random(seed))
        assert variant is not None and variant.endswith("?")
        words = variant.rstrip("?").split()
        assert words[0] == "When"
        assert {"Marie", "Curie", "Nobel", "Prize", "1911", "win", "first", "in", "chemistry"} <= set(words)
        assert len(words) == 14 - 2  # "the" and "very", the only filler words (a fifth of 14 would be 3)
    assert drop_words("Who discovered penicillin?", random.Random(0)) is None  # too short to lose a word


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Real cases: "iPad" was dropped (lower-case first letter) and with it "do".
        ("Which chip do both iPad Pro models include?", "Which chip do iPad Pro models include?"),
        # "city" and "born" were dropped: "In which was actress Eileen Herlie?". Nothing here is filler.
        ("In which city was actress Eileen Herlie born?", None),
        # A word of the answer stays, even when it is filler elsewhere (answer: "The Who").
        ("Which band recorded the album Tommy, the Who or the Kinks?", None),
    ],
)
def test_drop_words_leaves_a_well_formed_question(query: str, expected: str | None) -> None:
    keep = frozenset({"the", "who"}) if "Tommy" in query else frozenset()
    assert {drop_words(query, random.Random(seed), keep) for seed in range(10)} == {expected}


def test_shuffle_clauses_swaps_clauses_or_moves_a_phrase_to_the_front() -> None:
    assert shuffle_clauses("Which river flows through Paris?", random.Random(0)) == "Through Paris, which river flows?"
    assert shuffle_clauses("Name the river, then the city", random.Random(0)) == "Then the city, name the river"
    assert shuffle_clauses("Photosynthesis?", random.Random(0)) is None


@pytest.mark.parametrize(
    "query",
    [
        "Which city was actress Eileen Herlie born in?",  # real case: "..., born, in?" stranded "in"
        "In which city was actress Eileen Herlie born?",  # "In" alone would move
        "Which city was Eileen Herlie born, in?",  # a one-word clause
    ],
)
def test_shuffle_clauses_never_strands_a_preposition(query: str) -> None:
    assert {shuffle_clauses(query, random.Random(seed)) for seed in range(10)} == {None}


def test_shuffle_clauses_does_not_cut_inside_a_name() -> None:
    query = "When did the Bank of America open a branch in Paris?"
    assert {shuffle_clauses(query, random.Random(seed)) for seed in range(10)} == {
        "In Paris, when did the Bank of America open a branch?"
    }


def test_typos_change_letters_of_plain_words_only() -> None:
    query = "Which famous scientist discovered penicillin in London?"
    for seed in range(20):
        variant = typos(query, random.Random(seed))
        assert variant is not None and variant != query
        before, after = query.split(" "), variant.split(" ")
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert len(changed) >= 1 and all(i not in (5, 6) for i in changed)  # "in", "London?" untouched
        for i in changed:
            assert abs(len(before[i]) - len(after[i])) <= 1


def test_prefix_leads_into_the_unchanged_query() -> None:
    variant = prefix("Who wrote Hamlet?", random.Random(3))
    assert variant is not None
    lead = variant.removesuffix("Who wrote Hamlet?")
    assert lead in PREFIXES


@pytest.mark.parametrize("query", QUERIES)
def test_variants_differ_from_the_query_and_each_other_and_repeat_by_seed(query: str) -> None:
    kinds = list(PERTURBATIONS)
    variants = make_variants(query, kinds, 3, random.Random("7:q"))
    texts = [text for _, text in variants]
    assert len(texts) == 3
    assert query not in texts and len(set(texts)) == 3
    assert make_variants(query, kinds, 3, random.Random("7:q")) == variants
    others = {tuple(make_variants(query, kinds, 3, random.Random(f"{seed}:q"))) for seed in range(10)}
    assert len(others) > 1


def test_variants_spread_over_the_kinds() -> None:
    variants = make_variants(QUERIES[1], list(PERTURBATIONS), 4, random.Random(0))
    assert sorted(kind for kind, _ in variants) == sorted(PERTURBATIONS)


def test_fewer_variants_only_when_no_kind_can_make_another() -> None:
    assert make_variants("Paris", ["drop-words", "shuffle-clauses"], 2, random.Random(0)) == []
    made = make_variants("Paris", ["shuffle-clauses", "prefix"], 2, random.Random(0))
    assert [kind for kind, _ in made] == ["prefix", "prefix"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # A preposition that ends its verb phrase ("share ... with") stays; the phrase after it moves.
        (
            "Who did Ada Lovelace write the notes with in 1843?",
            {"In 1843, who did Ada Lovelace write the notes with?"},
        ),
        ("Which side did she row for in the final?", {"In the final, which side did she row for?"}),
        # A title's connectors are part of the title: nothing to cut, never "With the Rain, who sang Dancing?".
        ("Who sang Dancing with the Rain?", {None}),
        ("Who painted The Boat on the River?", {None}),
    ],
)
def test_shuffle_clauses_never_moves_a_preposition_without_its_object_nor_cuts_a_title(
    query: str, expected: set[str | None]
) -> None:
    assert {shuffle_clauses(query, random.Random(seed)) for seed in range(10)} == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # "the" inside a title is the title's, not filler: "The Boat on River" would name another work.
        ("Who painted The Boat on the River in the end?", "Who painted The Boat on the River in end?"),
        ("Who sang Dancing with the Rain for the film?", "Who sang Dancing with the Rain for film?"),
    ],
)
def test_drop_words_keeps_the_words_of_a_title(query: str, expected: str) -> None:
    assert {drop_words(query, random.Random(seed)) for seed in range(10)} == {expected}


def test_typos_leave_a_title_alone() -> None:
    query = "Which famous singer recorded Dancing with the Rain?"
    for seed in range(20):
        variant = typos(query, random.Random(seed))
        assert variant is not None and variant.endswith("Dancing with the Rain?")


def test_make_variants_names_the_kinds_that_could_make_no_variant() -> None:
    refused: set[str] = set()
    made = make_variants("Paris", ["shuffle-clauses", "prefix"], 2, random.Random(0), refused=refused)
    assert [kind for kind, _ in made] == ["prefix", "prefix"] and refused == {"shuffle-clauses"}
    refused.clear()
    make_variants(QUERIES[1], list(PERTURBATIONS), 2, random.Random(0), refused=refused)
    assert refused == set()
