"""Knowledge graphs for RoG: integer-indexed CSR adjacency that keeps direction and parallel edges.

RoG's reference code loads each question's graph into a networkx *simple undirected* graph: of
two relations between the same pair of entities only one survives, and a reversed edge is later
printed as if it pointed forward. Here every triple is an edge ``head --relation--> tail``;
walking "undirected" means an edge may also be stepped from its tail to its head, and such a step
is remembered so the rendered fact stays true (``e1 <- r <- e2``).

Shortest relation paths are found without enumerating node paths: one breadth-first search from
the answer entity gives every node's distance to it, and relation sequences are then grown layer
by layer from the question entity along edges that keep to a shortest path, deduplicated per node.
A hub with thousands of neighbours costs one vectorised expansion, not thousands of paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridft.core.errors import InputError

UNREACHED = np.int16(32767)
# Reasoning-path enumeration stops here for one question (a hub can make it explode); the
# manifest counts the questions where it did.
CHAIN_LIMIT = 100_000


@dataclass
class KG:
    """Triples as integer arrays plus CSR indexes of out-edges (by head) and in-edges (by tail)."""

    entities: Any  # names by entity id: a numpy object array or a pyarrow string array
    relations: Any  # names by relation id, likewise
    heads: np.ndarray
    rels: np.ndarray
    tails: np.ndarray
    out_ptr: np.ndarray = field(repr=False)
    out_edges: np.ndarray = field(repr=False)
    in_ptr: np.ndarray = field(repr=False)
    in_edges: np.ndarray = field(repr=False)
    _index: Any = field(default=None, repr=False)
    _relation_ids: dict[str, int] | None = field(default=None, repr=False)

    @classmethod
    def from_arrays(cls, heads: np.ndarray, rels: np.ndarray, tails: np.ndarray) -> KG:
        """Build from three equally long object arrays of names (one triple per position)."""
        import pandas as pd

        m = len(heads)
        codes, entities = pd.factorize(np.concatenate([heads, tails]), sort=False)
        rel_codes, relations = pd.factorize(rels, sort=False)
        return cls.from_codes(
            codes[:m], rel_codes, codes[m:], np.asarray(entities, object), np.asarray(relations, object)
        )

    @classmethod
    def from_codes(cls, heads: np.ndarray, rels: np.ndarray, tails: np.ndarray, entities: Any, relations: Any) -> KG:
        """Build from integer triples; ``entities``/``relations`` name the codes (numpy object
        arrays, or pyarrow string arrays for a large global KG, which keep names compact)."""
        head_ids = np.asarray(heads, dtype=np.int32)
        tail_ids = np.asarray(tails, dtype=np.int32)
        n = len(entities)
        out_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(head_ids, minlength=n), out=out_ptr[1:])
        in_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(tail_ids, minlength=n), out=in_ptr[1:])
        return cls(
            entities,
            relations,
            head_ids,
            np.asarray(rels, dtype=np.int32),
            tail_ids,
            out_ptr,
            np.argsort(head_ids, kind="stable").astype(np.int32),
            in_ptr,
            np.argsort(tail_ids, kind="stable").astype(np.int32),
        )

    @classmethod
    def from_triples(cls, triples: list[Any], where: str = "graph") -> KG:
        """Build from ``[[h, r, t], ...]``; a triple without exactly three strings is an error."""
        import pandas as pd

        try:
            well_formed = bool(triples) and set(map(len, triples)) == {3}
        except TypeError:  # an element without a length
            well_formed = False
        columns = [np.array(column, dtype=object) for column in zip(*triples, strict=True)] if well_formed else []
        if not well_formed or any(pd.api.types.infer_dtype(c, skipna=False) != "string" for c in columns):
            for n, triple in enumerate(triples):
                if not (
                    isinstance(triple, (list, tuple)) and len(triple) == 3 and all(isinstance(x, str) for x in triple)
                ):
                    raise InputError(f"{where}: triple {n} is {triple!r}, expected [head, relation, tail] strings")
            raise InputError(f"{where}: no triples")
        return cls.from_arrays(*columns)

    @property
    def size(self) -> int:
        return len(self.entities)

    def ids(self, names: list[str]) -> list[int | None]:
        """Entity ids of ``names``; None for names not in the graph."""
        if isinstance(self.entities, np.ndarray):
            if self._index is None:
                import pandas as pd

                self._index = pd.Index(self.entities, dtype=object)
            return [int(i) if i >= 0 else None for i in self._index.get_indexer(names)]
        # A global KG: binary search in the names' sorted order. (pyarrow's index_in would hash
        # the whole name set again on every call.)
        self.name_order()  # sorted once, kept in _index
        return [self._find(name) for name in names]

    def name_order(self) -> np.ndarray:
        """Entity ids sorted by name (UTF-8 byte order, which is code-point order: what the binary
        search of :meth:`ids` compares), for a KG whose names are an arrow array; computed once,
        or the order a saved KG was opened with."""
        if self._index is None:
            import pyarrow.compute as pc

            order = pc.sort_indices(self.entities).to_numpy()
            self._index = order.astype(np.int32 if len(order) < 2**31 else np.int64)
        return self._index

    def _find(self, name: str) -> int | None:
        order, low, high = self._index, 0, len(self._index)
        while low < high:
            middle = (low + high) // 2
            if self.entity(order[middle]) < name:
                low = middle + 1
            else:
                high = middle
        if low < len(order) and self.entity(order[low]) == name:
            return int(order[low])
        return None

    def relation_ids(self) -> dict[str, int]:
        """Relation name -> id (relations are few; built once)."""
        if self._relation_ids is None:
            names = self.relations.tolist() if isinstance(self.relations, np.ndarray) else self.relations.to_pylist()
            self._relation_ids = {name: i for i, name in enumerate(names)}
        return self._relation_ids

    def entity(self, entity_id: int) -> str:
        return _name(self.entities, entity_id)

    def relation(self, relation_id: int) -> str:
        return _name(self.relations, relation_id)

    # --- traversal ---------------------------------------------------------------------------

    def steps(self, nodes: np.ndarray, directed: bool, backward: bool = False) -> tuple[np.ndarray, ...]:
        """Every step out of ``nodes``: (from node, edge id, to node, forward?) arrays.

        A forward step follows an edge head -> tail; a backward step goes tail -> head and is
        taken when walking undirected (``directed`` False) or when ``backward`` asks for reversed
        edges only (a directed search from the answer end).
        """
        parts = []
        if not backward:
            edges, sources = _expand(self.out_ptr, self.out_edges, nodes)
            parts.append((sources, edges, self.tails[edges], np.ones(len(edges), dtype=bool)))
        if backward or not directed:
            edges, sources = _expand(self.in_ptr, self.in_edges, nodes)
            parts.append((sources, edges, self.heads[edges], np.zeros(len(edges), dtype=bool)))
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def distances(self, source: int, max_hops: int, directed: bool, towards: bool = False) -> np.ndarray:
        """Hop distance of every entity from ``source`` (UNREACHED beyond ``max_hops``).

        With ``towards`` and ``directed``, distances are measured along edges *into* ``source``
        (how far each entity is from reaching it), which is what a search from the answer needs.
        """
        dist = np.full(self.size, UNREACHED, dtype=np.int16)
        dist[source] = 0
        frontier = np.array([source], dtype=np.int32)
        for hop in range(1, max_hops + 1):
            _, _, reached, _ = self.steps(frontier, directed, backward=directed and towards)
            reached = np.unique(reached[dist[reached] == UNREACHED])
            if len(reached) == 0:
                break
            dist[reached] = hop
            frontier = reached.astype(np.int32)
        return dist


def _name(names: Any, index: int) -> str:
    value = names[int(index)]
    return value if isinstance(value, str) else value.as_py()


def _expand(ptr: np.ndarray, order: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All CSR entries of ``nodes`` at once: (edge ids, the node each came from)."""
    starts = ptr[nodes]
    counts = ptr[nodes + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
    # Position k of node j's run maps to starts[j] + k: one repeat and one arange, no Python loop.
    run_starts = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return order[run_starts + np.arange(total)], np.repeat(nodes, counts)


# --- relation paths and reasoning paths ---------------------------------------------------------


def shortest_relation_paths(
    kg: KG, q_ids: list[int], a_ids: list[int], max_hops: int, directed: bool
) -> list[tuple[str, ...]]:
    """Relation sequences of every shortest path from a question entity to an answer entity,
    for every (question, answer) pair, deduplicated and sorted. Parallel edges each give their own
    sequence; edges are stepped both ways unless ``directed``."""
    found: set[tuple[str, ...]] = set()
    for a in dict.fromkeys(a_ids):
        to_answer = kg.distances(a, max_hops, directed, towards=True)
        for q in dict.fromkeys(q_ids):
            length = int(to_answer[q])
            if q == a or length > max_hops:
                continue
            found.update(_sequences_along_shortest_paths(kg, q, a, length, to_answer, directed))
    return sorted(found)


def _sequences_along_shortest_paths(
    kg: KG, q: int, a: int, length: int, to_answer: np.ndarray, directed: bool
) -> set[tuple[str, ...]]:
    layer: dict[int, set[tuple[int, ...]]] = {q: {()}}
    for hop in range(length):
        nodes = np.fromiter(layer, dtype=np.int32, count=len(layer))
        sources, edges, targets, _ = kg.steps(nodes, directed)
        keep = to_answer[targets] == length - hop - 1
        following: dict[int, set[tuple[int, ...]]] = {}
        for source, edge, target in zip(
            sources[keep].tolist(), edges[keep].tolist(), targets[keep].tolist(), strict=True
        ):
            rel = int(kg.rels[edge])
            bucket = following.setdefault(target, set())
            for prefix in layer[source]:
                bucket.add((*prefix, rel))
        layer = following
    return {tuple(kg.relation(r) for r in seq) for seq in layer.get(a, ())}


Triple = tuple[str, str, str]


@dataclass
class Chains:
    """Reasoning paths of one question: the kept chains and what the cap cut."""

    chains: list[list[Triple]]
    cut: int
    hit_limit: bool


def reasoning_paths(
    kg: KG, q_ids: list[int], relation_paths: list[tuple[str, ...]], directed: bool, cap: int
) -> Chains:
    """Follow each relation path from each question entity; every chain is a list of triples in
    their true direction, cycle-free. Sorted, deduplicated, and the first ``cap`` kept."""
    rel_ids = kg.relation_ids()
    found: set[tuple[Triple, ...]] = set()
    hit_limit = False
    for path in relation_paths:
        wanted = [rel_ids.get(name) for name in path]
        if None in wanted:
            continue
        for q in dict.fromkeys(q_ids):
            hit_limit |= _follow(kg, q, wanted, directed, found)  # type: ignore[arg-type]
            if hit_limit:
                break
    ordered = sorted(found)
    return Chains([list(chain) for chain in ordered[:cap]], max(0, len(ordered) - cap), hit_limit)


def _follow(kg: KG, start: int, wanted: list[int], directed: bool, found: set[tuple[Triple, ...]]) -> bool:
    """Depth-first walk of ``wanted`` relations from ``start``; adds chains to ``found``.
    Returns True when CHAIN_LIMIT stopped it."""
    stack: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = [(start, (start,), ())]
    while stack:
        node, visited, edges = stack.pop()
        hop = len(edges)
        if hop == len(wanted):
            found.add(tuple(_triple(kg, e) for e in edges))
            if len(found) >= CHAIN_LIMIT:
                return True
            continue
        _, step_edges, targets, _ = kg.steps(np.array([node], dtype=np.int32), directed)
        match = kg.rels[step_edges] == wanted[hop]
        for edge, target in zip(step_edges[match].tolist(), targets[match].tolist(), strict=True):
            if target not in visited:
                stack.append((target, (*visited, target), (*edges, edge)))
    return False


def _triple(kg: KG, edge: int) -> Triple:
    return (kg.entity(kg.heads[edge]), kg.relation(kg.rels[edge]), kg.entity(kg.tails[edge]))


# --- global KG files ----------------------------------------------------------------------------


def read_kg(path: str | Path) -> KG:
    """A global KG from ``.tsv`` (head, relation, tail per line) or ``.jsonl`` ``[h, r, t]`` rows,
    or a folder written by ``hybridft index --kg`` (opened memory-mapped, nothing read whole)."""
    path = Path(path)
    if path.is_dir():
        return open_saved_kg(path)
    name = path.name
    if name.endswith((".tsv", ".tsv.gz")):
        return _read_tsv(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl_triples(path)
    raise InputError(f"{path}: unsupported KG file (expected .tsv or .jsonl triples)")


def open_saved_kg(folder: str | Path) -> KG:
    """The KG saved in ``folder`` (see :mod:`hybridft.kg.saved`): its columns memory-mapped, the
    name lookup's sorted order saved with them, so opening costs the same at any size."""
    from hybridft.kg.saved import open_columns

    c = open_columns(folder)
    # Plain ndarray views of the memmaps (no copy): numpy's memmap subclass costs ~5% per search.
    heads, rels, tails, out_ptr, out_edges, in_ptr, in_edges, order = (
        np.asarray(c[name])
        for name in ("heads", "rels", "tails", "out_ptr", "out_edges", "in_ptr", "in_edges", "entity_order")
    )
    return KG(c["entities"], c["relations"], heads, rels, tails, out_ptr, out_edges, in_ptr, in_edges, _index=order)


def _read_tsv(path: Path) -> KG:
    """pyarrow's multi-threaded CSV reader, then dictionary encoding: names stay in compact arrow
    buffers instead of millions of Python strings."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    bad_rows = []

    def on_bad_row(row: Any) -> str:
        bad_rows.append(row)
        return "skip"

    columns = ["h", "r", "t"]
    try:
        table = csv.read_csv(
            path,
            read_options=csv.ReadOptions(column_names=columns),
            parse_options=csv.ParseOptions(delimiter="\t", quote_char=False, invalid_row_handler=on_bad_row),
            convert_options=csv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    blank = pc.or_(pc.or_(pc.equal(table["h"], ""), pc.equal(table["r"], "")), pc.equal(table["t"], ""))
    if bad_rows or pc.any(blank).as_py():
        raise InputError(f"{path}:{_first_bad_tsv_line(path)}: expected head<TAB>relation<TAB>tail")
    if table.num_rows == 0:
        raise InputError(f"{path}: no triples (an empty KG cannot be used)")
    # One array, one hash table: encoding the reader's many chunks separately and unifying their
    # dictionaries afterwards was 12x slower and took 2.5x the memory (2M triples, measured).
    entities = pc.dictionary_encode(pa.concat_arrays(table["h"].chunks + table["t"].chunks))
    relations = pc.dictionary_encode(table["r"].combine_chunks())
    codes = entities.indices.to_numpy()
    m = table.num_rows
    del table
    return KG.from_codes(codes[:m], relations.indices.to_numpy(), codes[m:], entities.dictionary, relations.dictionary)


def _first_bad_tsv_line(path: Path) -> int:
    """The line number of the first line without three non-empty fields (only on error)."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            if line.strip() and (len(fields) != 3 or "" in fields):
                return lineno
    return 0


SHOWN_BYTES = 120  # of a bad line, in its error


def _read_jsonl_triples(path: Path) -> KG:
    import orjson

    from hybridft.core.readers import numbered_lines

    triples = []
    with numbered_lines(path) as lines:
        for lineno, raw in lines:
            if raw.isspace():
                continue
            try:
                triple = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise InputError(f"{path}:{lineno}: invalid JSON") from None
            if not (isinstance(triple, list) and len(triple) == 3 and all(isinstance(x, str) for x in triple)):
                # The line as written, cut: a repr of the row could be huge, or too deep to write.
                shown = raw.strip()[:SHOWN_BYTES].decode("utf-8", errors="replace")
                cut = "..." if len(raw.strip()) > SHOWN_BYTES else ""
                raise InputError(f"{path}:{lineno}: expected [head, relation, tail] strings, got {shown}{cut}")
            triples.append(triple)
    if not triples:
        raise InputError(f"{path}: no triples (an empty KG cannot be used)")
    return KG.from_triples(triples, str(path))
