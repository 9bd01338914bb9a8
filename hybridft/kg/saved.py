"""A saved global KG (``hybridft index --kg``): the graph packed once into memory-mapped columns,
opened by every later run without reading it whole.

``KG_DIR`` holds one file per column of :class:`hybridft.kg.graph.KG` and ``manifest.json``:

- ``heads.npy``, ``rels.npy``, ``tails.npy``: int32 codes, one per triple, in the source's order;
- ``out_ptr.npy``/``out_edges.npy`` and ``in_ptr.npy``/``in_edges.npy``: the CSR indexes of
  out-edges (by head) and in-edges (by tail) that path search walks;
- ``entity_order.npy``: entity codes in the sorted order of their names, for binary search;
- ``entities.arrow``, ``relations.arrow``: names by code, arrow IPC files (one string column).

The numeric columns are ``.npy`` files opened with ``np.load(mmap_mode="r")`` and the names arrow
files opened through ``pa.memory_map``: opening reads the headers only, a search faults in the
pages it touches, and N processes on one machine share one copy through the page cache. The
manifest (``kind: kg``) holds the sha256 of the source KG and of every column (provenance, as in
every hybridft manifest; opening does not hash them, which would read the KG whole), the counts,
and each column's dtype; opening checks dtypes and lengths against those (cheaply, from the
headers) so that a foreign, truncated or mismatched folder is an exit-2 error naming it, not a
crash mid-build.

This module knows the format only; :func:`hybridft.kg.graph.read_kg` opens a folder through
:func:`open_columns`, and ``hybridft index --kg`` writes one with :func:`save`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hybridft.core.errors import UsageError
from hybridft.core.readers import read_json_object

MANIFEST = "manifest.json"
KIND = "kg"
FORMAT = 1
# Numeric columns: name -> what their length is counted in.
INT_COLUMNS = {
    "heads": "triples",
    "rels": "triples",
    "tails": "triples",
    "out_ptr": "entities+1",
    "out_edges": "triples",
    "in_ptr": "entities+1",
    "in_edges": "triples",
    "entity_order": "entities",
}
NAME_COLUMNS = {"entities": "entities", "relations": "relations"}
HINT = "write one with `hybridft index --kg KG.tsv --out KG_DIR`"


def save(kg: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Write ``kg`` (a :class:`~hybridft.kg.graph.KG` read from ``config["kg"]``) to
    ``config["out"]`` atomically, the options recorded in the manifest; return the manifest."""
    import pyarrow as pa

    from hybridft.core.outputs import atomic_output_dir, input_hashes, write_manifest
    from hybridft.core.progress import progress_bar

    # Names as arrow once (a .jsonl KG holds numpy ones): the name order and the names file use them.
    kg = dataclasses.replace(kg, entities=_as_arrow(kg.entities), relations=_as_arrow(kg.relations), _index=None)
    columns: dict[str, np.ndarray] = {
        "heads": kg.heads,
        "rels": kg.rels,
        "tails": kg.tails,
        "out_ptr": kg.out_ptr,
        "out_edges": kg.out_edges,
        "in_ptr": kg.in_ptr,
        "in_edges": kg.in_edges,
        "entity_order": kg.name_order(),
    }
    counts = {"triples": len(kg.heads), "entities": len(kg.entities), "relations": len(kg.relations)}
    layout: dict[str, Any] = {}
    with (
        atomic_output_dir(config["out"], config["overwrite"]) as temp,
        progress_bar("saving the KG", len(columns) + 2) as advance,
    ):
        for name, array in columns.items():
            np.save(temp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            layout[f"{name}.npy"] = {"dtype": np.dtype(array.dtype).str}
            advance()
        for name in NAME_COLUMNS:
            table = pa.table({"name": getattr(kg, name)})
            with pa.OSFile(str(temp / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            layout[f"{name}.arrow"] = {"dtype": str(table.schema.field("name").type)}
            advance()
        return write_manifest(
            temp,
            kind=KIND,
            options=config,
            inputs=input_hashes(config["kg"]),
            counts=counts,
            extra={"format": FORMAT, "columns": layout},
        )


def _as_arrow(names: Any) -> Any:
    """Names as one arrow string array (a numpy object array is converted; chunks combined)."""
    import pyarrow as pa

    if isinstance(names, np.ndarray):
        names = pa.array(names, type=pa.large_string() if _bytes(names) >= 2**31 else pa.string())
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks()
    if pa.types.is_dictionary(names.type):
        names = names.dictionary.take(names.indices)
    return names


def _bytes(names: np.ndarray) -> int:
    return sum(len(name.encode("utf-8")) for name in names.tolist())


# --- opening ------------------------------------------------------------------------------------


def open_columns(folder: str | Path) -> dict[str, Any]:
    """The columns of the saved KG in ``folder``, memory-mapped (numpy memmaps and arrow arrays
    over ``pa.memory_map``). Every check reads headers and single elements
    only; a folder that is no saved KG, or is damaged, is an exit-2 error naming it."""
    path = Path(folder)
    manifest = read_manifest(path)
    counts = manifest["counts"]
    sizes = {
        "triples": counts["triples"],
        "entities": counts["entities"],
        "entities+1": counts["entities"] + 1,
        "relations": counts["relations"],
    }
    layout = manifest["columns"]
    columns: dict[str, Any] = {}
    for name, unit in INT_COLUMNS.items():
        columns[name] = _open_npy(path, f"{name}.npy", _dtype(path, f"{name}.npy", layout), sizes[unit])
    for name, unit in NAME_COLUMNS.items():
        columns[name] = _open_arrow(path, f"{name}.arrow", sizes[unit])
    for name in ("out_ptr", "in_ptr"):  # the CSR pointers end where the edges do
        ptr = columns[name]
        if int(ptr[0]) != 0 or int(ptr[-1]) != counts["triples"]:
            raise _damaged(path, f"{name}.npy", f"does not index {counts['triples']} edges")
    return columns


def read_manifest(path: Path) -> dict[str, Any]:
    """A saved KG's manifest, checked to be one this version can open."""
    if not path.is_dir():
        raise UsageError(f"--kg {path}: no such folder; {HINT}")
    manifest = read_json_object(
        path / MANIFEST,
        f"--kg {path}: not a saved KG (no {MANIFEST}); {HINT}",
        f"--kg {path}: {MANIFEST} is damaged; rebuild the folder",
    )
    if manifest.get("kind") != KIND:
        kind = manifest.get("kind")
        written_by = f"a `{kind}` folder" if isinstance(kind, str) else "a folder of another kind"
        raise UsageError(f"--kg {path}: {written_by}, not a saved KG; {HINT}")
    if manifest.get("format") != FORMAT:
        raise UsageError(
            f"--kg {path}: saved KG format {manifest.get('format')!r} (hybridft "
            f"{manifest.get('hybridft_version')}); this version reads format {FORMAT}: rebuild it"
        )
    counts, layout = manifest.get("counts"), manifest.get("columns")
    if not (
        isinstance(counts, dict)
        and all(isinstance(counts.get(key), int) for key in ("triples", "entities", "relations"))
        and isinstance(layout, dict)
    ):
        raise UsageError(f"--kg {path}: {MANIFEST} is damaged (no counts or columns); rebuild the folder")
    return manifest


def _damaged(path: Path, file: str, what: str) -> UsageError:
    return UsageError(f"--kg {path}: damaged saved KG: {file} {what}; rebuild it with `hybridft index --kg`")


def _dtype(path: Path, file: str, layout: dict[str, Any]) -> str:
    entry = layout.get(file)
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        raise _damaged(path, file, f"is not listed in {MANIFEST}")
    return entry["dtype"]


def _open_npy(path: Path, file: str, dtype: str, length: int) -> np.ndarray:
    try:
        array = np.load(path / file, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise _damaged(path, file, "is missing") from None
    except (OSError, ValueError) as exc:  # a bad header, or a file shorter than its header says
        raise _damaged(path, file, f"cannot be read ({exc})") from None
    if array.ndim != 1 or array.dtype.str != dtype or len(array) != length:
        raise _damaged(path, file, f"holds {array.shape} {array.dtype}, the manifest says {length} {dtype}")
    return array


def _open_arrow(path: Path, file: str, length: int) -> Any:
    import pyarrow as pa

    try:
        with pa.ipc.open_file(pa.memory_map(str(path / file), "r")) as reader:
            table = reader.read_all()  # zero-copy: the arrays point into the memory map
    except FileNotFoundError:
        raise _damaged(path, file, "is missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise _damaged(path, file, f"cannot be read ({exc})") from None
    if table.column_names != ["name"] or not (
        pa.types.is_string(table.schema.field(0).type) or pa.types.is_large_string(table.schema.field(0).type)
    ):
        raise _damaged(path, file, f"holds {table.schema}, expected one string column `name`")
    names = table.column(0)
    if len(names) != length:
        raise _damaged(path, file, f"holds {len(names)} names, the manifest says {length}")
    return names.chunk(0) if names.num_chunks == 1 else names
