"""Constrained planning that follows the graph: the relation-path trie and the grammar built on it."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from conftest import read_jsonl

from hybridft.cli import eval as eval_cli
from hybridft.cli.common import run_guarded
from hybridft.kg.graph import KG, reasoning_paths
from hybridft.kg.plans import RelationPathTrie

RECIPES = Path(__file__).resolve().parent.parent / "data_recipes"
ROG_QUESTIONS = RECIPES / "samples" / "rog" / "questions.jsonl"
ROG_KG = RECIPES / "samples" / "rog" / "kg.tsv"

TRIPLES = [
    ["Inception", "directed_by", "Nolan"],
    ["Inception", "starring", "DiCaprio"],
    ["DiCaprio", "acted_in", "Revenant"],
    ["Revenant", "directed_by", "Inarritu"],
]


def test_trie_by_hand_undirected() -> None:
    kg = KG.from_triples(TRIPLES)
    trie = RelationPathTrie(kg, [i for i in kg.ids(["Inception"]) if i is not None], max_hops=3, directed=False)
    # Walking back along the edge just taken is a cycle, so ("directed_by", "directed_by") does
    # not exist: Inception has one director. Inception -starring-> DiCaprio -acted_in-> Revenant
    # -directed_by-> Inarritu.
    assert trie.paths() == [
        ("directed_by",),
        ("starring",),
        ("starring", "acted_in"),
        ("starring", "acted_in", "directed_by"),
    ]
    assert trie.next_relations(()) == ["directed_by", "starring"]
    assert trie.exists(("starring", "acted_in")) and not trie.exists(("directed_by", "starring"))
    assert not trie.exists(("acted_in",)) and not trie.exists(())


def test_trie_directed_and_max_hops() -> None:
    kg = KG.from_triples(TRIPLES)
    revenant = [i for i in kg.ids(["Revenant"]) if i is not None]
    directed = RelationPathTrie(kg, revenant, max_hops=3, directed=True)
    assert directed.paths() == [("directed_by",)]  # acted_in points into Revenant
    undirected = RelationPathTrie(kg, revenant, max_hops=2, directed=False)
    assert undirected.paths() == [("acted_in",), ("acted_in", "starring"), ("directed_by",)]
    assert undirected.next_relations(("acted_in", "starring")) == []  # max_hops reached


def _walk_paths(kg: KG, start: int, max_hops: int, directed: bool) -> set[tuple[str, ...]]:
    """Brute force: the relation sequences of every cycle-free walk from ``start``."""
    found: set[tuple[str, ...]] = set()
    edges = [(int(h), kg.relation(r), int(t)) for h, r, t in zip(kg.heads, kg.rels, kg.tails, strict=True)]
    stack: list[tuple[int, tuple[int, ...], tuple[str, ...]]] = [(start, (start,), ())]
    while stack:
        node, visited, rels = stack.pop()
        if rels:
            found.add(rels)
        if len(rels) == max_hops:
            continue
        for h, r, t in edges:
            for a, b in [(h, t)] + ([] if directed else [(t, h)]):
                if a == node and b not in visited:
                    stack.append((b, (*visited, b), (*rels, r)))
    return found


@pytest.mark.parametrize(("seed", "directed"), list(itertools.product(range(4), [False, True])))
def test_trie_equals_brute_force_and_every_path_has_a_reasoning_path(seed: int, directed: bool) -> None:
    rng = random.Random(seed)
    names = [f"e{i}" for i in range(12)]
    triples = [[rng.choice(names), f"r{rng.randrange(4)}", rng.choice(names)] for _ in range(30)]
    kg = KG.from_triples(triples)
    start = kg.ids([triples[0][0]])[0]
    assert start is not None
    trie = RelationPathTrie(kg, [start], max_hops=3, directed=directed)
    paths = trie.paths()
    assert set(paths) == _walk_paths(kg, start, 3, directed) and len(paths) == len(set(paths))
    for path in paths:
        assert reasoning_paths(kg, [start], [path], directed, 1).chains, path


def test_grammar_following_the_graph_by_hand() -> None:
    from hybridft.core.models import load_tokenizer, resolve_model
    from hybridft.evaluation.path_grammar import PathGrammar

    tokenizer = load_tokenizer(resolve_model("tiny"))
    kg = KG.from_triples(TRIPLES)
    trie = RelationPathTrie(kg, [i for i in kg.ids(["Inception"]) if i is not None], max_hops=3, directed=False)
    grammar = PathGrammar(tokenizer, [], max_hops=3, follow=trie.next_relations)

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    start = grammar.open
    assert set(grammar.allowed(start)) == {ids("directed_by")[0], ids("starring")[0]}
    # after directed_by nothing leads on (its only walk would go back): close only
    assert grammar.allowed(start + ids("directed_by")) == [grammar.close[0]]
    starring = start + ids("starring")
    assert set(grammar.allowed(starring)) == {grammar.sep[0], grammar.close[0]}
    # after starring <SEP> only acted_in, although the graph has directed_by too
    assert set(grammar.allowed(starring + grammar.sep)) == {ids("acted_in")[0]}


def test_eval_rog_planning_that_follows_the_graph_plans_only_real_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = {}
    for follow in ("true", "false"):
        out = tmp_path / follow
        tokens = ["rog", "--data", ROG_QUESTIONS, "--kg", ROG_KG, "--model", "tiny", "--beams", "4"]
        tokens += ["--max-new-tokens", "40", "--follow-graph", follow, "--out", out]
        code = run_guarded(eval_cli.main, [str(t) for t in tokens])
        assert code == 0, capsys.readouterr().err
        reports[follow] = json.loads((out / "report.json").read_text())
        examples = read_jsonl(out / "examples.jsonl")
        assert sum(len(e["plans"]) for e in examples) > len(examples)  # an untrained model still plans
    assert reports["true"]["metrics"]["path_validity"] == 1.0
    assert reports["true"]["follow_graph"] is True and reports["false"]["follow_graph"] is False
    # an untrained model given every relation at every hop combines them into paths that do not exist
    assert reports["false"]["metrics"]["path_validity"] < 0.9


def test_eval_rog_from_the_question_alone_plans_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "alone"
    tokens = ["rog", "--data", ROG_QUESTIONS, "--kg", ROG_KG, "--model", "tiny", "--max-new-tokens", "8"]
    code = run_guarded(eval_cli.main, [str(t) for t in [*tokens, "--reasoning-paths", "none", "--out", out]])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["reasoning_paths"] == "none" and report["metrics"]["path_validity"] is None
    examples = read_jsonl(out / "examples.jsonl")
    assert examples and all(e["plans"] == [] for e in examples)
