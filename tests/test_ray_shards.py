"""Sharded builds on Ray (`build-data KIND ... --shards N --ray`): the N shards as Ray tasks on a
local Ray with 2 CPUs, merged into the unsharded bytes; a task whose worker dies is retried by Ray,
or, without retries, reported with its shard named, and the same command then resumes.

Ray is an optional extra (`hybridft[ray]`); these tests install it when it is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from test_shards import OUTPUTS, qa_and_docs

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def ray() -> Any:
    if importlib.util.find_spec("ray") is None:
        extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *extra], check=True)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_options_are_checked_before_any_work(cli, sample: dict[str, Path]) -> None:
    base = ["raft", "--qa", sample["qa"], "--docs", sample["docs"], "--out", sample["tmp"] / "o"]
    code, _, stderr = cli(*base, "--shards", "2")
    assert code == 2 and "shards: needs --ray" in stderr and "build-data merge" in stderr
    code, _, stderr = cli(*base, "--ray")
    assert code == 2 and "ray: needs --shards N" in stderr
    code, _, stderr = cli(*base, "--shards", "2", "--ray", "--shard", "0/2")
    assert code == 2 and "give one" in stderr
    code, _, stderr = cli(*base, "--shards", "1", "--ray")
    assert code == 2 and "shards" in stderr


@pytest.mark.slow
def test_shards_on_ray_merge_into_the_unsharded_bytes(cli, ray: Any, tmp_path: Path) -> None:
    qa, docs = qa_and_docs(tmp_path)
    args = ["raft", "--qa", qa, "--docs", docs, "--distractors", "3", "--eval-fraction", "0.3"]
    assert cli(*args, "--out", tmp_path / "whole")[0] == 0
    code, stdout, stderr = cli(*args, "--shards", "2", "--ray", "--out", tmp_path / "ray")
    assert code == 0, stderr
    for name in OUTPUTS:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert not (tmp_path / "ray.shards").exists()  # the shard folders are removed once merged


@pytest.mark.slow
def test_a_shard_whose_worker_dies_is_retried_or_named_and_resumed(ray: Any, tmp_path: Path) -> None:
    from hybridft.builders import raft
    from hybridft.builders.folder import write_build
    from hybridft.builders.ray_shards import ShardsFailed, run_on_ray
    from hybridft.core.options import resolve

    qa, docs = qa_and_docs(tmp_path)
    values = {"qa": str(qa), "docs": str(docs), "distractors": 2, "shards": 2, "ray": "local"}
    deaths = tmp_path / "deaths"
    deaths.mkdir()

    def dies_once(kind: str, config: dict[str, Any]) -> dict[str, Any]:
        """Shard 1's first run kills its worker process (as an out-of-memory kill would)."""
        marker = deaths / config["shard"].replace("/", "-of-")
        if config["shard"] == "1/2" and not marker.exists():
            marker.touch()
            os._exit(1)
        (deaths / f"built-{config['shard'].replace('/', '-of-')}").touch()
        return write_build(kind, config)

    whole = resolve(raft.OPTIONS, {**values, "shards": None, "ray": None, "out": str(tmp_path / "whole")}, {})
    write_build("raft", whole)

    # With retries (the default, 3): Ray runs shard 1 again, and the build completes.
    config = resolve(raft.OPTIONS, {**values, "out": str(tmp_path / "retried")}, {})
    run_on_ray("raft", config, build_shard=dies_once)
    assert (deaths / "1-of-2").exists()
    for name in OUTPUTS:
        assert (tmp_path / "retried" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # The retry is reported: in the merged manifest (and on stderr).
    assert json.loads((tmp_path / "retried" / "manifest.json").read_text())["ray_retried"] == {"1/2": 1}

    # Without retries: the failure names the shard; shard 0 is kept, and a rerun builds only shard 1.
    (deaths / "1-of-2").unlink()
    for built in deaths.glob("built-*"):
        built.unlink()
    config = resolve(raft.OPTIONS, {**values, "ray_retries": 0, "out": str(tmp_path / "failed")}, {})
    failed = r"(?s)1 of 2 shards failed.*shard 1/2 \(.*failed\.shards/1-of-2\): .* after 1 attempt\(s\)"
    with pytest.raises(ShardsFailed, match=failed):
        run_on_ray("raft", config, build_shard=dies_once)
    assert (tmp_path / "failed.shards" / "0-of-2" / "manifest.json").is_file() and not (tmp_path / "failed").exists()
    assert sorted(p.name for p in deaths.glob("built-*")) == ["built-0-of-2"]
    (deaths / "built-0-of-2").unlink()
    run_on_ray("raft", config, build_shard=dies_once)  # the marker is there now: shard 1 builds
    assert sorted(p.name for p in deaths.glob("built-*")) == ["built-1-of-2"]
    for name in OUTPUTS:
        assert (tmp_path / "failed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
