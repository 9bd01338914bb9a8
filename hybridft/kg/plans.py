"""The relation paths that exist in a question's graph, as a trie grown on demand.

Constrained RoG planning asks, one hop at a time, "which relations can follow the relations
planned so far?". The answer here is exact in the sense ``reasoning_paths`` uses: a relation path
exists when some cycle-free walk from a question entity follows it (edges stepped both ways unless
``directed``). Each trie node keeps the walks that reach it — (end entity, entities visited) — and
its children are computed the first time they are asked for, so a beam search touches only the
few prefixes it explores, not every path of a hub's neighbourhood up to ``max_hops``.

A node with more than ``STATE_LIMIT`` walks keeps the first ``STATE_LIMIT`` (in edge order): a
child found from them exists, so every path the trie offers is real; only a rare path reachable
solely through the dropped walks is missed.
"""

from __future__ import annotations

import numpy as np

from hybridft.kg.graph import KG

STATE_LIMIT = 100_000

Walk = tuple[int, tuple[int, ...]]  # (end entity, entities visited in order)


class RelationPathTrie:
    """Relation paths (by name) that start at one of ``q_ids`` and are at most ``max_hops`` long."""

    def __init__(self, kg: KG, q_ids: list[int], max_hops: int, directed: bool):
        self.kg = kg
        self.max_hops = max_hops
        self.directed = directed
        self._walks: dict[tuple[str, ...], list[Walk]] = {(): [(q, (q,)) for q in dict.fromkeys(q_ids)]}
        self._children: dict[tuple[str, ...], list[str]] = {}

    def next_relations(self, prefix: tuple[str, ...]) -> list[str]:
        """Relation names r such that ``prefix + (r,)`` exists (sorted; none at ``max_hops`` or for
        a prefix that does not exist)."""
        if prefix in self._children:
            return self._children[prefix]
        walks = self._walks.get(prefix)
        # A node reached without asking its parent: grow the parent first.
        if walks is None and prefix and prefix[-1] in self.next_relations(prefix[:-1]):
            walks = self._walks.get(prefix)
        if not walks or len(prefix) >= self.max_hops:
            self._children[prefix] = []
            return []
        grown = self._grow(walks)
        for name, child in grown.items():
            self._walks[prefix + (name,)] = child
        self._children[prefix] = sorted(grown)
        return self._children[prefix]

    def exists(self, path: tuple[str, ...]) -> bool:
        """Whether a cycle-free walk from a question entity follows ``path``."""
        return bool(path) and len(path) <= self.max_hops and path[-1] in self.next_relations(path[:-1])

    def paths(self) -> list[tuple[str, ...]]:
        """Every relation path of the trie, in depth-first sorted order (for tests and small graphs)."""
        found: list[tuple[str, ...]] = []
        stack: list[tuple[str, ...]] = [()]
        while stack:
            prefix = stack.pop()
            if prefix:
                found.append(prefix)
            stack.extend((*prefix, name) for name in reversed(self.next_relations(prefix)))
        return found

    def _grow(self, walks: list[Walk]) -> dict[str, list[Walk]]:
        """One more hop of every walk, grouped by the relation stepped along."""
        by_node: dict[int, list[tuple[int, ...]]] = {}
        for node, visited in walks:
            by_node.setdefault(node, []).append(visited)
        nodes = np.fromiter(by_node, dtype=np.int32, count=len(by_node))
        sources, edges, targets, _ = self.kg.steps(nodes, self.directed)
        rels = self.kg.rels[edges]
        grown: dict[int, dict[Walk, None]] = {}  # insertion-ordered sets (parallel edges walk once)
        for source, rel, target in zip(sources.tolist(), rels.tolist(), targets.tolist(), strict=True):
            child = grown.setdefault(rel, {})
            for visited in by_node[source]:
                if target not in visited and len(child) < STATE_LIMIT:
                    child[(target, (*visited, target))] = None
        return {self.kg.relation(rel): list(child) for rel, child in grown.items() if child}
