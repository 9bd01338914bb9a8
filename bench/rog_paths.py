"""RoG relation-path extraction speed, two measurements printed from one run:

1. 500 questions, each with its own WebQSP-sized graph (~1,400 entities, ~4,300 triples, hubs):
   `build-data rog --tasks plan` against (a) merely parsing the input rows and (b) what RoG's code
   does (a networkx simple undirected graph per question, all_shortest_paths per question/answer
   pair, node paths mapped to relations). Also checks that hybridft's relation paths are a
   superset of the baseline's (equal where the graph has no parallel edges).
2. A global KG of 2,000,000 triples and 5,000 questions (paths up to 3 hops): index once, then
   relation paths and reasoning paths per question, against networkx all_shortest_paths on one
   shared graph (an undirected view of a MultiDiGraph, so no triple is lost; timed on a sample),
   each side in its own process so that each peak RSS is its own.

  python bench/rog_paths.py [--questions 500] [--global-triples 2000000] [--global-questions 5000]
                            [--max-hops 3]   # 4 covers CWQ's 4-hop questions
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def random_graph(rng: np.random.Generator, n_nodes: int, n_edges: int, n_relations: int) -> list[list[str]]:
    """Endpoints drawn with Zipf-like weights, so a few entities are hubs; relations likewise."""
    weights = 1.0 / np.arange(1, n_nodes + 1) ** 0.9
    weights /= weights.sum()
    rel_weights = 1.0 / np.arange(1, n_relations + 1)
    rel_weights /= rel_weights.sum()
    heads = rng.choice(n_nodes, size=n_edges, p=weights)
    tails = rng.choice(n_nodes, size=n_edges, p=weights)
    rels = rng.choice(n_relations, size=n_edges, p=rel_weights)
    return [[f"m.{h:06x}", f"rel.r{r}", f"m.{t:06x}"] for h, r, t in zip(heads, rels, tails, strict=True) if h != t]


def write_questions(path: Path, n_questions: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for i in range(n_questions):
            graph = random_graph(rng, 1400, 4300, 300)
            nodes = sorted({t[0] for t in graph} | {t[2] for t in graph})
            q = nodes[int(rng.integers(len(nodes)))]
            answers = [nodes[int(j)] for j in rng.integers(len(nodes), size=2)]
            row = {
                "id": f"q{i}",
                "question": f"question {i}?",
                "answer": answers,
                "q_entity": [q],
                "a_entity": answers,
                "graph": graph,
            }
            handle.write(json.dumps(row) + "\n")


def parse_only(path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of parsing every row with orjson, one thread."""
    import orjson

    start, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as handle:
        for line in handle:
            orjson.loads(line)
    return time.perf_counter() - start, time.process_time() - cpu


