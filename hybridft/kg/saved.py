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
manifest (``kind: kg``) holds the sha256 of the source KG and of every column, the counts, and
each column's dtype and length, which opening checks (cheaply, from the headers) so that a
foreign, truncated or mismatched folder is an exit-2 error naming it, not a crash mid-build.

This module knows the format only; :func:`hybridft.kg.graph.read_kg` opens a folder through
:func:`open_columns`, and ``hybridft index --kg`` writes one with :func:`save`.
"""

from __future__ import annotations

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


def save(kg: Any, source: str | Path, out: str | Path, overwrite: bool) -> dict[str, Any]:
    """Write ``kg`` (a :class:`~hybridft.kg.graph.KG` read from ``source``) to ``out`` atomically;
    return the manifest."""
    import pyarrow as pa

    from hybridft.core.outputs import atomic_output_dir, input_hashes, write_manifest
    from hybridft.core.progress import progress_bar

    order = _entity_order(kg)
    columns: dict[str, np.ndarray] = {
        "heads": kg.heads,
        "rels": kg.rels,
        "tails": kg.tails,
        "out_ptr": kg.out_ptr,
        "out_edges": kg.out_edges,
        "in_ptr": kg.in_ptr,
        "in_edges": kg.in_edges,
        "entity_order": order,
    }
    counts = {"triples": len(kg.heads), "entities": len(kg.entities), "relations": len(kg.relations)}
    layout: dict[str, Any] = {}
    with atomic_output_dir(out, overwrite) as temp, progress_bar("saving the KG", len(columns) + 2) as advance:
        for name, array in columns.items():
            np.save(temp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            layout[f"{name}.npy"] = {"dtype": np.dtype(array.dtype).str, "length": len(array)}
            advance()
        for name in NAME_COLUMNS:
            names = _as_arrow(getattr(kg, name))
            table = pa.table({"name": names})
            with pa.OSFile(str(temp / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            layout[f"{name}.arrow"] = {"dtype": str(table.schema.field("name").type), "length": len(names)}
            advance()
        return write_manifest(
            temp,
            kind=KIND,
            options={"kg": str(source), "out": str(out), "overwrite": overwrite},
            inputs=input_hashes(source),
            counts=counts,
            extra={"format": FORMAT, "columns": layout},
        )


def _entity_order(kg: Any) -> np.ndarray:
    """Entity codes sorted by name (UTF-8 byte order, which is code-point order: what
    ``KG.ids``'s binary search compares)."""
    import pyarrow.compute as pc

    order = pc.sort_indices(_as_arrow(kg.entities)).to_numpy()
    return order.astype(np.int32 if len(order) < 2**31 else np.int64)


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
    columns: dict[str, Any] = {}
    layout = manifest["columns"]
    for name in INT_COLUMNS:
        columns[name] = _open_npy(path, f"{name}.npy", layout)
    for name in NAME_COLUMNS:
        columns[name] = _open_arrow(path, f"{name}.arrow", layout)
    _check_shapes(path, columns, manifest["counts"])
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


def _expected(path: Path, file: str, layout: dict[str, Any]) -> dict[str, Any]:
    entry = layout.get(file)
    if not isinstance(entry, dict) or not isinstance(entry.get("length"), int):
        raise _damaged(path, file, f"is not listed in {MANIFEST}")
    return entry


def _open_npy(path: Path, file: str, layout: dict[str, Any]) -> np.ndarray:
    expected = _expected(path, file, layout)
    try:
        array = np.load(path / file, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise _damaged(path, file, "is missing") from None
    except (OSError, ValueError) as exc:  # a bad header, or a file shorter than its header says
        raise _damaged(path, file, f"cannot be read ({exc})") from None
    if array.ndim != 1 or array.dtype.str != expected.get("dtype") or len(array) != expected["length"]:
        raise _damaged(
            path,
            file,
            f"holds {array.shape} {array.dtype}, the manifest says {expected['length']} {expected.get('dtype')}",
        )
    return array


def _open_arrow(path: Path, file: str, layout: dict[str, Any]) -> Any:
    import pyarrow as pa

    expected = _expected(path, file, layout)
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
    if len(names) != expected["length"]:
        raise _damaged(path, file, f"holds {len(names)} names, the manifest says {expected['length']}")
    return names.chunk(0) if names.num_chunks == 1 else names


def _check_shapes(path: Path, columns: dict[str, Any], counts: dict[str, int]) -> None:
    """Lengths agree with the counts, and the CSR pointers end where the edges do (single
    elements read, nothing scanned)."""
    sizes = {
        "triples": counts["triples"],
        "entities": counts["entities"],
        "entities+1": counts["entities"] + 1,
        "relations": counts["relations"],
    }
    for name, unit in {**INT_COLUMNS, **NAME_COLUMNS}.items():
        if len(columns[name]) != sizes[unit]:
            raise _damaged(path, name, f"has {len(columns[name])} entries for {sizes[unit]} {unit}")
    for name in ("out_ptr", "in_ptr"):
        ptr = columns[name]
        if int(ptr[0]) != 0 or int(ptr[-1]) != counts["triples"]:
            raise _damaged(path, f"{name}.npy", f"does not index {counts['triples']} edges")
