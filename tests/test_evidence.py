"""Whether a passage holding the answer is evidence for the question (oracle checks), which of its
sentences is quoted, and the same choice as the gate of generated chains of thought. The cases are
the kinds found on Wikipedia passages with Natural Questions rows (issue 18), written anew here."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import read_jsonl, write_jsonl

from hybridft.builders import invar, raft
from hybridft.core.answers import GoldAnswers, match_form
from hybridft.core.evidence import MIN_COVERAGE, choose_quote, is_relevant, question_terms, supports
from hybridft.core.options import resolve
from hybridft.generators.tasks import parse_verdict

# (question, answer, a passage that answers it, a passage that only holds the answer string)
ORACLES = [
    (
        "who freed the jews from babylonian captivity",
        "Cyrus",
        "Cyrus the Great conquered Babylon in 539 BC and let the Jews held in captivity there return to Judah.",
        "Miley Cyrus is an American singer and actress who rose to fame on a television series for children.",
    ),
    (
        "how many episodes of dragon ball z are there",
        "291",
        "Dragon Ball Z is a Japanese anime series that aired from 1989 to 1996 and ran for 291 episodes.",
        "As of the 2010 census the village had a population of 291, down from 340 ten years earlier.",
    ),
    (
        "who sang i wanna dance with somebody",
        "Whitney Houston",
        "I Wanna Dance with Somebody is a song recorded by the American singer Whitney Houston in 1987.",
        "Whitney Houston Elementary School in Newark serves about four hundred pupils.",
    ),
    (
        "when did the eiffel tower open to the public",
        "1889",
        "The Eiffel Tower was opened to the public on 31 March 1889 after two years of construction.",
        "The 1889 flood in Johnstown killed more than two thousand people in Pennsylvania.",
    ),
    (
        "what is the capital city of australia",
        "Canberra",
        "Canberra is the capital city of Australia and lies in its own federal territory.",
        "The Canberra-class ships are amphibious assault vessels of the Royal Navy of the country.",
    ),
    (
        "who played the voice of woody in toy story",
        "Tom Hanks",
        "In the film Toy Story, Tom Hanks provides the voice of Sheriff Woody, a pull-string cowboy doll.",
        "Tom Hanks won the Academy Award for Best Actor for Philadelphia in 1994.",
    ),
    (
        "how many moons does mars have",
        "two",
        "Mars has two small moons, Phobos and Deimos, which may be captured asteroids.",
        "The band released two albums before splitting up in 1985.",
    ),
    (
        "who wrote the novel pride and prejudice",
        "Jane Austen",
        "Pride and Prejudice is an 1813 novel of manners written by Jane Austen.",
        "The Jane Austen Centre in Bath is a permanent exhibition about her years in the city.",
    ),
    (
        "what is the longest river in africa",
        "Nile",
        "The Nile, flowing north for about 6,650 km, is the longest river in Africa.",
        "Nile Rodgers is an American record producer and guitarist who co-founded a disco band.",
    ),
    (
        "who is the lead singer of coldplay",
        "Chris Martin",
        "Chris Martin fronts the British rock band Coldplay as its vocalist and pianist.",
        "Chris Martin is a former cricketer who played for New Zealand.",
    ),
    (
        "in which year did the titanic sink",
        "1912",
        "RMS Titanic sank in the North Atlantic Ocean on 15 April 1912 after striking an iceberg.",
        "The 1912 Summer Olympics were held in Stockholm, Sweden.",
    ),
]


@pytest.mark.parametrize(("question", "answer", "right", "wrong"), ORACLES, ids=[c[1] for c in ORACLES])
def test_an_oracle_must_be_about_the_question(question: str, answer: str, right: str, wrong: str) -> None:
    terms = question_terms(question, [answer])
    assert GoldAnswers([answer]).in_text(right) and GoldAnswers([answer]).in_text(wrong)
    assert is_relevant(terms, match_form(right))
    assert not is_relevant(terms, match_form(wrong))


def test_question_terms() -> None:
    assert question_terms("How many episodes of Dragon Ball Z are there?", ["291"]) == {
        "episode",
        "dragon",
        "ball",
        "z",
    }
    # Words of the answer are not evidence: every candidate holds them.
    assert question_terms("Which Cyrus conquered Babylon?", ["Cyrus"]) == {"conquer", "babylon"}
    assert MIN_COVERAGE == 0.3


# --- quotes -------------------------------------------------------------------------------------

COLUMN = (
    "Helen Marsh published the memoir A Walk Back in Time in 1990. "
    "For twenty years she also wrote the weekly newspaper column Back in Time for the Daily Courier. "
    "She died in 2004."
)


def test_the_quote_is_the_sentence_that_answers_the_question() -> None:
    # real: the first sentence holding "Back in Time" is about a book; the next one is the column.
    quote = choose_quote(
        "What was the newspaper column written by Helen Marsh?",
        [("Helen Marsh", COLUMN)],
        GoldAnswers(["Back in Time"]),
    )
    assert quote is not None and not quote.fallback
    assert (
        quote.text == "For twenty years she also wrote the weekly newspaper column Back in Time for the Daily Courier."
    )
    # The book question quotes the book's sentence.
    book = choose_quote(
        "Which memoir did Helen Marsh publish?", [("Helen Marsh", COLUMN)], GoldAnswers(["A Walk Back in Time"])
    )
    assert book is not None and book.text.startswith("Helen Marsh published the memoir")


def test_a_pronoun_sentence_is_quoted_with_the_sentence_naming_its_subject() -> None:
    text = "The Eiffel Tower stands in Paris. It opened in 1889. Paris held a world fair in 1889."
    quote = choose_quote("When did the Eiffel Tower open?", [("", text)], GoldAnswers(["1889"]))
    assert quote is not None and quote.text == "It opened in 1889."  # "open" is in it: no need for more
    quote = choose_quote("In which year was the Eiffel Tower finished?", [("", text)], GoldAnswers(["1889"]))
    assert quote is not None and quote.text == "The Eiffel Tower stands in Paris. It opened in 1889."


def test_a_choice_without_any_question_word_is_a_fallback() -> None:
    text = "Red is warm. Blue too. Blue again."
    quote = choose_quote("Who?", [("", text)], GoldAnswers(["blue"]))
    assert quote is not None and quote.text == "Blue too." and not quote.fallback  # no terms to hold
    quote = choose_quote("Which sky colour?", [("", text)], GoldAnswers(["blue"]))
    assert quote == ("Blue too.", 0, "", "blue", 0, True)  # two sentences, neither about the sky
    # The only sentence holding the answer is the quote: there was no choice to fall back from.
    assert choose_quote("Which sky colour?", [("", "Red is warm. Blue too.")], GoldAnswers(["blue"])) == (
        "Blue too.",
        0,
        "",
        "blue",
        None,
        False,
    )
    assert choose_quote("Which sky colour?", [("", "Red is warm.")], GoldAnswers(["blue"])) is None


def test_generated_quotes_must_be_the_evidence() -> None:
    gold = GoldAnswers(["Back in Time"])
    question = "What was the newspaper column written by Helen Marsh?"
    oracle = [("Helen Marsh", COLUMN)]
    assert supports(["she also wrote the weekly newspaper column Back in Time"], question, oracle, gold)
    assert not supports(["Helen Marsh published the memoir A Walk Back in Time in 1990."], question, oracle, gold)
    assert supports(["Anything at all."], question, [("", "No sentence holds the answer.")], gold)


def test_judge_verdicts() -> None:
    assert parse_verdict("Yes.") is True and parse_verdict('"no", it does not') is False
    assert parse_verdict("**Yes**") is True and parse_verdict("Maybe") is None and parse_verdict("yesterday") is None


# --- through the builders -----------------------------------------------------------------------


def corpus_and_questions(tmp_path: Path) -> tuple[Path, Path]:
    rows = []
    for n, (_, _, right, wrong) in enumerate(ORACLES):
        rows += [{"id": f"right{n}", "text": right}, {"id": f"wrong{n}", "text": wrong}]
    docs = write_jsonl(tmp_path / "docs.jsonl", rows)
    # Each question whose right passage is left out has only the wrong one to be found.
    questions = [
        {"id": f"q{n}", "question": question, "answers": [answer]} for n, (question, answer, _, _) in enumerate(ORACLES)
    ]
    return docs, write_jsonl(tmp_path / "qa.jsonl", questions)


def raft_config(qa: Path, docs: Path, tmp_path: Path, **options: object) -> dict:
    values = {"qa": str(qa), "docs": str(docs), "distractors": 2, "out": str(tmp_path / "o"), **options}
    config = resolve(raft.OPTIONS, values, {})
    assert raft.check(config) == []
    return config


@pytest.mark.parametrize("policy", ["skip", "keep", "flag"])
def test_doubtful_oracles_are_skipped_kept_or_flagged_and_always_counted(tmp_path: Path, policy: str) -> None:
    docs, qa = corpus_and_questions(tmp_path)
    # Without the right passages, every oracle found by answer search is doubtful.
    rows = [r for r in read_jsonl(docs) if r["id"].startswith("wrong")] + [
        {"id": f"filler{i}", "text": f"Filler text {i}."} for i in range(3)
    ]
    docs = write_jsonl(tmp_path / "wrong_only.jsonl", rows)
    result = raft.build(raft_config(qa, docs, tmp_path, doubtful_oracles=policy))
    records = list(result.records)
    assert result.quality.counts["doubtful_oracle"] == len(ORACLES)
    assert len(result.quality.flagged["doubtful_oracle"]) == len(ORACLES)
    if policy == "skip":
        assert records == [] and result.counts["skipped"]["doubtful_oracle"] == len(ORACLES)
    else:
        assert len(records) == len(ORACLES) and result.counts["skipped"]["doubtful_oracle"] == 0
        assert all(r.get("oracle_doubtful") is (True if policy == "flag" else None) for r in records)
        assert all(r["oracles"][0]["id"].startswith("wrong") for r in records)


def test_the_relevant_passage_is_the_oracle_when_both_hold_the_answer(tmp_path: Path) -> None:
    docs, qa = corpus_and_questions(tmp_path)
    result = raft.build(raft_config(qa, docs, tmp_path, oracle_p=1.0))
    records = list(result.records)
    assert {r["source_id"]: r["oracles"][0]["id"] for r in records} == {
        f"q{n}": f"right{n}" for n in range(len(ORACLES))
    }
    assert result.quality.counts["doubtful_oracle"] == 0
    # The wrong passages hold the answers too: never a distractor, and counted when passed over.
    for record in records:
        assert not any(d["id"].startswith("wrong") and d["id"][5:] == record["source_id"][1:] for d in record["docs"])


@pytest.mark.parametrize("policy", ["skip", "keep", "flag"])
def test_invar_positives_found_by_answer_get_the_same_checks(tmp_path: Path, policy: str) -> None:
    docs, qa = corpus_and_questions(tmp_path)
    values = {"qa": str(qa), "docs": str(docs), "negatives": 2, "teacher": "none", "n_variants": 0, "out": "unused"}

    def build(values: dict) -> invar.BuildResult:
        config = resolve(invar.OPTIONS, {**values, "doubtful_oracles": policy}, {})
        assert invar.check(config) == []
        return invar.build(config)

    result = build(values)
    # The relevant passage is the positive; the one only holding the answer string is not a negative.
    assert {r["source_id"]: [p["id"] for p in r["positives"]] for r in result.records} == {
        f"q{n}": [f"right{n}"] for n in range(len(ORACLES))
    }
    assert result.quality.counts["doubtful_oracle"] == 0
    assert not any(n["id"][5:] == r["source_id"][1:] for r in result.records for n in r["negatives"])
    # Without the right passages every positive is doubtful: skipped, kept or flagged, always counted.
    wrong = [r for r in read_jsonl(docs) if r["id"].startswith("wrong")]
    filler = [{"id": f"filler{i}", "text": f"Filler text {i}."} for i in range(3)]
    values["docs"] = str(write_jsonl(tmp_path / "wrong_only.jsonl", wrong + filler))
    result = build(values)
    assert result.quality.counts["doubtful_oracle"] == len(ORACLES)
    if policy == "skip":
        assert result.records == []
    else:
        assert len(result.records) == len(ORACLES)
        assert all(r.get("oracle_doubtful") is (True if policy == "flag" else None) for r in result.records)