def hybridft_plan(path: Path, out: Path, max_hops: int = 3) -> tuple[float, float, dict[str, set[tuple[str, ...]]]]:
    """(wall seconds, CPU seconds of all its threads, relation paths found per question). On a
    loaded machine compare CPU times: the wall time waits for cores, the parse's and ours unequally
    (one thread against several)."""
    from hybridft.cli import build_data

    tokens = ["rog", "--questions", str(path), "--tasks", "plan", "--max-hops", str(max_hops)]
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        code = build_data.main([*tokens, "--out", str(out), "--overwrite"])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert code == 0
    found: dict[str, set[tuple[str, ...]]] = {}
    for line in (out / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        found.setdefault(record["source_id"], set()).add(tuple(record["relation_paths"][0]))
    return elapsed, cpu, found


def rog_baseline(path: Path, max_hops: int = 3) -> tuple[float, dict[str, set[tuple[str, ...]]]]:
    """What RoG's code does: simple undirected graph, node paths, relations looked up per hop."""
    import networkx as nx

    start = time.perf_counter()
    found: dict[str, set[tuple[str, ...]]] = {}
    with open(path) as handle:
        for line in handle:
            row = json.loads(line)
            graph = nx.Graph()
            for h, r, t in row["graph"]:
                graph.add_edge(h, t, relation=r)
            paths: set[tuple[str, ...]] = set()
            for q in row["q_entity"]:
                for a in row["a_entity"]:
                    if q not in graph or a not in graph or q == a:
                        continue
                    try:
                        for nodes in nx.all_shortest_paths(graph, q, a):
                            if len(nodes) - 1 > max_hops:
                                break
                            paths.add(tuple(graph[u][v]["relation"] for u, v in zip(nodes, nodes[1:], strict=False)))
                    except nx.NetworkXNoPath:
                        pass
            if paths:
                found[row["id"]] = paths
    return time.perf_counter() - start, found


def measure_subgraphs(work: Path, n_questions: int, max_hops: int) -> None:
    path = work / "questions.jsonl"
    write_questions(path, n_questions)
    parses = [parse_only(path) for _ in range(3)]
    parse_s, parse_cpu = min(wall for wall, _ in parses), min(cpu for _, cpu in parses)
    ours_s, ours_cpu, ours = min((hybridft_plan(path, work / "out", max_hops) for _ in range(3)), key=lambda r: r[0])
    records = sum(len(paths) for paths in ours.values())
    base_s, base = rog_baseline(path, max_hops)
    superset = all(paths <= ours.get(qid, set()) for qid, paths in base.items())
    extra = sum(len(ours.get(qid, set()) - paths) for qid, paths in base.items())
    print(
        f"1. {n_questions} per-question graphs, max hops {max_hops}: parse only {parse_s:.2f} s; "
        f"hybridft plan {ours_s:.2f} s "
        f"({ours_s / parse_s:.2f}x parse, target <= 1.5x; CPU {ours_cpu:.2f} s against {parse_cpu:.2f} s, "
        f"{ours_cpu / parse_cpu:.2f}x, about the most the wall ratio can be on idle cores; "
        f"{records} plan records); RoG-style networkx {base_s:.2f} s "
        f"({base_s / ours_s:.1f}x slower than hybridft). Superset of the baseline's paths: {superset} "
        f"({extra} extra sequences from parallel edges)"
    )


def global_kg(path: Path, n_triples: int, seed: int = 1) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    n_nodes = n_triples // 2
    weights = 1.0 / np.arange(1, n_nodes + 1) ** 0.8
    weights /= weights.sum()
    heads = rng.choice(n_nodes, size=n_triples, p=weights)
    tails = rng.integers(n_nodes, size=n_triples)
    rels = rng.integers(2000, size=n_triples)
    with open(path, "w") as handle:
        for h, r, t in zip(heads, rels, tails, strict=True):
            handle.write(f"m.{h:07x}\trel.r{r}\tm.{t:07x}\n")
    return [[f"m.{h:07x}", f"m.{t:07x}"] for h, t in zip(heads[:20000:4], tails[20000:40000:4], strict=True)]


def global_side(side: str, kg_path: Path, pairs_path: Path, sample: int, max_hops: int) -> dict[str, float]:
    """One side of measurement 2, run in its own process so that its peak RSS is its own."""
    import resource

    pairs = json.loads(pairs_path.read_text())
    start = time.perf_counter()
    if side == "hybridft":
        from hybridft.kg.graph import read_kg, reasoning_paths, shortest_relation_paths

        kg = read_kg(kg_path)
        index_s = time.perf_counter() - start
        start = time.perf_counter()
        for q, a in pairs:
            # as build-data does: a name missing from the KG has no id (none is, in this KG)
            q_ids, a_ids = ([i for i in kg.ids([name]) if i is not None] for name in (q, a))
            paths = shortest_relation_paths(kg, q_ids, a_ids, max_hops, False)
            reasoning_paths(kg, q_ids, paths, False, 32)
        per_question = (time.perf_counter() - start) / len(pairs)
    else:
        import networkx as nx

        graph = nx.MultiDiGraph()
        with open(kg_path) as handle:
            for line in handle:
                h, r, t = line.rstrip("\n").split("\t")
                graph.add_edge(h, t, relation=r)
        undirected = graph.to_undirected(as_view=True)
        index_s = time.perf_counter() - start
        start = time.perf_counter()
        for q, a in pairs[:sample]:
            try:
                for nodes in nx.all_shortest_paths(undirected, q, a):
                    if len(nodes) > max_hops + 1:
                        break
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                pass
        per_question = (time.perf_counter() - start) / min(sample, len(pairs))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"index_s": index_s, "per_question_s": per_question, "peak_mib": peak_mib}


def measure_global(work: Path, n_triples: int, n_questions: int, sample: int, max_hops: int) -> None:
    kg_path, pairs_path = work / "kg.tsv", work / "pairs.json"
    pairs = global_kg(kg_path, n_triples)
    pairs = (pairs * (n_questions // len(pairs) + 1))[:n_questions]
    pairs_path.write_text(json.dumps(pairs))
    results = {}
    for side in ("hybridft", "networkx"):
        command = [sys.executable, __file__, "--child", side, str(kg_path), str(pairs_path), str(sample), str(max_hops)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, theirs = results["hybridft"], results["networkx"]
    print(
        f"2. global KG of {n_triples} triples, {n_questions} questions, max hops {max_hops}: "
        f"hybridft index {ours['index_s']:.1f} s, "
        f"{ours['per_question_s'] * 1e3:.2f} ms/question (relation paths + reasoning paths); "
        f"networkx index {theirs['index_s']:.1f} s, all_shortest_paths {theirs['per_question_s'] * 1e3:.1f} "
        f"ms/question on {sample} questions: {theirs['per_question_s'] / ours['per_question_s']:.0f}x "
        f"(target >= 5x); peak RSS hybridft {ours['peak_mib']:.0f} MiB, networkx {theirs['peak_mib']:.0f} MiB "
        f"({ours['peak_mib'] / theirs['peak_mib']:.2f}, target <= 0.25)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--global-triples", type=int, default=2_000_000)
    parser.add_argument("--global-questions", type=int, default=5000)
    parser.add_argument("--networkx-sample", type=int, default=200)
    parser.add_argument("--max-hops", type=int, default=3, help="longest relation path (4: CWQ's longest)")
    parser.add_argument("--only", choices=("subgraphs", "global"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, kg_path, pairs_path, sample, max_hops = args.child
        print(json.dumps(global_side(side, Path(kg_path), Path(pairs_path), int(sample), int(max_hops))))
        return
    work = Path(tempfile.mkdtemp(prefix="rog-bench-"))
    try:
        if args.only in (None, "subgraphs"):
            measure_subgraphs(work, args.questions, args.max_hops)
        if args.only in (None, "global"):
            measure_global(work, args.global_triples, args.global_questions, args.networkx_sample, args.max_hops)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
