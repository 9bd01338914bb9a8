"""What a build folder says about its own data, for ``hybridft inspect``: the manifest's counts and
data-quality checks (``quality``), each with the first rows it flagged (``quality.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybridft.core.errors import InputError
from hybridft.core.readers import read_json_object


def inspect_build(folder: str | Path, examples: int) -> dict[str, Any]:
    """``{"dir", "kind", "counts", "quality": {check: {"count", "flagged": [row, ...]}}}`` with at
    most ``examples`` flagged rows per check. A folder built before the checks existed has
    ``quality`` None."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (give the --out folder of `hybridft build-data`)")
    missing = f"{folder}: no manifest.json: not the --out folder of a finished `hybridft build-data`"
    manifest = read_json_object(manifest_path, missing, f"{manifest_path}: not valid JSON")
    if not isinstance(manifest.get("kind"), str):
        raise InputError(f"{manifest_path}: not a build-data manifest (no 'kind')")
    counts = manifest.get("quality")
    quality = None
    if isinstance(counts, dict):
        flagged = _flagged_rows(folder / "quality.jsonl", examples)
        quality = {check: {"count": n, "flagged": flagged.get(check, [])} for check, n in counts.items()}
    return {"dir": str(folder), "kind": manifest["kind"], "counts": manifest.get("counts", {}), "quality": quality}


def _flagged_rows(path: Path, examples: int) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{number}: not valid JSON ({error})") from None
            if not isinstance(row, dict) or not isinstance(row.get("check"), str):
                raise InputError(f"{path}:{number}: expected an object with a 'check' name")
            kept = rows.setdefault(row["check"], [])
            if len(kept) < examples:
                kept.append({key: value for key, value in row.items() if key != "check"})
    return rows
