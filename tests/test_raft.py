"""RAFT builder: document counts, oracle share, hard negatives, exclusion, CoT, determinism."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from conftest import read_jsonl, write_jsonl

from hybridft.builders import raft
from hybridft.builders.common import BuildResult, split_of
from hybridft.core.answers import GoldAnswers, holds_answer
from hybridft.core.options import resolve
from hybridft.core.readers import read_documents
from hybridft.core.render import render
from hybridft.retrieval.chunking import chunk_batches, chunk_text, chunks_of_batches
from hybridft.retrieval.rankers import BM25Index

COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "olive", "coral"]
WORDS = [
    "harbour",
    "lantern",
    "meadow",
    "copper",
    "orchard",
    "signal",
    "timber",
    "quarry",
    "beacon",
    "ledger",
    "summit",
    "canal",
]


def build(options: dict[str, Any]) -> BuildResult:
    """raft.build with its records in a list, and so its counts complete."""
    result = raft.build(options)
    result.records = list(result.records)
    return result


def config(qa: Path, docs: Path, **overrides: Any) -> dict[str, Any]:
    values = {"qa": str(qa), "docs": str(docs), "out": "unused", **overrides}
    return resolve(raft.OPTIONS, values, {})


def synthetic(tmp_path: Path, n: int = 60, seed: int = 1) -> tuple[Path, Path]:
    """n documents about item k, each stating item k's colour among topic words; one question per
    item that names its topic words, so some other documents are hard negatives for it."""
    rng = random.Random(seed)
    docs, qa = [], []
    for k in range(n):
        topic = rng.sample(WORDS, 3)
        filler = " ".join(topic * 2 + [rng.choice(WORDS) for _ in range(6)])
        colour = COLOURS[k % len(COLOURS)]
        docs.append({"id": f"d{k}", "title": f"Item {k}", "text": f"Item{k} is painted {colour}. {filler}."})
        qa.append(
            {
                "id": f"q{k}",
                "question": f"What colour is the {' '.join(topic)} Item{k}?",
                "answers": [colour],
                "doc_ids": [f"d{k}"],
            }
        )
    return write_jsonl(tmp_path / "qa.jsonl", qa), write_jsonl(tmp_path / "docs.jsonl", docs)


def test_exact_record_for_a_small_input(sample: dict[str, Path]) -> None:
    result = build(config(sample["qa"], sample["docs"], distractors=2, oracle_p=1.0))
    record = result.records[0]
    assert {k: v for k, v in record.items() if k != "docs"} == {
        "id": "raft-q-paris",
        "source_id": "q-paris",
        "kind": "raft",
        "split": split_of("q-paris", 0.1),
        "question": "What is the capital of France?",
        "answers": ["Paris"],
        "cot_answer": "##Reason: The document titled 'Paris' says ##begin_quote##Paris is the capital of France."
        "##end_quote## so the answer is Paris.\n<ANSWER>: Paris",
        "oracle_present": True,
        "oracles": [{"id": "paris", "title": "Paris", "text": CORPUS_TEXT["paris"]}],
    }
    # bm25 hard negatives for "capital of France": other capitals, never the tea/coffee documents.
    distractors = {d["id"] for d in record["docs"] if not d["is_oracle"]}
    assert len(distractors) == 2
    assert distractors <= {"berlin", "rome", "madrid", "lisbon", "vienna"}
    assert [d["id"] for d in record["docs"] if d["is_oracle"]] == ["paris"]


CORPUS_TEXT = {"paris": "Paris is the capital of France. The Seine flows through Paris."}


def test_oracle_located_by_answer_and_taken_from_context(tmp_path: Path, sample: dict[str, Path]) -> None:
    qa = write_jsonl(
        tmp_path / "qa2.jsonl",
        [
            {"id": "seine", "question": "Which river flows through Paris?", "answers": ["Seine"]},
            {"id": "ctx", "question": "What is Zed?", "answers": ["a letter"], "context": "Zed is a letter."},
            {"id": "none", "question": "Who is Zorp?", "answers": ["Zorp the Great"]},
        ],
    )
    result = build(config(qa, sample["docs"], distractors=1, oracle_p=1.0))
    oracles = {r["source_id"]: r["oracles"] for r in result.records}
    assert [o["id"] for o in oracles["seine"]] == ["paris"]
    assert oracles["ctx"] == [{"id": "ctx#context", "title": "", "text": "Zed is a letter."}]
    assert "none" not in oracles
    assert result.counts["skipped"]["no_oracle"] == 1


def test_every_example_has_oracles_plus_distractors_documents(tmp_path: Path) -> None:
    qa, docs = synthetic(tmp_path)
    rows = [{"id": "multi", "question": "Items 1 and 2?", "answers": ["red"], "doc_ids": ["d1", "d2"]}]
    write_jsonl(qa, [*read_jsonl(qa), *rows])
    for strategy in ("bm25", "random"):
        result = build(config(qa, docs, distractors=3, oracle_p=0.5, distractor_strategy=strategy))
        for record in result.records:
            n_oracles = 2 if record["source_id"] == "multi" else 1
            ids = [d["id"] for d in record["docs"]]
            assert len(ids) == n_oracles + 3 == len(set(ids))
            assert sum(d["is_oracle"] for d in record["docs"]) == (n_oracles if record["oracle_present"] else 0)


def test_oracle_share_is_within_sampling_error(tmp_path: Path) -> None:
    qa, docs = synthetic(tmp_path, n=400)
    result = build(config(qa, docs, oracle_p=0.7, distractor_strategy="random", exclude_answer_from_distractors=False))
    share = sum(r["oracle_present"] for r in result.records) / len(result.records)
    assert abs(share - 0.7) < 3 * (0.7 * 0.3 / 400) ** 0.5
    assert result.counts["oracle_present"] + result.counts["oracle_dropped"] == 400


@pytest.mark.parametrize("strategy", ["bm25", "random"])
def test_no_distractor_holds_a_gold_answer_when_excluded(tmp_path: Path, strategy: str) -> None:
    qa, docs = synthetic(tmp_path)

    def leaks(records: list[dict[str, Any]]) -> int:
        count = 0
        for record in records:
            for doc in record["docs"]:
                if not doc["is_oracle"] and holds_answer(doc["text"], record["answers"]):
                    count += 1
        return count

    excluded = build(config(qa, docs, distractor_strategy=strategy)).records
    included = build(config(qa, docs, distractor_strategy=strategy, exclude_answer_from_distractors=False)).records
    assert leaks(excluded) == 0
    assert leaks(included) > 0  # each colour is shared by many documents, so the check can fail


def test_bm25_distractors_rank_above_random_ones(tmp_path: Path) -> None:
    qa, docs = synthetic(tmp_path)
    texts = {row["id"]: row["text"] for row in read_jsonl(docs)}
    ids = list(texts)
    index = BM25Index([texts[i] for i in ids])

    def mean_score(strategy: str) -> float:
        records = build(config(qa, docs, distractor_strategy=strategy, oracle_p=1.0)).records
        total, count = 0.0, 0
        for record in records:
            scores = index.scores(record["question"])
            for doc in record["docs"]:
                if not doc["is_oracle"]:
                    total += float(scores[ids.index(doc["id"])])
                    count += 1
        return total / count

    bm25, random_ = mean_score("bm25"), mean_score("random")
    assert bm25 > 1.5 * random_, (bm25, random_)


def test_cot_none_leaves_only_the_answer_line(sample: dict[str, Path]) -> None:
    record = build(config(sample["qa"], sample["docs"], cot="none", distractors=1)).records[0]
    assert record["cot_answer"] is None
    assert render(record, "prompt-completion")["completion"] == "<ANSWER>: Paris"


def test_renderings(sample: dict[str, Path]) -> None:
    record = build(config(sample["qa"], sample["docs"], distractors=1, oracle_p=0.0)).records[0]
    prompt = "".join(f"<DOCUMENT>{d['text']}</DOCUMENT>\n" for d in record["docs"]) + record["question"]
    assert render(record, "prompt-completion") == {"prompt": prompt, "completion": record["cot_answer"]}
    assert render(record, "messages") == {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": record["cot_answer"]},
        ]
    }
    hf = render(record, "raft-hf")
    assert list(hf) == ["id", "type", "question", "context", "oracle_context", "cot_answer", "instruction"]
    assert hf["oracle_context"] == CORPUS_TEXT["paris"]  # kept although the oracle was dropped
    assert hf["context"]["sentences"] == [[d["text"] for d in record["docs"]]]
    assert hf["instruction"] == prompt


def test_chunks_overlap_and_keep_formatting() -> None:
    assert chunk_text("a b c d e f g", 3, 1) == ["a b c", "c d e", "e f g"]
    assert chunk_text("one\ntwo  three", 5, 0) == ["one\ntwo  three"]
    assert chunk_text("a b c d e", 2, 0) == ["a b", "c d", "e"]


def test_long_documents_become_numbered_chunks(tmp_path: Path) -> None:
    long_text = " ".join(f"w{i}" for i in range(25)) + " The answer is zebra."
    docs = write_jsonl(
        tmp_path / "docs.jsonl",
        [{"id": "long", "text": long_text}, *({"id": f"o{i}", "text": f"other {i}"} for i in range(4))],
    )
    qa = write_jsonl(
        tmp_path / "qa.jsonl",
        [{"id": "z", "question": "What is the answer?", "answers": ["zebra"], "doc_ids": ["long"]}],
    )
    result = build(config(qa, docs, chunk_size=10, chunk_overlap=2, distractors=2, oracle_p=1.0))
    assert result.counts["chunks"] == 4 + 4  # 29 words in windows of 10 stepping 8: 4 chunks
    oracle = result.records[0]["oracles"][0]
    assert oracle["id"] == "long#3" and "zebra" in oracle["text"]


def test_unknown_doc_ids_and_too_few_documents_are_usage_errors(sample: dict[str, Path], tmp_path: Path) -> None:
    from hybridft.core.errors import UsageError

    qa = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "question": "q?", "answers": ["a"], "doc_ids": ["nope"]}])
    with pytest.raises(UsageError, match=r'bad.jsonl:1: doc_ids names "nope"'):
        build(config(qa, sample["docs"]))
    with pytest.raises(UsageError, match=r"8 chunk\(s\), but every example needs 9"):
        build(config(sample["qa"], sample["docs"], distractors=8))


def test_chunk_size_counts_tokens_of_the_given_tokenizer(tmp_path: Path) -> None:
    from hybridft.core.models import build_tiny_tokenizer

    text = "Tokenizers split uncommonwords into several pieces. " * 6
    tokenizer = build_tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tok")
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"id": "t", "text": text}, {"id": "u", "text": "other"}])
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": "q", "question": "split?", "answers": ["pieces"]}])
    documents = read_documents(docs)[0].to_batch()
    by_tokens = chunks_of_batches(chunk_batches([documents], 8, 2, str(tmp_path / "tok")))
    by_words = chunks_of_batches(chunk_batches([documents], 8, 2, None))
    assert len(by_tokens) > len(by_words)  # rare words take several tokens each
    for text_of_t in by_tokens.texts[:-1]:  # the last chunk is document "u"
        assert len(tokenizer(text_of_t, add_special_tokens=False)["input_ids"]) <= 8
        assert text_of_t in text
    result = build(config(qa, docs, chunk_size=8, chunk_overlap=2, tokenizer=str(tmp_path / "tok"), distractors=1))
    assert result.counts["chunks"] == len(by_tokens)


def test_dense_distractors_come_from_minilm_neighbours(sample: dict[str, Path]) -> None:
    result = build(config(sample["qa"], sample["docs"], distractor_strategy="dense", distractors=2, oracle_p=1.0))
    record = result.records[0]
    distractors = {d["id"] for d in record["docs"] if not d["is_oracle"]}
    assert len(distractors) == 2 and distractors <= {"berlin", "rome", "madrid", "lisbon", "vienna"}


def test_gzip_qa_sets_are_read(tmp_path: Path, sample: dict[str, Path]) -> None:
    import gzip

    path = tmp_path / "qa.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(sample["qa"].read_bytes())
    assert len(build(config(path, sample["docs"], distractors=1)).records) == 4


def test_oracle_found_beyond_the_top_ranked_chunks(tmp_path: Path) -> None:
    # 40 chunks match the question's words better than the one holding the answer.
    rows = [{"id": f"n{i}", "text": f"river river river bank {i}"} for i in range(40)]
    rows.append({"id": "answer", "text": "Quetzal is the name."})
    rows.append({"id": "bare", "text": "x"})
    docs = write_jsonl(tmp_path / "docs.jsonl", rows)
    qa = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "q", "question": "Which river bank?", "answers": ["Quetzal"]},
            {"id": "none", "question": "river bank?", "answers": ["Zyzzyva"]},
            {"id": "letter", "question": "river?", "answers": ["x"]},
        ],
    )
    # Neither oracle holds a word of its question: kept (and counted) only as asked.
    result = build(config(qa, docs, distractors=2, oracle_p=1.0, doubtful_oracles="keep"))
    oracles = {r["source_id"]: r["oracles"][0]["id"] for r in result.records}
    assert oracles == {"q": "answer", "letter": "bare"}
    assert result.quality.counts["doubtful_oracle"] == 2
    assert result.counts["skipped"]["no_oracle"] == 1


def test_extractive_cot_quotes_the_first_sentence_holding_an_answer() -> None:
    from hybridft.builders.raft_examples import extractive_cot
    from hybridft.core.evidence import Quote
    from hybridft.retrieval.chunking import Chunk

    text = "It was adopted in 1777! The U.S.A flag has stars. Its colours are red, white and blue. Red again."
    oracle = Chunk("d", "d", "Flags", text)
    assert extractive_cot("Which colours are on it?", [oracle], GoldAnswers(["red"])) == (
        "##Reason: The document titled 'Flags' says ##begin_quote##Its colours are red, white and blue."
        "##end_quote## so the answer is red.\n<ANSWER>: red",
        Quote("Its colours are red, white and blue.", 0, "Flags", "red", 1, False),
    )
    # "usa" is in "U.S.A" once punctuation is gone: found despite the dots inside the word.
    usa = extractive_cot("q", [oracle], GoldAnswers(["USA"])) or ("", None)
    assert "##begin_quote##The U.S.A flag has stars.##end_quote##" in usa[0]
    assert extractive_cot("q", [oracle], GoldAnswers(["green"])) is None


def test_locate_never_skips_nor_undercounts_a_sentence_holding_an_answer() -> None:
    """GoldAnswers.locate's bound only skips sentences that cannot hold an answer, and its count is
    never below the number that do: on random texts with punctuation inside words."""
    from hybridft.core.text import sentence_spans

    def sentences(text: str, bound: int = 0) -> list[str]:
        return [text[start:end] for start, end in sentence_spans(text) if end >= bound]

    rng = random.Random(7)
    words = ["alpha", "beta", "U.S.", "e.g.", "don't", "gamma", "x-ray", "delta", "Beta!", "alpha,beta"]
    for _ in range(500):
        text = " ".join(rng.choice(words) + rng.choice(["", "", ".", "?", ","]) for _ in range(rng.randint(1, 30)))
        gold = GoldAnswers([rng.choice(["alpha beta", "us", "xray", "delta", "dont gamma", "eg"])])
        bound, most = gold.locate(text)
        full = [s for s in sentences(text) if gold.might_be_in(s)]
        assert [s for s in sentences(text, bound) if gold.might_be_in(s)] == full, text
        holding = [s for s in full if gold.in_text(s)]
        assert most is not None and len(holding) <= most, text


def test_an_example_does_not_depend_on_the_other_rows(tmp_path: Path) -> None:
    qa, docs = synthetic(tmp_path)
    options = {"distractors": 3, "oracle_p": 0.5, "distractor_strategy": "random"}
    whole = {r["id"]: r for r in build(config(qa, docs, **options)).records}
    fewer_qa = write_jsonl(tmp_path / "fewer.jsonl", read_jsonl(qa)[::-3])
    fewer = build(config(fewer_qa, docs, **options)).records
    assert len(fewer) == 20
    assert all(record == whole[record["id"]] for record in fewer)


@pytest.mark.parametrize("strategy", ["bm25", "random"])
def test_no_distractors_builds_every_row_with_its_oracle_alone(tmp_path: Path, strategy: str) -> None:
    qa, docs = synthetic(tmp_path)
    result = build(config(qa, docs, distractors=0, oracle_p=1.0, distractor_strategy=strategy))
    records = list(result.records)
    assert len(records) == len(read_jsonl(qa)) and result.counts["skipped"]["not_enough_distractors"] == 0
    assert all([d["is_oracle"] for d in r["docs"]] == [True] for r in records)
