"""Sharded builds: `--shard I/N` builds the questions whose id hash falls in shard I, and
`build-data merge` joins the N folders into exactly the bytes the unsharded build writes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import read_jsonl, write_jsonl

from hybridft.builders.common import Shard, split_of

RECIPES = Path(__file__).parent.parent / "data_recipes"
OUTPUTS = ("records.jsonl", "train.jsonl", "eval.jsonl")


def qa_and_docs(tmp_path: Path) -> tuple[Path, Path]:
    """60 documents, 40 questions: half name their oracle, half are found by answer search, one
    names three documents (so the number of draws per row comes from the whole QA set)."""
    rng = random.Random(5)
    words = ["river", "bank", "stone", "bridge", "tower", "market", "harbour", "castle", "valley", "forest"]
    colours = ["red", "blue", "green", "amber", "violet"]
    docs = [
        {
            "id": f"d{i}",
            "text": f"Item {i} is {colours[i % 5]}. It stands near the {rng.choice(words)} {rng.choice(words)}.",
        }
        for i in range(60)
    ]
    qa = [
        {
            "id": f"q{i}",
            "question": f"What colour is item {i} near the {rng.choice(words)}?",
            "answers": [colours[i % 5]],
            **({"doc_ids": [f"d{i}"]} if i % 2 else {}),
        }
        for i in range(40)
    ]
    qa[7]["doc_ids"] = ["d7", "d8", "d9"]
    return write_jsonl(tmp_path / "qa.jsonl", qa), write_jsonl(tmp_path / "docs.jsonl", docs)


def sharded_equals_unsharded(cli, tmp_path: Path, kind_args: list, n: int = 2) -> None:
    whole = tmp_path / "whole"
    assert cli(*kind_args, "--out", whole)[0] == 0
    folders = [tmp_path / f"shard{i}" for i in range(n)]
    for i, folder in enumerate(folders):
        code, _, stderr = cli(*kind_args, "--shard", f"{i}/{n}", "--out", folder)
        assert code == 0, stderr
    # Each question is in exactly one shard, and its split is the unsharded one.
    built = [r["source_id"] for folder in folders for r in read_jsonl(folder / "records.jsonl")]
    assert sorted(set(built)) == sorted({r["source_id"] for r in read_jsonl(whole / "records.jsonl")})
    merged = tmp_path / "merged"
    code, _, stderr = cli("merge", *reversed(folders), "--out", merged)  # any order
    assert code == 0, stderr
    for name in OUTPUTS:
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    manifest, reference = (json.loads((f / "manifest.json").read_text()) for f in (merged, whole))
    assert manifest["counts"] == reference["counts"]
    assert manifest["quality"] == reference["quality"]
    assert [s["shard"] for s in manifest["shards"]] == [f"{i}/{n}" for i in range(n)]
    assert read_jsonl(merged / "quality.jsonl") == read_jsonl(whole / "quality.jsonl")


@pytest.mark.parametrize("strategy", ["bm25", "random"])
def test_raft_shards_merge_into_the_unsharded_bytes(cli, tmp_path: Path, strategy: str) -> None:
    qa, docs = qa_and_docs(tmp_path)
    args = ["raft", "--qa", qa, "--docs", docs, "--distractors", "3", "--distractor-strategy", strategy]
    sharded_equals_unsharded(cli, tmp_path, [*args, "--oracle-p", "0.5", "--eval-fraction", "0.3"], n=3)


def test_invar_shards_merge_into_the_unsharded_bytes(cli, tmp_path: Path) -> None:
    qa, docs = qa_and_docs(tmp_path)
    args = ["invar", "--qa", qa, "--docs", docs, "--negatives", "2", "--teacher", "none", "--eval-fraction", "0.3"]
    sharded_equals_unsharded(cli, tmp_path, args)


def test_rog_shards_merge_into_the_unsharded_bytes(cli, tmp_path: Path) -> None:
    sharded_equals_unsharded(cli, tmp_path, ["--recipe", RECIPES / "rog_sample.yaml"])


def test_shards_partition_the_questions_and_keep_their_splits() -> None:
    ids = [f"question-{i}" for i in range(2000)]
    for n in (1, 2, 5):
        owners = [[i for i in range(n) if Shard(i, n).holds(qid)] for qid in ids]
        assert all(len(owner) == 1 for owner in owners)
        sizes = [sum(1 for owner in owners if owner == [i]) for i in range(n)]
        assert min(sizes) > 2000 / n * 0.8  # the hash spreads them
    # Shards and splits read different bytes of the same hash: every shard holds both splits.
    for i in range(5):
        splits = {split_of(qid, 0.1) for qid in ids if Shard(i, 5).holds(qid)}
        assert splits == {"train", "eval"}


@pytest.mark.parametrize("spec", ["3/2", "0/0", "2/2", "-1/2", "a/b", "1", "1/2/3"])
def test_a_bad_shard_spec_is_exit_2(cli, sample: dict[str, Path], spec: str) -> None:
    code, _, stderr = cli("raft", "--qa", sample["qa"], "--docs", sample["docs"], "--shard", spec, "--out", "x")
    assert code == 2 and f"shard={spec}: expected I/N with 0 <= I < N" in stderr


def test_merge_refuses_a_missing_repeated_or_foreign_shard(cli, tmp_path: Path) -> None:
    qa, docs = qa_and_docs(tmp_path)
    args = ["raft", "--qa", qa, "--docs", docs, "--distractors", "2"]
    folders = [tmp_path / f"s{i}" for i in range(3)]
    for i, folder in enumerate(folders):
        assert cli(*args, "--shard", f"{i}/3", "--out", folder)[0] == 0
    other = tmp_path / "other"
    assert cli(*args, "--seed", "1", "--shard", "2/3", "--out", other)[0] == 0
    out = tmp_path / "merged"

    code, _, stderr = cli("merge", folders[0], folders[1], "--out", out)
    assert code == 2 and "missing shard(s) 2/3" in stderr
    code, _, stderr = cli("merge", folders[0], folders[1], folders[1], folders[2], "--out", out)
    assert code == 2 and "shard 1/3 given twice" in stderr
    code, _, stderr = cli("merge", folders[0], folders[1], other, "--out", out)
    assert code == 2 and "options seed differ" in stderr
    code, _, stderr = cli("merge", folders[0], tmp_path, "--out", out)
    assert code == 2 and "no manifest.json" in stderr
    assert not out.exists()  # nothing half-written
    code, _, stderr = cli("merge", *folders)
    assert code == 2 and "--out is required" in stderr


def test_a_shard_warns_of_no_empty_split_the_merge_does(cli, tmp_path: Path) -> None:
    qa, docs = qa_and_docs(tmp_path)
    args = ["raft", "--qa", qa, "--docs", docs, "--distractors", "2", "--eval-fraction", "0.001"]
    folders = [tmp_path / f"s{i}" for i in range(2)]
    for i, folder in enumerate(folders):
        code, _, stderr = cli(*args, "--shard", f"{i}/2", "--out", folder)
        assert code == 0 and "warning" not in stderr
    code, _, stderr = cli("merge", *folders, "--out", tmp_path / "m")
    assert code == 0 and "the eval split is empty" in " ".join(stderr.split())


@pytest.mark.parametrize("kind", ["raft", "invar"])
def test_shards_over_one_saved_index_merge_into_the_unsharded_bytes(cli, tmp_path: Path, capsys, kind: str) -> None:
    from hybridft.cli import index as index_cli
    from hybridft.cli.common import run_guarded

    qa, docs = qa_and_docs(tmp_path)
    index = tmp_path / "index"
    assert run_guarded(index_cli.main, ["--docs", str(docs), "--out", str(index)]) == 0
    capsys.readouterr()
    extra = ["--distractors", "2"] if kind == "raft" else ["--negatives", "2", "--teacher", "none"]
    args = [kind, "--qa", qa, "--docs", docs, *extra]
    assert cli(*args, "--out", tmp_path / "whole")[0] == 0
    for i in range(2):
        code, _, stderr = cli(*args, "--index", index, "--shard", f"{i}/2", "--out", tmp_path / f"s{i}")
        assert code == 0 and "indexing" not in stderr  # each shard opened the saved index
    assert cli("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "merged")[0] == 0
    for name in OUTPUTS:
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_a_merge_of_shards_that_built_nothing_is_exit_2_as_the_whole_build_is(cli, tmp_path: Path) -> None:
    """Every answer is in no document: the unsharded build is refused, each shard may be empty,
    and their merge is refused with the same reasons (not three empty files and exit 0)."""
    qa, docs = qa_and_docs(tmp_path)
    rows = [{**row, "answers": ["nowhere-to-be-found"]} for row in read_jsonl(qa)]
    for row in rows:
        row.pop("doc_ids", None)
    write_jsonl(qa, rows)
    args = ["raft", "--qa", qa, "--docs", docs, "--distractors", "2"]
    code, _, whole = cli(*args, "--out", tmp_path / "whole")
    assert code == 2 and "no raft examples could be built" in whole
    folders = [tmp_path / f"shard{i}" for i in range(2)]
    for i, folder in enumerate(folders):
        assert cli(*args, "--shard", f"{i}/2", "--out", folder)[0] == 0
    merged = tmp_path / "merged"
    code, _, stderr = cli("merge", *folders, "--out", merged)
    assert code == 2 and "no raft examples could be built" in stderr and '"no_oracle": 40' in " ".join(stderr.split())
    assert not merged.exists()


def test_a_shard_built_by_hand_counts_beside_ray_shards(cli, tmp_path: Path) -> None:
    """A shard rebuilt with --shard I/N after a Ray shard failed: `--shards N --ray` takes it as
    complete, and `build-data merge` joins it with a shard built the Ray way (whose options do not
    hold the run options)."""
    from hybridft.builders.ray_shards import _complete, _shard_config

    qa, docs = qa_and_docs(tmp_path)
    args = ["raft", "--qa", qa, "--docs", docs, "--distractors", "2"]
    by_hand = tmp_path / "out.shards" / "1-of-2"
    assert cli(*args, "--shard", "1/2", "--out", by_hand)[0] == 0
    options = json.loads((by_hand / "manifest.json").read_text())["options"]
    ray_config = {**options, "shard": None, "out": str(tmp_path / "out"), "shards": 2, "ray": "local"}
    assert _complete(by_hand, _shard_config(ray_config, 1, by_hand))
    assert not _complete(by_hand, _shard_config({**ray_config, "distractors": 3}, 1, by_hand))
    assert not _complete(by_hand, _shard_config(ray_config, 0, by_hand))  # not that shard
    ray_way = tmp_path / "out.shards" / "0-of-2"
    assert cli(*args, "--shard", "0/2", "--out", ray_way)[0] == 0
    manifest = json.loads((ray_way / "manifest.json").read_text())
    manifest["options"] = {
        k: v for k, v in manifest["options"].items() if k not in ("shards", "ray", "ray_gpus", "ray_retries")
    }
    (ray_way / "manifest.json").write_text(json.dumps(manifest))
    code, _, stderr = cli("merge", ray_way, by_hand, "--out", tmp_path / "merged")
    assert code == 0, stderr


def test_ray_refuses_a_non_empty_out_before_building_any_shard(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from hybridft.builders.ray_shards import run_on_ray
    from hybridft.core.errors import UsageError

    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("a previous build")
    built: list[str] = []
    config = {"out": str(out), "overwrite": False, "shards": 2, "ray": "local", "ray_gpus": 0.0, "ray_retries": 0}
    with pytest.raises(UsageError):
        run_on_ray("raft", config, build_shard=lambda kind, shard: built.append(shard["shard"]) or {})
    assert built == [] and not (tmp_path / "out.shards").exists()
    assert (out / "kept.txt").read_text() == "a previous build"
