"""Shortest relation paths for many small graphs at once (one graph per RoG question).

A RoG-webqsp row carries its own graph of ~4,300 triples. Indexing and searching each graph on
its own paid numpy/pandas call overhead dozens of times per question, more than the work itself.
Here each graph is packed into arrow as its row is read (pyarrow converts and checks the
triples, and numbers the names), a batch of questions becomes one disjoint union of the packed
graphs, and the breadth-first searches of all the batch's questions run as one level-synchronous
sweep over the union's edge list (a few whole-array numpy operations per hop, no index to sort).
Only the few edges on a shortest path to an answer reach Python, where their relation sequences
are grown.

The result equals :func:`hybridft.kg.graph.shortest_relation_paths` on each graph alone (tested): every
shortest path from a question entity to an answer entity, as its relation sequence, edges walked
both ways unless ``directed``, parallel edges each giving their own sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from hybridft.kg.graph import KG

# Farther than any max_hops; distances are int16 and ``FAR + 1`` must not overflow.
FAR = 16000


class MalformedGraph(Exception):
    """A graph is not a list of three-string triples (checked one by one, the caller reports it)."""


@dataclass
class PackedGraph:
    """One question's graph in arrow, its names numbered on their own (small hash tables, and no
    second hashing to tell questions apart in a batch).

    Packing right after a row is parsed converts its strings while they are still in the CPU
    cache, and lets the row's Python lists be freed there too.
    """

    heads: np.ndarray  # name codes (numpy's index type), one per triple
    rels: np.ndarray
    tails: np.ndarray
    names: Any  # pyarrow string array, by code (looked-up names missing from the graph included)
    looked_up: np.ndarray  # codes of the looked-up names, -1 for a name that is no head or tail

    @classmethod
    def of(cls, graph: list[Any], lookups: list[str]) -> PackedGraph:
        """Pack a non-empty graph; MalformedGraph when some triple is not three strings."""
        import pyarrow as pa

        try:  # a fixed-size list type refuses a triple of another length
            triples = pa.array(graph, type=pa.list_(pa.string(), 3))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise MalformedGraph from None
        if triples.null_count or triples.values.null_count:
            raise MalformedGraph
        return cls.of_names(triples.values, lookups)

    @classmethod
    def of_names(cls, names: Any, lookups: list[str]) -> PackedGraph:
        """Pack a graph given as an arrow array of its names, h, r, t, h, r, t, ... (a string or a
        string_view array, as :mod:`hybridft.kg.rows` cuts them out of a line)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        # The looked-up names are numbered with the graph's: one hash table, no second search.
        encoded = pc.dictionary_encode(pa.concat_arrays([names, pa.array(lookups, type=names.type)]))
        codes = encoded.indices.to_numpy()
        # Contiguous columns of numpy's index type, made here on the worker threads: the batch
        # concatenates them, and gathers with them on every hop.
        heads, rels, tails = (codes[i : len(names) : 3].astype(np.intp) for i in range(3))
        looked_up = codes[len(names) :].astype(np.intp)
        is_entity = np.zeros(len(encoded.dictionary), dtype=bool)
        is_entity[heads] = True
        is_entity[tails] = True
        # The distinct names as a plain string array: they outlive the line the views point into.
        dictionary = encoded.dictionary.cast(pa.string())
        return cls(heads, rels, tails, dictionary, np.where(is_entity.take(looked_up), looked_up, -1))


