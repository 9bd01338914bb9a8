"""Trainer rows read, checked and shaped through `datasets` (hybridft.training.rows): errors name
file:line, several processes give the same rows, a second load reuses the cache, and what run.json
counts from the columns is exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_TRAINING, write_jsonl

from hybridft.cli import finetune as finetune_cli
from hybridft.cli.common import run_guarded
from hybridft.core.errors import InputError, UsageError
from hybridft.core.options import resolve
from hybridft.training.config import OPTIONS
from hybridft.training.invar_retriever import load_retrieval_data
from hybridft.training.sft_data import load_sft_data


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own datasets cache, so "hit the cache" means this test's own load."""
    import datasets

    cache = tmp_path / "hf-datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def chat(question: str, answer: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], **extra}


def sft_folder(folder: Path, train: list[Any], evaluation: list[Any] | None = None) -> Path:
    """A build-data folder; rows that are strings are written as they are (bad lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"kind": "mix", "options": {"format": "messages"}}))
    for name, rows in (("train", train), ("eval", evaluation)):
        if rows is not None:
            lines = (row if isinstance(row, str) else json.dumps(row) for row in rows)
            (folder / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def retrieval_row(n: int) -> dict[str, Any]:
    row: dict[str, Any] = {"query": f"where is item {n}?", "positives": [f"item {n} is in room {n}"]}
    if n % 2:
        row |= {"negatives": [f"item {n + 1} is in room {n + 1}"], "teacher_scores": [0.9, 0.1 * n]}
    if n % 3:
        row["variants"] = [f"item {n}: where?"]
    return row


def test_a_bad_row_on_a_line_of_eval_jsonl_is_exit_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [chat(f"q{n}", f"a{n}") for n in range(4)]
    bad_eval = [chat("q", "a"), "", {"messages": [{"role": "user", "content": "no answer"}]}, "{not json"]
    folder = sft_folder(tmp_path / "data", good, bad_eval)
    with pytest.raises(InputError) as caught:
        load_sft_data(folder)
    eval_path = folder / "eval.jsonl"
    assert caught.value.messages == [
        f"{eval_path}:3: the last message must be the assistant's answer, after at least one other turn",
        f"{eval_path}:4: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
    ]
    out = tmp_path / "run"
    code = run_guarded(finetune_cli.main, ["--model", "tiny", "--data", str(folder), "--out", str(out)])
    assert code == 2 and f"{eval_path}:3: the last message" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()  # bad data is refused before --out is touched

    import gzip

    cut = tmp_path / "cut.jsonl.gz"  # a .gz cut short: its rows are read while datasets stores them
    cut.write_bytes(gzip.compress("".join(json.dumps(chat(f"q{n}", "a")) + "\n" for n in range(5000)).encode())[:4000])
    with pytest.raises(InputError, match=f"{cut}: cannot read: Compressed file ended"):
        load_sft_data(cut)

    retrieval = tmp_path / "retrieval"
    write_jsonl(retrieval / "train.jsonl", [retrieval_row(1), {"query": "q", "positives": []}])
    (retrieval / "manifest.json").write_text(json.dumps({"options": {"format": "retrieval"}}))
    with pytest.raises(InputError, match=f'{retrieval / "train.jsonl"}:2: field "positives" must not be empty'):
        load_retrieval_data(retrieval)


def test_two_processes_give_the_same_rows_as_one(tmp_path: Path) -> None:
    train = [chat(f"question {n}", f"answer {n}", source=["raft", "rog"][n % 2]) for n in range(40)]
    train[7] = chat("a <PATH> b </PATH>", "c")
    lines = [json.dumps(row) for row in train]
    lines[12:12] = ["", "   "]  # blank lines are skipped, and later line numbers still count them
    folder = sft_folder(tmp_path / "data", lines, [chat("e", "f")])
    one, two = load_sft_data(folder, 1), load_sft_data(folder, 2)
    assert one.train.to_list() == two.train.to_list() and len(one.train) == 40
    assert one.train[7] == {
        "prompt": [{"role": "user", "content": "a <PATH> b </PATH>"}],
        "completion": [{"role": "assistant", "content": "c"}],
    }
    assert (one.markers, one.sources) == (two.markers, two.sources) == ({"<PATH>", "</PATH>"}, {"raft": 20, "rog": 19})

    retrieval = tmp_path / "retrieval"
    write_jsonl(retrieval / "train.jsonl", [retrieval_row(n) for n in range(30)])
    (retrieval / "manifest.json").write_text(json.dumps({"options": {"format": "retrieval"}}))
    first, second = load_retrieval_data(retrieval, 1), load_retrieval_data(retrieval, 2)
    assert first.train.to_list() == second.train.to_list()
    assert first.train[0] == {
        "query": "where is item 0?",
        "positives": ["item 0 is in room 0"],
        "negatives": [],
        "variants": [],
        "teacher_scores": None,
    }
    assert (first.teacher_rows, first.variant_rows, first.eval) == (15, 20, None)

    (folder / "eval.jsonl").write_text("")  # an empty file is no eval split, and an empty train split an error
    assert load_sft_data(folder).eval is None
    (folder / "train.jsonl").write_text("\n")
    with pytest.raises(UsageError, match="train.jsonl: no training rows"):
        load_sft_data(folder)


def test_a_second_load_reuses_the_cache_and_an_edited_file_is_read_again(tmp_path: Path) -> None:
    folder = sft_folder(tmp_path / "data", [chat(f"q{n}", f"a{n}") for n in range(6)])
    first = load_sft_data(folder)
    files = [f["filename"] for f in first.train.cache_files]
    assert files and all(Path(f).is_file() for f in files)
    written = {f: Path(f).stat().st_mtime_ns for f in files}
    second = load_sft_data(folder)
    assert second.train._fingerprint == first.train._fingerprint
    assert [f["filename"] for f in second.train.cache_files] == files
    assert {f: Path(f).stat().st_mtime_ns for f in files} == written  # reused, not written again

    with (folder / "train.jsonl").open("a") as handle:
        handle.write(json.dumps(chat("q6", "a6")) + "\n")
    third = load_sft_data(folder)
    assert len(third.train) == 7 and third.train._fingerprint != first.train._fingerprint


def test_an_edit_that_keeps_size_and_mtime_is_read_again(tmp_path: Path) -> None:
    """As after `cp -p` or `rsync -t` of a changed file: the same size, the old mtime."""
    import os

    folder = sft_folder(tmp_path / "data", [chat(f"q{n}", "AAAA") for n in range(3)])
    train = folder / "train.jsonl"
    first = load_sft_data(folder)
    before = train.stat()
    train.write_text(train.read_text().replace("AAAA", "BBBB"))
    os.utime(train, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert train.stat().st_size == before.st_size and train.stat().st_mtime_ns == before.st_mtime_ns
    second = load_sft_data(folder)
    assert first.train[0]["completion"][0]["content"] == "AAAA"
    assert second.train[0]["completion"][0]["content"] == "BBBB"


def test_run_json_counts_are_exact_for_a_hand_made_folder(tmp_path: Path) -> None:
    from hybridft.training.sft import train

    long_question = " ".join(["word"] * 400)
    rows = [
        chat("What is the capital of France?", "Paris", source="raft"),
        chat("Which river flows through Paris?", "The Seine", source="rog"),
        chat(long_question, "too long", source="raft"),
        chat("Path: <PATH> Paris <SEP> France </PATH>", "Paris", source="raft"),
        chat("What is brewed from leaves?", "Tea", source=7),  # not a name: not counted
    ]
    folder = sft_folder(tmp_path / "data", rows, [chat("Capital of Italy?", "Rome"), chat(long_question, "x")])
    seen: dict[str, Any] = {}

    class Look:
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen["labels"] = kwargs["train_dataloader"].dataset["labels"]

        def __getattr__(self, name: str) -> Any:
            return (lambda *args, **kwargs: None) if name.startswith("on_") else super().__getattribute__(name)

    config = resolve(OPTIONS, {**TINY_TRAINING, "data": str(folder), "out": str(tmp_path / "run")}, {})
    run = train({**config, "max_length": 256, "max_steps": 1}, extra_callbacks=[Look()])
    data = run["data"]
    assert (data["train_rows"], data["eval_rows"]) == (4, 1)
    assert run["skipped"] == {"train_too_long": 1, "eval_too_long": 1}
    assert list(data["sources"].items()) == [("raft", 3), ("rog", 1)]
    assert sorted(run["added_tokens"]) == ["</PATH>", "<PATH>", "<SEP>"]
    assert data["answer_tokens_per_epoch"] == sum(sum(1 for t in labels if t != -100) for labels in seen["labels"])
    assert data["answer_tokens_per_epoch"] > 4


def test_retriever_truncation_counts_match_counting_every_text_at_once(tmp_path: Path) -> None:
    """Queries and variants are each counted; a document shared by rows in different batches once."""
    from hybridft.core import models
    from hybridft.retrieval.llm_index import PASSAGE_PREFIX, QUERY_PREFIX, tokenize
    from hybridft.training.invar_retriever import _truncated

    long = " ".join(f"word{n}" for n in range(60))
    rows = [retrieval_row(n) for n in range(2500)]
    for n in range(0, 2500, 7):
        rows[n]["positives"] = [long]  # in every batch of 1,000
        rows[n]["query"] = f"{long} {n}"
    folder = tmp_path / "retrieval"
    write_jsonl(folder / "train.jsonl", rows[:2000])
    write_jsonl(folder / "eval.jsonl", rows[2000:])
    (folder / "manifest.json").write_text(json.dumps({"options": {"format": "retrieval"}}))
    tokenizer = models.load_tokenizer(models.resolve_model("tiny"))
    queries = [r["query"] for r in rows] + [v for r in rows for v in r.get("variants", [])]
    documents = sorted({t for r in rows for t in r["positives"] + r.get("negatives", [])})
    expected = {
        "queries_cut": tokenize(tokenizer, queries, QUERY_PREFIX, 24)[1],
        "documents_cut": tokenize(tokenizer, documents, PASSAGE_PREFIX, 24)[1],
    }
    assert expected["queries_cut"] == 358 and expected["documents_cut"] >= 1
    for num_proc in (None, 2):
        assert _truncated(tokenizer, load_retrieval_data(folder, num_proc), 24, num_proc) == expected


def test_a_max_length_every_row_exceeds_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = sft_folder(tmp_path / "data", [chat(f"question {n}", f"answer {n}") for n in range(3)])
    tokens = ["--model", "tiny", "--data", str(folder), "--out", str(tmp_path / "run"), "--max-length", "8"]
    assert run_guarded(finetune_cli.main, tokens) == 2
    assert "max_length=8: every train row is longer; raise max_length" in capsys.readouterr().err


def test_hub_rows_are_read_by_the_one_loader_of_the_readers(tmp_path: Path) -> None:
    """``hf:NAME[:CONFIG][@SPLIT]`` is core.readers.hf_dataset for the trainer rows and for every
    other reader: the same rows, and the same error for a dataset that cannot be loaded."""
    from hybridft.core.readers import iter_rows
    from hybridft.training.rows import source_rows

    rows = [chat(f"q{i}?", f"a{i}") for i in range(3)]
    write_jsonl(tmp_path / "hub" / "train.jsonl", rows)
    spec = f"hf:{tmp_path / 'hub'}@train"
    dataset, where = source_rows(spec)
    assert list(dataset) == [row for _, row in iter_rows(spec)] == rows
    assert where == f"{spec}:row " and [w for w, _ in iter_rows(spec)][-1] == f"{spec}:row 3"
    missing = "hf:no-such-owner/no-such-dataset"
    messages = []
    for load in (lambda: source_rows(missing), lambda: list(iter_rows(missing))):
        with pytest.raises(InputError) as caught:
            load()
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "no-such-owner/no-such-dataset" in messages[0]


def test_dataset_num_proc_does_not_block_a_resume() -> None:
    """It changes how fast the rows are read, not what is trained: a run started with 8 processes
    resumes on a machine given none."""
    from hybridft.training.run_folder import _changed_keys

    assert _changed_keys({"dataset_num_proc": 8, "seed": 0}, {"dataset_num_proc": None, "seed": 0}) == []
    assert _changed_keys({"seed": 0}, {"seed": 1}) == ["seed: 0 -> 1"]
