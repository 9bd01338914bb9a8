"""Shortest relation paths and reasoning paths on hand-built graphs whose answers are stated here."""

from __future__ import annotations

import random

import pytest

from hybridft.core.errors import InputError
from hybridft.core.render import render_chain
from hybridft.kg.batch import GraphBatch, MalformedGraph
from hybridft.kg.graph import KG, reasoning_paths, shortest_relation_paths


def paths(triples, q, a, max_hops=3, directed=False):
    kg = KG.from_triples(triples)
    return shortest_relation_paths(kg, kg.ids(q), kg.ids(a), max_hops, directed)


def test_parallel_edges_each_give_their_own_sequence() -> None:
    triples = [["A", "r1", "B"], ["A", "r2", "B"], ["B", "s", "C"]]
    assert paths(triples, ["A"], ["C"]) == [("r1", "s"), ("r2", "s")]


def test_reversed_edges_are_walked_unless_directed() -> None:
    triples = [["A", "r1", "B"], ["C", "r2", "B"]]  # A -> B <- C
    assert paths(triples, ["A"], ["C"]) == [("r1", "r2")]
    assert paths(triples, ["A"], ["C"], directed=True) == []
    assert paths(triples, ["C"], ["B"], directed=True) == [("r2",)]


def test_only_shortest_paths_and_every_question_answer_pair() -> None:
    triples = [
        ["A", "short", "Z"],  # A -> Z in one hop
        ["A", "long1", "M"],
        ["M", "long2", "Z"],  # A -> M -> Z, longer: not a shortest path
        ["Q", "p", "Y"],  # second question entity, second answer entity
        ["Y", "p2", "W"],
    ]
    assert paths(triples, ["A", "Q"], ["Z", "W"]) == [("p", "p2"), ("short",)]


def test_cycle_does_not_loop_and_max_hops_bounds_length() -> None:
    triples = [["A", "r", "B"], ["B", "r", "C"], ["C", "r", "A"], ["C", "s", "D"]]  # a cycle A-B-C
    assert paths(triples, ["A"], ["D"]) == [("r", "s")]  # A <- r <- C -> s -> D
    assert paths(triples, ["B"], ["D"], max_hops=1) == []
    assert paths(triples, ["B"], ["D"], max_hops=2) == [("r", "s")]
    assert paths(triples, ["A"], ["D"], directed=True) == [("r", "r", "s")]


def test_hub_with_many_neighbours_gives_one_sequence() -> None:
    triples = [["Hub", "member", f"n{i}"] for i in range(500)] + [[f"n{i}", "likes", "T"] for i in range(500)]
    assert paths(triples, ["Hub"], ["T"]) == [("member", "likes")]


def test_reasoning_paths_are_true_chains_from_a_question_entity() -> None:
    triples = [
        ["Paris", "capital_of", "France"],
        ["France", "capital", "Paris"],
        ["Euro", "used_in", "France"],
        ["France", "currency", "Euro"],
        ["Lyon", "city_of", "France"],
    ]
    kg = KG.from_triples(triples)
    q = kg.ids(["Paris"])
    relation_paths = shortest_relation_paths(kg, q, kg.ids(["Euro"]), 3, False)
    assert relation_paths == [
        ("capital", "currency"),
        ("capital", "used_in"),
        ("capital_of", "currency"),
        ("capital_of", "used_in"),
    ]
    chains = reasoning_paths(kg, q, relation_paths, False, cap=32)
    facts = {tuple(t) for t in triples}
    for chain in chains.chains:
        assert all(tuple(t) in facts for t in chain)
        assert "Paris" in chain[0][::2]
        for left, right in zip(chain, chain[1:], strict=False):
            assert set(left[::2]) & set(right[::2])
    rendered = sorted(render_chain(c, ["Paris"]) for c in chains.chains)
    assert rendered == [
        "Paris -> capital_of -> France -> currency -> Euro",
        "Paris -> capital_of -> France <- used_in <- Euro",
        "Paris <- capital <- France -> currency -> Euro",
        "Paris <- capital <- France <- used_in <- Euro",
    ]


def test_reasoning_paths_are_capped_deterministically() -> None:
    triples = [["Q", "r", f"x{i:02d}"] for i in range(10)]
    kg = KG.from_triples(triples)
    chains = reasoning_paths(kg, kg.ids(["Q"]), [("r",)], False, cap=3)
    assert chains.chains == [[("Q", "r", "x00")], [("Q", "r", "x01")], [("Q", "r", "x02")]]
    assert chains.cut == 7


def test_reasoning_paths_never_revisit_an_entity() -> None:
    kg = KG.from_triples([["A", "r", "B"], ["B", "r", "A"]])
    chains = reasoning_paths(kg, kg.ids(["A"]), [("r", "r")], False, cap=10)
    assert chains.chains == []  # A -> B -> A would revisit A


@pytest.mark.parametrize("bad", [[["A", "r"]], [["A", "r", "B"], ["A", 3, "B"]], [["A", "r", "B", "C"]]])
def test_malformed_triples_are_errors(bad) -> None:
    with pytest.raises(InputError, match=r"q.jsonl:3: graph: triple \d+ is"):
        KG.from_triples(bad, "q.jsonl:3: graph")


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("max_hops", [1, 2, 3])
def test_batched_search_equals_one_graph_at_a_time(directed: bool, max_hops: int) -> None:
    # Few names and relations, so graphs have parallel and reversed edges, cycles and hubs; some
    # looked-up names are missing or are only relation names; a question entity may be an answer.
    rng = random.Random(7)
    graphs, lookups, n_q = [], [], []
    for _ in range(40):
        names = [f"e{i}" for i in range(rng.randint(2, 12))]
        graphs.append(
            [[rng.choice(names), f"r{rng.randint(0, 3)}", rng.choice(names)] for _ in range(rng.randint(1, 30))]
        )
        q = rng.sample(names, rng.randint(1, 2)) + (["r1"] if rng.random() < 0.2 else [])
        a = rng.sample(names, rng.randint(1, 3)) + (["missing"] if rng.random() < 0.2 else [])
        lookups.append(q + a)
        n_q.append(len(q))
    batch = GraphBatch.from_graphs(graphs, lookups)
    q_ids = [[i for i in ids[:n] if i is not None] for ids, n in zip(batch.looked_up, n_q, strict=True)]
    a_ids = [[i for i in ids[n:] if i is not None] for ids, n in zip(batch.looked_up, n_q, strict=True)]
    batched = batch.relation_paths(q_ids, a_ids, max_hops, directed)
    for graph, names, n, got in zip(graphs, lookups, n_q, batched, strict=True):
        kg = KG.from_triples(graph)
        q = [i for i in kg.ids(names[:n]) if i is not None]
        a = [i for i in kg.ids(names[n:]) if i is not None]
        assert got == (shortest_relation_paths(kg, q, a, max_hops, directed) if q and a else [])
    assert any(len(paths) > 1 for paths in batched)


def test_batch_ids_are_per_graph_and_malformed_batches_are_refused() -> None:
    batch = GraphBatch.from_graphs([[["A", "r", "B"]], [["B", "r", "C"]]], [["A", "B", "r"], ["A", "B"]])
    first, second = batch.looked_up
    assert first[0] is not None and first[1] is not None and first[2] is None  # r is no entity
    assert second[0] is None and second[1] not in first
    for bad in ([["A", "r"]], [["A", "r", "B"], ["A", 3, "B"]], [["A", "r", "B", "C"]], [["A", None, "B"]]):
        with pytest.raises(MalformedGraph):
            GraphBatch.from_graphs([[["A", "r", "B"]], bad], [[], []])
