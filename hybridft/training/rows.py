"""Trainer rows through ``datasets``: a file's rows go into an Arrow table (memory-mapped, cached in
the Hugging Face datasets cache, ``$HF_DATASETS_CACHE``), and one ``Dataset.map`` (``num_proc``
processes) parses, checks and shapes them. No step holds every row as Python objects: reading
200,000 RAFT rows peaks at 0.6 GB instead of 2.8 GB (bench/sft_rows.py), and a second run reads
them from the cache. Not the run folder's: rows are checked before ``--out`` is touched, and runs
on the same data share them (TRL's tokenising maps cache beside them, keyed the same way).

A .jsonl file is stored as its raw lines, one Arrow row per line (blank ones too), so the map's
index + 1 is the line number and each line is parsed by the readers' own parser: a bad row is
refused with the same ``file:line: problem`` as everywhere else (datasets' json loader would
infer column types across rows, turn a missing field into null and lose the line numbers).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hybridft import __version__
from hybridft.core import models, readers, records
from hybridft.core.errors import InputError, UsageError
from hybridft.core.readers import JSONL_SUFFIXES, hf_dataset, numbered_lines, parse_json_line
from hybridft.core.records import MAX_PROBLEMS, TRAINER_ROWS

SHAPED = ("prompt", "completion", "source", "markers")  # sft rows
RETRIEVAL_COLUMNS = ("query", "positives", "negatives", "variants", "teacher_scores")
RAW = "_jsonl_line"  # the column of a .jsonl's raw lines (a name no dataset's own column takes)


def source_rows(source: str | Path) -> tuple[Any, str]:
    """``(dataset, where)``: the rows of a .jsonl / .jsonl.gz file as raw lines (``where`` ``file:``,
    the line number follows), or of a .parquet file or ``hf:`` dataset as they are (``where``
    ``file:row ``)."""
    import datasets

    datasets.disable_progress_bars()  # hybridft draws its own progress (rich, on stderr)
    text = str(source)
    if text.startswith("hf:"):
        return hf_dataset(text), f"{text}:row "
    path = Path(source)
    if path.is_dir():
        raise InputError(f"{path}: a folder; expected a .jsonl, .jsonl.gz or .parquet file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.name.endswith(".parquet"):
        try:
            return datasets.Dataset.from_parquet(str(path)), f"{path}:row "
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
            raise InputError(f"{path}: cannot read parquet: {exc}") from None
    if not path.name.endswith(JSONL_SUFFIXES):
        raise InputError(f"{path}: unsupported file type (expected .jsonl, .jsonl.gz or .parquet)")
    features = datasets.Features({RAW: datasets.Value("binary")})
    with numbered_lines(path) as lines:
        if next(lines, None) is None:  # datasets builds no dataset from a generator of nothing
            return datasets.Dataset.from_dict({RAW: []}, features=features), f"{path}:"
    stat = path.stat()
    try:
        table = datasets.Dataset.from_generator(
            _lines,
            features=features,
            # The file's identity is part of the cache key, so an edited file is read again: its
            # ctime and inode change on every write, even when a copy keeps size and mtime
            # (`cp -p`, `rsync -t`, `tar x`).
            gen_kwargs={
                "path": str(path.resolve()),
                # One string: datasets splits a list in gen_kwargs into shards, one generator each.
                "stat": f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}",
            },
        )
    except datasets.exceptions.DatasetGenerationError as exc:
        raise (exc.__cause__ if isinstance(exc.__cause__, InputError) else exc) from None
    return table, f"{path}:"


def _lines(path: str, stat: str) -> Iterator[dict[str, bytes]]:
    with numbered_lines(Path(path)) as lines:
        for _, raw in lines:
            yield {RAW: raw}


def first_row(dataset: Any, where: str) -> tuple[str, dict[str, Any]] | None:
    """The first row of :func:`source_rows`' dataset and where it is (None when it has none)."""
    if RAW not in dataset.column_names:
        return (f"{where}1", dict(dataset[0])) if len(dataset) else None
    for index, raw in enumerate(dataset.with_format("arrow").iter(batch_size=1000)):
        for offset, line in enumerate(raw[RAW].to_pylist()):
            if not line.isspace():
                place = f"{where}{index * 1000 + offset + 1}"
                return place, parse_json_line(line, place)
    return None


def checked_rows(source: str | Path, fmt: str, num_proc: int | None) -> Any:
    """The rows of ``source`` as a Dataset in trainer shape for ``fmt`` (a key of
    ``TRAINER_ROWS``), checked: InputError naming ``file:line`` of every bad row (up to
    ``MAX_PROBLEMS``). sft formats give ``prompt``, ``completion``, ``source`` and ``markers``;
    ``retrieval`` gives :data:`RETRIEVAL_COLUMNS`."""
    dataset, where = source_rows(source)
    return checked(dataset, where, fmt, num_proc)


