"""The run folder (``--out``) of ``finetune``: fresh, overwritten or resumed, and ``run.json``.

``run.json`` is written first with ``"status": "running"``; a rerun with the same options
continues from the newest checkpoint, a rerun with other options is refused unless
``--overwrite``. Light on imports: ``finetune --dry-run`` checks a folder without torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hybridft import __version__
from hybridft.core.errors import UsageError
from hybridft.core.readers import read_json_object

RESUME_FREE_KEYS = ("out", "overwrite", "resume", "save_merged", "report_to", "logging_steps", "dataset_num_proc")


def prepare_out(config: dict[str, Any]) -> str | None:
    """Make ``--out`` ready and return the checkpoint to resume from, if any.

    Fresh or empty folder: start. Same options and a checkpoint: resume (unless resume=false).
    Anything else in a non-empty folder needs --overwrite.
    """
    out = Path(config["out"])
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if config["overwrite"]:
        return "overwrite"
    previous = read_run(out)
    if previous is None:
        raise UsageError(f"--out {out}: folder is not empty and holds no hybridft run (use --overwrite to replace it)")
    if previous.get("status") == "complete":
        raise UsageError(f"--out {out}: holds a finished run (use --overwrite to train again, or another --out)")
    changed = _changed_keys(previous.get("config", {}), config)
    if changed:
        raise UsageError(
            f"--out {out}: holds an unfinished run with other options ({', '.join(changed)}); "
            "rerun with the same options to resume it, or use --overwrite to start over"
        )
    checkpoint = newest_checkpoint(out)
    if checkpoint is None or not config["resume"]:
        return "overwrite" if checkpoint is None else _refuse_restart(out)
    return str(checkpoint)


def _refuse_restart(out: Path) -> str:
    raise UsageError(f"--out {out}: holds checkpoints but resume=false (use --overwrite to start over)")


def read_run(out: Path) -> dict[str, Any] | None:
    path = out / "run.json"
    if not path.is_file():
        return None
    return read_json_object(path, f"{path}: no such file", f"{path}: not valid JSON; use --overwrite to start over")


def _changed_keys(previous: dict[str, Any], config: dict[str, Any]) -> list[str]:
    keys = sorted(set(previous) | set(config))
    return [
        f"{k}: {previous.get(k)!r} -> {config.get(k)!r}"
        for k in keys
        if k not in RESUME_FREE_KEYS and _jsonable(previous.get(k)) != _jsonable(config.get(k))
    ]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def newest_checkpoint(out: Path) -> Path | None:
    """The ``checkpoint-N`` folder with the largest complete N (one holding trainer_state.json)."""
    candidates = []
    for child in out.glob("checkpoint-*"):
        step = child.name.removeprefix("checkpoint-")
        if step.isdigit() and (child / "trainer_state.json").is_file():
            candidates.append((int(step), child))
    return max(candidates)[1] if candidates else None


def write_run_json(out: Path, run: dict[str, Any]) -> None:
    """Replace run.json atomically, so a crash never leaves half of it."""
    temp = out / "run.json.tmp"
    temp.write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temp, out / "run.json")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets")
    versions = {"hybridft": __version__}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
