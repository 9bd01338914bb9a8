"""RoG data (Luo et al. 2024, arXiv 2310.01061): plan relation paths, then reason over the paths.

``plan`` examples teach question -> ``<PATH>r1<SEP>r2</PATH>``, one per shortest relation path
between a question entity and an answer entity, as RoG trains. ``reason`` examples give the
reasoning paths found by following those relation paths in the KG from the question entities, and
the answers, one per line. Records (``records.jsonl``)::

    {"id", "source_id", "kind": "rog", "split", "task": "plan"|"reason", "question",
     "q_entity", "a_entity", "answers", "relation_paths": [[r, ...], ...],
     "reasoning_paths": [[[h, r, t], ...], ...]}

A plan record carries its one relation path; a reason record all of them and the kept chains.
``explain`` (not in the default ``--tasks``; needs ``--generator``) adds, per question, a record
like the reason record with ``"task": "explain"`` and an ``"explanation"`` written by the
generator from the reasoning paths to the answers, as RoG's interpretable-reasoning examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from hybridft.builders.common import (
    RAY_OPTIONS,
    SHARD_OPTION,
    BuildResult,
    Shard,
    check_shard,
    common_options,
    split_of,
)
from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.progress import log, track
from hybridft.core.readers import KGQuestion
from hybridft.generators import check_generator, generator_options
from hybridft.kg.batch import GraphBatch, MalformedGraph, PackedGraph
from hybridft.kg.graph import KG, read_kg, reasoning_paths, shortest_relation_paths
from hybridft.kg.rows import iter_questions_packed

TASKS = ("plan", "reason", "explain")
DEFAULT_TASKS = ("plan", "reason")

OPTIONS = [
    Option("questions", "path", None, "KG questions: .jsonl/.parquet rows (RoG-webqsp/cwq as they are)", required=True),
    Option(
        "kg",
        "path",
        None,
        "global KG for rows without a graph: .tsv or .jsonl triples, or a folder written by `hybridft index --kg`",
    ),
    Option("max_hops", "int", 3, "longest relation path searched", minimum=1),
    Option("directed", "bool", False, "walk edges head -> tail only (default: both ways, as RoG)"),
    Option("tasks", "list", list(DEFAULT_TASKS), "which examples to build (explain needs --generator)", choices=TASKS),
    Option("max_reasoning_paths", "int", 32, "reasoning paths kept per question (sorted)", minimum=1),
    SHARD_OPTION,
    *RAY_OPTIONS,
    # RoG makes no random choice (paths are searched exhaustively and sorted; the split hashes
    # question ids): --seed is accepted, as in every recipe, and only reaches the generator.
    *(
        replace(o, help="seeds only a --generator's sampling: RoG's own paths and split involve no random choice")
        if o.name == "seed"
        else o
        for o in common_options()
    ),
    *generator_options(),
]


def check(config: dict[str, Any]) -> list[str]:
    errors = [] if config["tasks"] else ["tasks: name at least one of plan, reason, explain"]
    errors += check_shard(config)
    return errors + check_generator(config, "tasks=explain" if "explain" in config["tasks"] else None)


# Rows that carry their own graph are searched in batches of about this many triples: enough to
# share numpy's per-call cost across ~50 WebQSP-sized graphs, little enough to hold in memory.
BATCH_TRIPLES = 200_000


def read_inputs(config: dict[str, Any]) -> None:
    """Every KG question row and the global KG, checked (what ``--dry-run`` reads)."""
    from hybridft.core.readers import iter_kg_questions

    if not any(True for _ in iter_kg_questions(config["questions"])):
        raise UsageError(f"{config['questions']}: no rows (an empty input is an error, not an empty output)")
    if config["kg"]:
        read_kg(config["kg"])


def build(config: dict[str, Any]) -> BuildResult:
    """Build RoG records from ``config`` (resolved OPTIONS).

    The records come as an iterator that builds them while they are written: meanwhile worker
    threads cut the next rows' graphs, and no question's records wait in memory for the others.
    The counts and manifest sections are complete once it is exhausted.
    """
    result = BuildResult([], {}, [config["questions"], *_kg_input(config["kg"])])
    result.records = _counted(config, result)
    return result


def _kg_input(kg: str | None) -> list[str]:
    """What the manifest hashes for ``--kg``: the file, or a saved KG's manifest (which holds the
    sha256 of every column: hashing the columns again would read the whole KG on every run)."""
    if not kg:
        return []
    return [str(Path(kg) / "manifest.json")] if Path(kg).is_dir() else [kg]


def _counted(config: dict[str, Any], result: BuildResult) -> Iterator[dict[str, Any]]:
    """The records in input order, then the counts (and the generator's manifest) in ``result``."""
    counts: Counter[str] = Counter()
    if config.get("shard"):
        result.positions = {}
    records: Iterable[dict[str, Any]] = _records_in_order(config, counts, result.positions)
    generated: dict[str, Any] = {}
    if "explain" in config["tasks"]:  # the generator writes explanations for all records at once
        from hybridft.generators.tasks import explain_records

        records, generated["explanations"], result.manifest["generator"] = explain_records(list(records), config)
    tasks: Counter[str] = Counter()
    for record in records:
        tasks[record["task"]] += 1
        yield record
    result.counts.update(
        {
            "questions": counts["questions"],
            "questions_with_paths": counts["with_paths"],
            "examples": tasks.total(),
            "plan": tasks["plan"],
            "reason": tasks["reason"],
            **({"explain": tasks["explain"], "generated": generated} if generated else {}),
            "relation_paths": counts["relation_paths"],
            "reasoning_paths_kept": counts["chains_kept"],
            "reasoning_paths_cut": counts["chains_cut"],
            "questions_over_chain_limit": counts["over_chain_limit"],
            "skipped": {
                reason: counts[f"skipped_{reason}"]
                for reason in ("no_path", "empty_graph", "no_question_entity_in_graph", "no_answer_entity_in_graph")
            },
        }
    )


def _records_in_order(
    config: dict[str, Any], counts: Counter[str], positions: dict[str, int] | None
) -> Iterator[dict[str, Any]]:
    """With ``--shard``, only the shard's rows, each row's position in the input noted in
    ``positions``."""
    global_kg: KG | None = None
    batch: list[tuple[KGQuestion, PackedGraph]] = []
    batch_triples = 0
    shard = Shard.parse(config.get("shard"))
    rows = track(iter_questions_packed(config["questions"]), "finding relation paths")
    for position, (row, packed) in enumerate(rows):
        if shard is not None:
            if not shard.holds(row.id):
                continue
            assert positions is not None
            positions[row.id] = position
        counts["questions"] += 1
        packed = packed or _packed(row)
        if packed is not None:
            batch_triples += len(packed.heads)
            row.graph = None  # packed: its lists can be freed while they are still in cache
            batch.append((row, packed))
            if batch_triples >= BATCH_TRIPLES:
                yield from _batch_examples(batch, config, counts)
                batch, batch_triples = [], 0
            continue
        # A row handled on its own comes after the batch before it: records keep the input order.
        yield from _batch_examples(batch, config, counts)
        batch, batch_triples = [], 0
        if row.graph is None:
            if global_kg is None:
                if not config["kg"]:
                    raise UsageError(f"{row.where}: row has no graph; give a global KG with --kg")
                log(f"indexing the global KG {config['kg']}")
                global_kg = read_kg(config["kg"])
            yield from _examples(row, global_kg, config, counts)
        elif not row.graph:
            counts["skipped_empty_graph"] += 1
        else:  # pyarrow refused the triples: searched alone, where a bad triple is named
            yield from _examples(row, None, config, counts)
    yield from _batch_examples(batch, config, counts)


def _packed(row: KGQuestion) -> PackedGraph | None:
    """The row's own graph packed for a batch; None for no graph, an empty or a malformed one."""
    if not row.graph:
        return None
    try:
        return PackedGraph.of(row.graph, row.q_entity + row.a_entity)
    except MalformedGraph:
        return None


def _batch_examples(
    batch: list[tuple[KGQuestion, PackedGraph]], config: dict[str, Any], counts: Counter[str]
) -> list[dict[str, Any]]:
    """Examples of rows with their own packed graphs, searched together as one GraphBatch."""
    if not batch:
        return []
    rows = [row for row, _ in batch]
    union = GraphBatch.from_packed([packed for _, packed in batch])
    entities = []
    for row, ids in zip(rows, union.looked_up, strict=True):
        n_q = len(row.q_entity)
        entities.append(([i for i in ids[:n_q] if i is not None], [i for i in ids[n_q:] if i is not None]))
    paths = union.relation_paths(
        [q if a else [] for q, a in entities], [a for _, a in entities], config["max_hops"], config["directed"]
    )
    # Following relation paths (reason, explain) needs the union indexed; plan alone does not.
    kg = union.kg() if {"reason", "explain"} & set(config["tasks"]) else None
    records: list[dict[str, Any]] = []
    for row, (q_ids, a_ids), row_paths in zip(rows, entities, paths, strict=True):
        if _found_entities(q_ids, a_ids, counts):
            records.extend(_records(row, kg, q_ids, row_paths, config, counts))
    return records


def _found_entities(q_ids: list[int], a_ids: list[int], counts: Counter[str]) -> bool:
    """Count a question without a question or an answer entity in its graph as skipped."""
    if not q_ids:
        counts["skipped_no_question_entity_in_graph"] += 1
        return False
    if not a_ids:
        counts["skipped_no_answer_entity_in_graph"] += 1
        return False
    return True


def _examples(
    row: KGQuestion, global_kg: KG | None, config: dict[str, Any], counts: Counter[str]
) -> list[dict[str, Any]]:
    """Examples of one row, searched on its own: in the global KG, or in its own graph."""
    if global_kg is None:
        assert row.graph
        kg = KG.from_triples(row.graph, f"{row.where}: graph")
    else:
        kg = global_kg
    q_ids = [i for i in kg.ids(row.q_entity) if i is not None]
    a_ids = [i for i in kg.ids(row.a_entity) if i is not None]
    if not _found_entities(q_ids, a_ids, counts):
        return []
    paths = shortest_relation_paths(kg, q_ids, a_ids, config["max_hops"], config["directed"])
    return _records(row, kg, q_ids, paths, config, counts)


def _records(
    row: KGQuestion,
    kg: KG | None,
    q_ids: list[int],
    paths: list[tuple[str, ...]],
    config: dict[str, Any],
    counts: Counter[str],
) -> list[dict[str, Any]]:
    """The plan and reason records of one question whose relation ``paths`` are known; ``kg``
    (where the ``q_ids`` live) is needed for reason records only."""
    if not paths:
        counts["skipped_no_path"] += 1
        return []
    counts["with_paths"] += 1
    counts["relation_paths"] += len(paths)
    base: dict[str, Any] = {
        "source_id": row.id,
        "kind": "rog",
        "split": split_of(row.id, config["eval_fraction"]),
        "question": row.question,
        "q_entity": row.q_entity,
        "a_entity": row.a_entity,
        "answers": row.answers,
    }
    records: list[dict[str, Any]] = []
    if "plan" in config["tasks"]:
        for n, path in enumerate(paths):
            records.append(
                {
                    "id": f"rog-plan-{row.id}-{n}",
                    **base,
                    "task": "plan",
                    "relation_paths": [list(path)],
                    "reasoning_paths": [],
                }
            )
    if "reason" in config["tasks"] or "explain" in config["tasks"]:
        assert kg is not None
        chains = reasoning_paths(kg, q_ids, paths, config["directed"], config["max_reasoning_paths"])
        counts["chains_kept"] += len(chains.chains)
        counts["chains_cut"] += chains.cut
        counts["over_chain_limit"] += chains.hit_limit
        reason = {
            "id": f"rog-reason-{row.id}",
            **base,
            "task": "reason",
            "relation_paths": [list(p) for p in paths],
            "reasoning_paths": [[list(t) for t in chain] for chain in chains.chains],
        }
        if "reason" in config["tasks"]:
            records.append(reason)
        if "explain" in config["tasks"]:
            records.append({**reason, "id": f"rog-explain-{row.id}", "task": "explain", "explanation": None})
    return records