def folder_splits(folder: Path, fmt: str, num_proc: int | None) -> tuple[Any, Any]:
    """``(train, eval)`` of a build-data folder, checked (:func:`checked_rows`); ``eval`` None when
    the folder has no eval row. No train.jsonl, or no row in it, is an exit-2 error."""
    train_path, eval_path = folder / "train.jsonl", folder / "eval.jsonl"
    if not train_path.is_file():
        raise UsageError(f"data={folder}: no train.jsonl")
    train = checked_rows(train_path, fmt, num_proc)
    if not len(train):
        raise UsageError(f"{train_path}: no training rows")
    evaluation = checked_rows(eval_path, fmt, num_proc) if eval_path.is_file() else None
    return train, evaluation if evaluation is not None and len(evaluation) else None


def checked(dataset: Any, where: str, fmt: str, num_proc: int | None) -> Any:
    """:func:`checked_rows` on a dataset from :func:`source_rows`."""
    from datasets import Dataset
    from datasets.fingerprint import Hasher

    features = _features(fmt)
    if not len(dataset):  # map would return it unchanged, without the trainer's columns
        return Dataset.from_dict({name: [] for name in features}, features=features).remove_columns("problem")
    kwargs = {"fmt": fmt, "where": where}
    shaped = dataset.map(
        _shape,
        batched=True,
        with_indices=True,
        fn_kwargs=kwargs,
        remove_columns=dataset.column_names,
        features=features,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        # datasets hashes a module's function by its name only: the code is part of the key, so
        # another hybridft never reuses rows shaped by this one. (`_fingerprint` is how datasets
        # names a dataset's state; where it is missing, a fresh key: no reuse, never stale rows.)
        new_fingerprint=Hasher.hash(
            [getattr(dataset, "_fingerprint", None) or uuid.uuid4().hex, kwargs, _code_fingerprint()]
        ),
        desc=f"checking {where.rstrip(':')}",
    )
    problems = shaped.data.column("problem").drop_null()
    if len(problems):
        shown = problems.slice(0, MAX_PROBLEMS).to_pylist()
        raise InputError(
            *shown, *([f"(stopped after {MAX_PROBLEMS} problems)"] if len(problems) > MAX_PROBLEMS else [])
        )
    return shaped.remove_columns("problem")


@functools.cache
def _code_fingerprint() -> str:
    """What shapes and tokenises the rows: this code, and the versions of TRL and transformers
    (TRL's tokenising maps are keyed from the rows' fingerprint, and datasets would not see a
    change in the library functions they call)."""
    from datasets.fingerprint import Hasher

    from hybridft.training.run_folder import package_versions

    versions = package_versions()
    modules = (readers, records, models, sys.modules[__name__])
    return str(Hasher.hash([*map(_source, modules), versions.get("trl"), versions.get("transformers")]))


def _source(module: Any) -> str:
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):  # installed without its sources: the version stands for them
        return __version__


def _shape(batch: dict[str, list[Any]], indices: list[int], fmt: str, where: str) -> dict[str, list[Any]]:
    """One batch of rows in trainer shape, each with its problem (None when it has none); blank
    lines are dropped."""
    columns = RETRIEVAL_COLUMNS if fmt == "retrieval" else SHAPED
    out: dict[str, list[Any]] = {name: [] for name in (*columns, "problem")}
    raw = batch.get(RAW)
    rows = (
        raw
        if raw is not None
        else [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    )
    for index, item in zip(indices, rows, strict=True):
        if raw is not None and item.isspace():
            continue
        place = f"{where}{index + 1}"
        try:
            row = parse_json_line(item, place) if raw is not None else item
            problem = TRAINER_ROWS[fmt].problem(row)
        except InputError as exc:
            row, problem = {}, str(exc)
        else:
            problem = f"{place}: {problem}" if problem else None
        shaped = {} if problem else _retrieval_row(row) if fmt == "retrieval" else _pair(row, fmt)
        for name in columns:
            out[name].append(shaped.get(name))
        out["problem"].append(problem)
    return out


def _pair(row: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A prompt/completion pair; ``messages`` rows become conversational pairs (every turn before
    the last assistant turn is the prompt), which TRL masks with the model's own chat template."""
    if fmt == "prompt-completion":
        pair = {"prompt": row["prompt"], "completion": row["completion"]}
    else:
        clean = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        pair = {"prompt": clean[:-1], "completion": clean[-1:]}
    text = json.dumps(pair, ensure_ascii=False)
    origin = row.get("source")
    return {
        **pair,
        "source": origin if isinstance(origin, str) else None,
        "markers": [m for m in models.MARKERS if m in text],
    }


def _retrieval_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "query": row["query"],
        "positives": row["positives"],
        "negatives": row.get("negatives", []),
        "variants": row.get("variants", []),
        "teacher_scores": row.get("teacher_scores"),
    }


def _features(fmt: str) -> Any:
    from datasets import Features, List, Value

    text = Value("string")
    if fmt == "retrieval":
        columns = {
            "query": text,
            "positives": List(text),
            "negatives": List(text),
            "variants": List(text),
            "teacher_scores": List(Value("float64")),
        }
    else:
        turns = List({"role": text, "content": text})
        part = text if fmt == "prompt-completion" else turns
        columns = {"prompt": part, "completion": part, "source": text, "markers": List(text)}
    return Features({**columns, "problem": text})
