"""Fault injection: SIGINT and SIGKILL at several points of build-data, index, finetune and eval,
then the same command again. Whenever the kill lands: a previous output is never lost or
half-replaced, no partial folder is left once the command has run again, and the rerun finishes
with the output an uninterrupted run writes (finetune: resumes from its newest checkpoint or starts
over cleanly).

Each command is killed at FAULT_POINTS points (default 3) spread over its run; FAULT_POINTS=10
searches further.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

POINTS = int(os.environ.get("FAULT_POINTS", "3"))
pytestmark = pytest.mark.slow


def hybridft(*args: object) -> list[str]:
    return [sys.executable, "-m", "hybridft", *map(str, args)]


def killed(command: list[str], after: float, sig: int) -> tuple[int, str, bool]:
    """Start ``command``, send ``sig`` after ``after`` seconds (if it is still running), wait; check
    the exit code and message of a killed process. Returns its exit code, its output (stdout and
    stderr together) and whether the signal was sent."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=after)
        sent = False
    except subprocess.TimeoutExpired:
        process.send_signal(sig)
        output, _ = process.communicate(timeout=300)
        sent = True
    assert_exit(process.returncode, output, sig if sent else None)
    return process.returncode, output, sent


def assert_exit(code: int, output: str, sig: int | None) -> None:
    """Not signalled: it finished (exit 0). SIGKILL: killed by it (-9), nothing printed can be
    checked. SIGINT: exit 130 saying that the same command continues (a run interrupted during
    training names its checkpoint). Exit 0 after a signal is a run that ended as it came."""
    text = " ".join(output.split())
    if sig is None or (code == 0 and "error" not in text and "Traceback" not in text):
        assert code == 0, text[-2000:]
    elif sig == signal.SIGKILL:
        assert code == -signal.SIGKILL, text[-2000:]
    else:
        assert code == 130, text[-2000:]
        assert "Traceback" not in text and "run the same command again" in text.lower(), text[-2000:]
        assert "interrupted" in text, text[-2000:]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Enough text (30,000 passages) that a build or an index takes a few seconds."""
    root = tmp_path_factory.mktemp("faults")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    docs, qa = root / "docs.jsonl", root / "qa.jsonl"
    with open(docs, "w") as handle:
        for i in range(30_000):
            text = " ".join(rng.choice(words) for _ in range(40))
            handle.write(json.dumps({"id": f"d{i}", "title": f"t{i}", "text": f"{text} answer{i} ."}) + "\n")
    with open(qa, "w") as handle:
        for i in range(0, 30_000, 10):
            handle.write(json.dumps({"id": f"q{i}", "question": f"what about w{i % 5000}?", "answers": [f"answer{i}"]}))
            handle.write("\n")
    return {"root": root, "docs": docs, "qa": qa}


def kill_and_rerun(command: list[str], out: Path, seconds: float, marker: str) -> None:
    """``command`` writes ``out`` atomically (``marker`` is a file of a complete ``out``)."""
    assert subprocess.run(command, capture_output=True).returncode == 0
    reference = snapshot(out)
    rng = random.Random(1)
    landed = 0
    for point in range(POINTS):
        previous = snapshot(out)
        sig = signal.SIGKILL if point % 2 else signal.SIGINT
        landed += killed(command, rng.uniform(0.5, seconds), sig)[2]  # exit 130 with its message, or -9
        now = snapshot(out)
        assert now == previous or (marker in now and set(now) == set(previous)), "the previous output was damaged"
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert leftovers(out) == [], "a partial folder was left"
        assert {k: v for k, v in snapshot(out).items() if k != "manifest.json"} == {
            k: v for k, v in reference.items() if k != "manifest.json"
        }
    assert landed, "every run ended before its signal: nothing was tested"


def test_build_data_killed_anywhere(corpus: dict[str, Path]) -> None:
    out = corpus["root"] / "raft"
    command = hybridft("build-data", "raft", "--qa", corpus["qa"], "--docs", corpus["docs"], "--distractors", "3")
    kill_and_rerun([*command, "--out", out, "--overwrite"], out, 8.0, "manifest.json")


def test_index_killed_anywhere(corpus: dict[str, Path]) -> None:
    out = corpus["root"] / "index"
    kill_and_rerun(hybridft("index", "--docs", corpus["docs"], "--out", out, "--overwrite"), out, 8.0, "manifest.json")


def test_eval_killed_anywhere(corpus: dict[str, Path]) -> None:
    data = corpus["root"] / "raft-eval"
    command = hybridft("build-data", "raft", "--qa", corpus["qa"], "--docs", corpus["docs"], "--distractors", "2")
    assert subprocess.run([*command, "--out", data], capture_output=True).returncode == 0
    records = [json.loads(line) for line in (data / "records.jsonl").read_text().splitlines()]
    assert records
    out = corpus["root"] / "report"
    # Answers generated by the tiny model (a few seconds): scoring a predictions file ends before a signal lands.
    command = hybridft("eval", "raft", "--data", data, "--split", "all", "--model", "tiny", "--max-new-tokens", "4")
    kill_and_rerun([*command, "--out", out, "--overwrite"], out, 6.5, "report.json")


def test_finetune_killed_anywhere_resumes_or_starts_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"{n} plus one is", "completion": f" {n + 1}"}) + "\n" for n in range(64))
    )
    out = tmp_path / "run"
    command = hybridft("finetune", "--model", "tiny", "--data", data, "--out", out, "--max-steps", "12")
    command += ["--save-steps", "3", "--batch-size", "2", "--no-gradient-checkpointing", "--logging-steps", "1"]
    rng = random.Random(2)
    for point in range(POINTS):
        started = time.monotonic()
        code, output, _ = killed(command, rng.uniform(2.0, 14.0), signal.SIGKILL if point % 2 else signal.SIGINT)
        if code == 130 and "interrupted at step" in output:  # stopped while training: its checkpoint
            assert "checkpoint saved in" in output and "Run the same command again to resume" in output
            assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
        if (out / "run.json").is_file():
            run = json.loads((out / "run.json").read_text())  # always whole: written by rename
            assert run["status"] in ("running", "interrupted", "complete")
        done = subprocess.run(command, capture_output=True, text=True)
        finished = json.loads((out / "run.json").read_text())
        if finished.get("status") == "complete" and done.returncode == 2:
            assert "holds a finished run" in done.stderr  # the kill came after the end: nothing to redo
        else:
            assert done.returncode == 0, done.stderr[-2000:]
        assert finished["status"] == "complete" and finished["steps"] == 12
        assert (out / "adapter_model.safetensors").is_file()
        steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
        assert [s for s in steps if s] == sorted(s for s in steps if s)  # resumed logs continue, no repeats
        assert time.monotonic() - started < 300
        shutil.rmtree(out)  # the next point starts from nothing again