@dataclass
class GraphBatch:
    """The disjoint union of several questions' graphs.

    A node id is its graph's offset plus the name's code there, so the same name in two graphs is
    two nodes; a relation is numbered the same way (its name's node id), which is enough within
    one question. Ids are numpy's own index type: gathers with them skip a conversion per call.
    """

    names: Any  # pyarrow string array, by node id (entities' and relations' names)
    node_question: np.ndarray  # the batch position of each node's question
    heads: np.ndarray  # node ids, one per triple
    rels: np.ndarray  # relations' node ids, one per triple
    tails: np.ndarray
    n_questions: int
    looked_up: list[list[int | None]]  # node ids of the names looked up, per question (None: absent)

    @classmethod
    def from_packed(cls, graphs: list[PackedGraph]) -> GraphBatch:
        """Union of packed graphs, in order."""
        import pyarrow as pa

        widths = np.fromiter((len(g.names) for g in graphs), dtype=np.intp, count=len(graphs))
        sizes = np.fromiter((len(g.heads) for g in graphs), dtype=np.intp, count=len(graphs))
        offsets = np.cumsum(widths) - widths
        shift = np.repeat(offsets, sizes)
        heads, rels, tails = (
            np.concatenate([getattr(g, column) for g in graphs]) for column in ("heads", "rels", "tails")
        )
        heads += shift
        rels += shift
        tails += shift
        looked_up = [
            [code + offset if code >= 0 else None for code in graph.looked_up.tolist()]
            for offset, graph in zip(offsets.tolist(), graphs, strict=True)
        ]
        return cls(
            names=pa.concat_arrays([g.names for g in graphs]),
            node_question=np.repeat(np.arange(len(graphs), dtype=np.intp), widths),
            heads=heads,
            rels=rels,
            tails=tails,
            n_questions=len(graphs),
            looked_up=looked_up,
        )

    @classmethod
    def from_graphs(cls, graphs: list[list[Any]], lookups: list[list[str]]) -> GraphBatch:
        """Union of non-empty ``graphs`` of ``[h, r, t]`` lists; ``lookups[j]`` names entities whose
        node ids in graph j are wanted (``looked_up``)."""
        return cls.from_packed([PackedGraph.of(g, names) for g, names in zip(graphs, lookups, strict=True)])

    def kg(self) -> KG:
        """The union as a :class:`KG` (CSR-indexed), for following relation paths: a walk from a
        question's entity never leaves that question's graph."""
        import pyarrow.compute as pc

        # A KG looks relations up by name: one numbering of the relation names for the batch.
        relations = pc.dictionary_encode(self.names.take(self.rels))
        # Names as Python strings: reasoning paths read them one at a time, and a pyarrow scalar
        # costs ~2 us per read.
        entities = self.names.to_numpy(zero_copy_only=False)
        return KG.from_codes(
            self.heads,
            relations.indices.to_numpy(),
            self.tails,
            entities,
            relations.dictionary.to_numpy(zero_copy_only=False),
        )

    def relation_paths(
        self, q_ids: list[list[int]], a_ids: list[list[int]], max_hops: int, directed: bool
    ) -> list[list[tuple[str, ...]]]:
        """Per question of the batch, the sorted relation sequences of every shortest path from one
        of its ``q_ids`` to one of its ``a_ids`` (node ids), at most ``max_hops`` long."""
        found: list[set[tuple[int, ...]]] = [set() for _ in q_ids]
        sources = [list(dict.fromkeys(ids)) for ids in q_ids]
        # One search per question entity: round r searches from the r-th entity of every question
        # that has one (most questions have one), so each pair keeps its own shortest length.
        for r in range(max(map(len, sources), default=0)):
            questions = [j for j, ids in enumerate(sources) if len(ids) > r and a_ids[j]]
            if questions:
                edges = self._edges_of(questions)
                starts = [sources[j][r] for j in questions]
                answers = list(chain.from_iterable(a_ids[j] for j in questions))
                _search(self, edges, starts, answers, max_hops, directed, found)
        used = sorted({rel for seqs in found for seq in seqs for rel in seq})
        name_of = dict(zip(used, self.names.take(np.array(used, dtype=np.intp)).to_pylist(), strict=True))
        name = name_of.__getitem__
        return [sorted({tuple(map(name, seq)) for seq in seqs}) for seqs in found]

    def _edges_of(self, questions: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(heads, rels, tails) of the triples of ``questions`` only."""
        if len(questions) == self.n_questions:
            return self.heads, self.rels, self.tails
        wanted = np.zeros(self.n_questions, dtype=bool)
        wanted[questions] = True
        keep = wanted.take(self.node_question.take(self.heads))
        return np.compress(keep, self.heads), np.compress(keep, self.rels), np.compress(keep, self.tails)


def _search(
    batch: GraphBatch,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray],
    starts: list[int],
    answers: list[int],
    max_hops: int,
    directed: bool,
    found: list[set[tuple[int, ...]]],
) -> None:
    """A breadth-first search from each of ``starts`` (one per question, all at once), then the
    relation sequences of the shortest paths to the questions' ``answers``, added to ``found``."""
    heads, rels, tails = edges
    dist = np.full(len(batch.node_question), FAR, dtype=np.int16)
    dist[starts] = 0
    # take and compress, not fancy and boolean indexing: several times faster on these arrays.
    for hop in range(1, max_hops + 1):
        reached = np.compress(dist.take(heads) == hop - 1, tails)
        if not directed:
            reached = np.concatenate([reached, np.compress(dist.take(tails) == hop - 1, heads)])
        reached = np.compress(dist.take(reached) == FAR, reached)
        if len(reached) == 0:
            break
        dist[reached] = hop
    targets = np.array(answers, dtype=np.intp)
    target_dist = dist.take(targets)
    targets = np.compress((target_dist > 0) & (target_dist <= max_hops), targets)
    if len(targets) == 0:
        return
    # A step lies on a shortest path from the start when it goes one level further; of those, keep
    # the ones that lead on to an answer (marked backwards from the answers, a level per pass).
    head_level, tail_level = dist.take(heads), dist.take(tails)
    forward = np.flatnonzero(tail_level == head_level + 1)
    backward = np.zeros(0, dtype=np.intp) if directed else np.flatnonzero(head_level == tail_level + 1)
    froms = np.concatenate([heads.take(forward), tails.take(backward)])
    tos = np.concatenate([tails.take(forward), heads.take(backward)])
    leads = np.zeros(len(dist), dtype=bool)
    leads[targets] = True
    for _ in range(int(dist.take(targets).max()) - 1):
        leads[np.compress(leads.take(tos), froms)] = True
    useful = leads.take(tos)
    froms, tos = np.compress(useful, froms), np.compress(useful, tos)
    step_rels = np.compress(useful, np.concatenate([rels.take(forward), rels.take(backward)]))
    order = np.lexsort((dist.take(froms), batch.node_question.take(froms)))
    reaching = _grow(froms.take(order).tolist(), tos.take(order).tolist(), step_rels.take(order).tolist())
    for target in set(targets.tolist()):
        found[int(batch.node_question[target])].update(reaching[target])


def _grow(froms: list[int], tos: list[int], rels: list[int]) -> dict[int, set[tuple[int, ...]]]:
    """Relation sequences reaching each node along steps given level by level: those reaching its
    predecessors, each extended by the step's relation. Sets keep parallel relations apart and
    drop duplicates; a node first seen as a step's origin is a search's start."""
    reaching: dict[int, set[tuple[int, ...]]] = {}
    for source, target, rel in zip(froms, tos, rels, strict=True):
        prefixes = reaching.get(source)
        if prefixes is None:
            prefixes = reaching[source] = {()}
        bucket = reaching.setdefault(target, set())
        for prefix in prefixes:
            bucket.add((*prefix, rel))
    return reaching
