"""build-data mix: weighted quotas, sources kept, determinism, bad inputs, and TRL on mixed rows."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from conftest import read_jsonl, write_jsonl

from hybridft.builders.mix import draw, quotas

OUTPUT_FILES = ("records.jsonl", "train.jsonl", "eval.jsonl")
RECIPES = Path(__file__).parent.parent / "data_recipes"


def built(tmp: Path, name: str, kind: str, n_train: int, n_eval: int, fmt: str = "prompt-completion") -> Path:
    """A folder shaped like a build-data output: manifest, records and rows that line up."""
    folder = tmp / name
    records, rows = [], {"train": [], "eval": []}
    for i in range(n_train + n_eval):
        split = "train" if i < n_train else "eval"
        records.append({"id": f"{kind}-{i}", "source_id": f"q{i}", "kind": kind, "split": split})
        if fmt == "messages":
            row = {"messages": [{"role": "user", "content": f"{name} {i}"}, {"role": "assistant", "content": "x"}]}
        else:
            row = {"prompt": f"{name} {i}", "completion": "x"}
        rows[split].append(row)
    write_jsonl(folder / "records.jsonl", records)
    for split in ("train", "eval"):
        write_jsonl(folder / f"{split}.jsonl", rows[split])
    manifest = {"kind": kind, "options": {"format": fmt}, "counts": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_quotas_by_largest_remainder_and_draws_without_needless_repeats() -> None:
    assert quotas(10, [1, 1, 1]) == [4, 3, 3]
    assert quotas(7, [2, 1]) == [5, 2]
    assert quotas(0, [1, 2]) == [0, 0]
    import random

    picks = draw(4, 10, random.Random(0))
    assert sorted(Counter(i for i, _ in picks).values()) == [2, 2, 3, 3]
    assert len({i for i, _ in draw(10, 4, random.Random(0))}) == 4


def test_proportions_follow_the_weights(cli, tmp_path: Path) -> None:
    raft, rog = built(tmp_path, "raft", "raft", 300, 30), built(tmp_path, "rog", "rog", 100, 10)
    out = tmp_path / "mix"
    code, stdout, stderr = cli("mix", "--inputs", f"{raft}:1,{rog}:3", "--out", out, "--json")
    assert code == 0, stderr
    records, train = read_jsonl(out / "records.jsonl"), read_jsonl(out / "train.jsonl")
    assert len(train) == 400 and len(read_jsonl(out / "eval.jsonl")) == 40  # the inputs' sizes
    share = Counter(row["source"] for row in train)
    assert abs(share["rog"] / 400 - 0.75) <= 1 / 400 and share["raft"] + share["rog"] == 400
    # rog is oversampled 3x: every row exactly three times; raft undersampled: no repeats.
    rog_rows = Counter(row["prompt"] for row in train if row["source"] == "rog")
    assert set(rog_rows.values()) == {3} and len(rog_rows) == 100
    assert len({row["prompt"] for row in train if row["source"] == "raft"}) == 100
    assert len({r["id"] for r in records}) == len(records)
    assert all(r["kind"] == r["source"] for r in records)
    counts = json.loads(stdout)["counts"]
    assert counts["realised"] == {"raft": {"train": 100, "eval": 10}, "rog": {"train": 300, "eval": 30}}
    assert counts["repeated"] == {"raft": 0, "rog": 220} and counts["unused"] == {"raft": 220, "rog": 0}
    assert counts["by_source"] == {"raft": 110, "rog": 330}
    assert counts["format"] == "prompt-completion"
    # Each row is its input's row plus the source; records carry the row too.
    assert records[0]["row"] == {k: v for k, v in read_jsonl(out / "train.jsonl")[0].items() if k != "source"}


def test_size_splits_in_the_inputs_ratio_and_an_absent_split_shares_out(cli, tmp_path: Path) -> None:
    a, b = built(tmp_path, "a", "raft", 300, 30), built(tmp_path, "b", "invar", 100, 0)
    out = tmp_path / "mix"
    assert cli("mix", "--inputs", f"{a}:1,{b}:1", "--size", "43", "--out", out)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["realised"] == {"a": {"train": 20, "eval": 3}, "b": {"train": 20, "eval": 0}}
    assert manifest["counts"]["train"] == 40 and manifest["counts"]["eval"] == 3


def test_same_seed_same_bytes(cli, tmp_path: Path) -> None:
    a, b = built(tmp_path, "a", "raft", 50, 5), built(tmp_path, "b", "rog", 20, 2)
    outs = {}
    for name, seed in (("x", "0"), ("y", "0"), ("z", "1")):
        assert cli("mix", "--inputs", f"{a}:2,{b}:1", "--seed", seed, "--out", tmp_path / name)[0] == 0
        outs[name] = {f: (tmp_path / name / f).read_bytes() for f in OUTPUT_FILES}
    assert outs["x"] == outs["y"]
    assert outs["x"]["train.jsonl"] != outs["z"]["train.jsonl"]


def test_bad_inputs_exit_2_and_leave_nothing(cli, tmp_path: Path) -> None:
    a = built(tmp_path, "a", "raft", 5, 1)
    b = built(tmp_path, "b", "rog", 5, 1, fmt="messages")
    (tmp_path / "empty").mkdir()
    cases = [
        ([f"{a}:0"], "weight must be a number above 0"),
        ([f"{a}:-1"], "weight must be a number above 0"),
        ([f"{a}:heavy"], "weight 'heavy' is not a number"),
        ([str(a)], "expected DIR:WEIGHT"),
        ([f"{a}:1,{a}:2"], "is listed twice"),
        ([f"{tmp_path / 'missing'}:1"], "missing: no such folder"),
        ([f"{tmp_path / 'empty'}:1"], "no manifest.json (not a hybridft build-data output folder)"),
        ([f"{a}:1,{b}:1"], "inputs have different formats"),
    ]
    for inputs, message in cases:
        out = tmp_path / "out"
        code, stdout, stderr = cli("mix", "--inputs", *inputs, "--out", out)
        assert code == 2, (inputs, stderr)
        assert message in stderr, (message, stderr)
        assert stdout == "" and not out.exists()
    (a / "train.jsonl").write_text("")
    code, _, stderr = cli("mix", "--inputs", f"{a}:1", "--out", tmp_path / "out")
    assert code == 2 and "train.jsonl: 0 rows, but records.jsonl has 5 train records" in stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_hybrid_of_real_builds_trains_with_sft_trainer(cli, sample: dict[str, Path]) -> None:
    """RAFT + RoG + Invar-RAG generation rows, mixed; TRL's SFTTrainer takes the mixed messages."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from hybridft.core.models import resolve_model

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    tmp, qa, docs = sample["tmp"], sample["qa"], sample["docs"]
    common = ["--eval-fraction", "0", "--format", "messages"]
    assert cli("raft", "--qa", qa, "--docs", docs, "--distractors", "2", *common, "--out", tmp / "raft")[0] == 0
    assert cli("rog", "--recipe", RECIPES / "rog_sample.yaml", *common, "--out", tmp / "rog")[0] == 0
    invar = ["--stage", "generation", "--top-k", "2", *common, "--out", tmp / "invar"]
    assert cli("invar", "--qa", qa, "--docs", docs, *invar)[0] == 0
    inputs = f"{tmp / 'raft'}:1,{tmp / 'rog'}:1,{tmp / 'invar'}:1"
    code, _, stderr = cli("mix", "--inputs", inputs, "--size", "12", "--out", tmp / "mix")
    assert code == 0, stderr
    rows = read_jsonl(tmp / "mix" / "train.jsonl")
    assert Counter(r["source"] for r in rows) == {"raft": 4, "rog": 4, "invar": 4}

    folder = resolve_model("tiny")
    dataset = load_dataset("json", data_files=str(tmp / "mix" / "train.jsonl"), split="train")
    args = SFTConfig(
        output_dir=str(tmp / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        activation_checkpointing=False,
        assistant_only_loss=True,
        max_length=512,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(folder),
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(folder),
    )
    assert trainer.train().training_loss > 0


def test_hybrid_sample_recipe_chain(cli, tmp_path: Path, monkeypatch) -> None:
    """The four commands at the top of data_recipes/hybrid_sample.yaml, run from one folder."""
    monkeypatch.chdir(tmp_path)
    assert cli("--recipe", RECIPES / "raft_sample.yaml", "--out", "out/raft")[0] == 0
    assert cli("--recipe", RECIPES / "rog_sample.yaml", "--out", "out/rog")[0] == 0
    assert cli("--recipe", RECIPES / "invar_sample.yaml", "--stage", "generation", "--out", "out/invar-gen")[0] == 0
    code, stdout, stderr = cli("--recipe", RECIPES / "hybrid_sample.yaml", "--out", "out/hybrid", "--json")
    assert code == 0, stderr
    counts = json.loads(stdout)["counts"]
    train = counts["realised"]
    total = sum(source["train"] for source in train.values())
    assert abs(train["raft"]["train"] / total - 0.5) <= 1 / total
    assert set(counts["by_source"]) == {"raft", "rog", "invar"}
