"""Writing outputs: atomic output folders (a temporary sibling renamed at the end), .jsonl rows,
the records + train/eval split files in one pass, and manifests with the sha256 of every input
and output."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, TextIO

from hybridft import __version__
from hybridft.core.errors import UsageError
from hybridft.core.readers import visible_files


def check_output_dir(out: str | Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty --out without --overwrite (before any work starts)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"--out {path}: folder exists and is not empty (use --overwrite to replace it)")


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``out``, on failure it is removed,
    so an interrupted run never leaves a half-written ``out``.

    The siblings carry the writer's process id (``.NAME.PID.*.partial``; ``.NAME.PID.old`` for the
    previous ``out`` while it is being replaced), so that a run killed outright (SIGKILL, power)
    is cleaned up by the next one: its partial folder removed, a previous ``out`` it had moved
    aside put back.
    """
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_siblings(path)
    check_output_dir(path, overwrite)
    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=path.parent))
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    os.chmod(temp, 0o777 & ~_umask())  # mkdtemp makes it 0700; a folder made by mkdir would not be
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    if path.exists():
        os.replace(path, old)  # kept whole until the new folder is in place
    os.replace(temp, path)
    shutil.rmtree(old, ignore_errors=True)


def recover_siblings(path: Path) -> None:
    """Clean up after writers of ``path`` that died without cleaning up: remove their partial
    folders, and put back a previous ``path`` one had moved aside but not yet replaced."""
    for sibling in sorted(path.parent.glob(f".{path.name}.*")):
        parts = sibling.name[len(path.name) + 2 :].split(".")
        if not parts[0].isdigit() or _alive(int(parts[0])):
            continue
        if sibling.name.endswith(".partial"):
            shutil.rmtree(sibling, ignore_errors=True)
        elif sibling.name.endswith(".old"):
            if path.exists():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                os.replace(sibling, path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask would set it
    for a moment, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _row_encoder() -> Callable[[Any], str]:
    """``json.dumps(row, ensure_ascii=False)``, byte for byte, at 60-65% of its cost a row (a RoG
    build writes two rows per path found): the stdlib's C encoder made once, where
    ``JSONEncoder.encode`` makes one per call, and without the cycle check (rows are trees; a
    cycle still ends in RecursionError). Without that C encoder, the public one."""
    encoder = json.JSONEncoder(ensure_ascii=False, check_circular=False)
    separators = (encoder.key_separator, encoder.item_separator)
    try:
        from _json import make_encoder

        # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
        chunks = make_encoder(None, encoder.default, encode_basestring, None, *separators, False, False, True)
    except (ImportError, TypeError):  # another implementation, or its arguments changed
        return encoder.encode
    return lambda row: "".join(chunks(row, 0))


_encode_row = _row_encoder()


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with _jsonl_file(path) as handle:
        for row in rows:
            handle.write(_encode_row(row))
            handle.write("\n")
            count += 1
    return count


def _jsonl_file(path: Path) -> TextIO:
    return open(path, "w", encoding="utf-8", newline="\n")


def write_records_and_splits(
    folder: Path, records: Iterable[dict[str, Any]], render_row: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, int]:
    """``records.jsonl``, and each record rendered into ``train.jsonl`` or ``eval.jsonl`` by its
    ``split``, in one pass: ``records`` may be an iterator that builds them as they are written.
    Returns the number of records and of rows per split."""
    counts = {"records": 0, "train": 0, "eval": 0}
    with (
        _jsonl_file(folder / "records.jsonl") as all_records,
        _jsonl_file(folder / "train.jsonl") as train,
        _jsonl_file(folder / "eval.jsonl") as evaluation,
    ):
        by_split = {"train": train, "eval": evaluation}
        encode, write_record = _encode_row, all_records.write
        for record in records:  # no call per row: a RoG build writes ~40,000 rows of ~300 bytes
            write_record(encode(record))
            write_record("\n")
            split = record["split"]
            rows = by_split[split]
            rows.write(encode(render_row(record)))
            rows.write("\n")
            counts[split] += 1
    counts["records"] = counts["train"] + counts["eval"]
    return counts


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_hashes(source: str | Path) -> dict[str, str]:
    """sha256 of an input file, or of every file in an input folder (``hf:`` inputs: none)."""
    if str(source).startswith("hf:"):
        return {str(source): "hf-dataset"}
    path = Path(source)
    if path.is_file():
        return {str(path): sha256_file(path)}
    return {str(p): sha256_file(p) for p in visible_files(path)}


def write_manifest(
    out: Path,
    *,
    kind: str,
    options: dict[str, Any],
    inputs: dict[str, str],
    counts: dict[str, Any],
    outputs: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json``: version, kind, options, seed, sha256 of inputs/outputs, counts,
    then the ``extra`` sections (a generator's model, prompts, tokens and cost).

    Only ``created_at`` differs between two runs with the same inputs and options (and, with a
    generator, ``this_run`` and the per-task ``cached`` counts, which say what the run sent).
    ``outputs`` holds the files' sha256 when the caller hashed them already; by default every
    file in ``out``.
    """
    if outputs is None:
        outputs = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}
    manifest = {
        "hybridft_version": __version__,
        "kind": kind,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": options.get("seed"),
        "options": options,
        "inputs": inputs,
        "outputs": outputs,
        "counts": counts,
        **(extra or {}),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
