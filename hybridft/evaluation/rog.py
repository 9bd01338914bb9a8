"""``eval rog``: plan relation paths (beam search, optionally constrained to the KG's relations),
follow them in the KG to reasoning paths, answer from those paths; or score a predictions file.

The questions and their graphs come from a KG questions file (SPEC §2) — ``--data`` itself, or
``--questions`` next to a ``build-data rog`` folder whose ``reason`` records choose the split.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.readers import KGQuestion, iter_kg_questions
from hybridft.core.records import ROG_PREDICTION
from hybridft.core.render import rog_plan, rog_reason
from hybridft.evaluation.common import check_source, common_options, load_records, read_predictions
from hybridft.evaluation.metrics import prediction_list, rog_scores
from hybridft.evaluation.report import Report
from hybridft.kg.graph import KG, read_kg, reasoning_paths

METRICS = ["hits@1", "hit", "f1", "rog_f1", "precision", "recall", "path_validity"]
PLAN = re.compile(r"<PATH>(.*?)</PATH>", re.DOTALL)

OPTIONS = [
    *common_options(),
    Option("questions", "path", None, "KG questions file with graphs, when --data is a build-data folder"),
    Option(
        "kg",
        "path",
        None,
        "global KG for questions without a graph: .tsv / .jsonl triples, or a KG_DIR of `hybridft index --kg`",
    ),
    Option("beams", "int", 3, "beam width of planning; every beam's path is followed", minimum=1),
    Option("constrained", "bool", True, "plan only with relation names of the question's graph"),
    Option(
        "follow_graph",
        "bool",
        True,
        "constrained planning follows the graph hop by hop from the question entities, so every "
        "planned path exists (false: any relation of the graph at every hop)",
    ),
    Option("max_hops", "int", 3, "longest planned relation path", minimum=1),
    Option("max_reasoning_paths", "int", 32, "reasoning paths shown to the reasoner", minimum=1),
    Option("directed", "bool", False, "follow edges head -> tail only (as the data was built)"),
    Option(
        "reasoning_paths",
        "str",
        "planned",
        "planned: plan, retrieve and reason from the paths; none: reason from the question alone "
        "(RoG's ablation without planning)",
        choices=("planned", "none"),
    ),
]


def check(config: dict[str, Any]) -> list[str]:
    return check_source(config)


def load_questions(config: dict[str, Any]) -> tuple[list[tuple[str, KGQuestion]], Counter[str]]:
    """(id predictions are keyed by, question) pairs in the chosen split."""
    data = Path(config["data"])
    skipped: Counter[str] = Counter()
    if data.is_file() or str(config["data"]).startswith("hf:"):
        rows = list(iter_kg_questions(data))
        if config["limit"]:
            rows = rows[: config["limit"]]
        return [(row.id, row) for row in rows], skipped
    records = [r for r in load_records({**config, "limit": None}, "rog") if r["task"] == "reason"]
    if config["limit"]:
        records = records[: config["limit"]]
    if not records:
        raise UsageError(f"data={data}: no reason records (build with --tasks reason)")
    wanted = {r["source_id"]: r["id"] for r in records}
    if not config["questions"]:
        if config["predictions"]:  # answers need no graph
            return [(r["id"], _question_of(r)) for r in records], skipped
        raise UsageError(f"data={data}: give --questions FILE (the KG questions the data was built from)")
    found = {row.id: row for row in iter_kg_questions(config["questions"]) if row.id in wanted}
    skipped["not_in_questions_file"] = len(wanted) - len(found)
    return [(wanted[source], found[source]) for source in wanted if source in found], skipped


def _question_of(record: dict[str, Any]) -> KGQuestion:
    return KGQuestion(record["source_id"], record["question"], record["answers"], record["q_entity"], [], None)


def read_inputs(config: dict[str, Any]) -> None:
    """What ``--dry-run`` checks: the questions (and the predictions) as the run reads them."""
    questions, _ = load_questions(config)
    if config["predictions"]:
        read_predictions(config["predictions"], {key for key, _ in questions}, ROG_PREDICTION)


def evaluate(config: dict[str, Any]) -> Report:
    questions, skipped = load_questions(config)
    if config["predictions"]:
        predictions = read_predictions(config["predictions"], {key for key, _ in questions}, ROG_PREDICTION)
        examples = []
        for key, question in questions:
            if key not in predictions:
                skipped["no_prediction"] += 1
                continue
            prediction = predictions[key]
            scores: dict[str, float | None] = {**rog_scores(prediction, question.answers), "path_validity": None}
            examples.append(_example(key, question, prediction_list(prediction), [], scores))
        return Report("rog", examples, METRICS, dict(skipped))
    return _run_model(config, questions, skipped)


def _example(
    key: str, question: KGQuestion, predicted: list[str], plans: list[list[str]], scores: dict[str, float | None]
) -> dict[str, Any]:
    return {
        "id": key,
        "question": question.question,
        "answers": question.answers,
        "plans": plans,
        "prediction": predicted,
        "scores": scores,
    }


def _graph(question: KGQuestion, global_kg: KG | None) -> KG | None:
    if question.graph is not None:
        return KG.from_triples(question.graph, f"{question.where}: graph") if question.graph else None
    return global_kg


def _run_model(config: dict[str, Any], questions: list[tuple[str, KGQuestion]], skipped: Counter[str]) -> Report:
    from hybridft.core.generation import load_generator

    generator = load_generator(config["model"], config["adapter"])
    global_kg = read_kg(config["kg"]) if config["kg"] else None
    usable = []
    for key, question in questions:
        kg = _graph(question, global_kg)
        if kg is None:
            skipped["no_graph" if question.graph is None else "empty_graph"] += 1
            continue
        q_ids = [i for i in kg.ids(question.q_entity) if i is not None]
        if not q_ids:
            skipped["no_question_entity_in_graph"] += 1
            continue
        usable.append((key, question, kg, q_ids))
    planned = _plan(generator, usable, config) if config["reasoning_paths"] == "planned" else [[] for _ in usable]
    reason_prompts: list[str] = []
    plans_of: list[list[list[str]]] = []
    validity: list[float | None] = []
    for (_, question, kg, q_ids), outputs in zip(usable, planned, strict=True):
        plans = _parse_plans(outputs)
        valid = [bool(reasoning_paths(kg, q_ids, [tuple(p)], config["directed"], 1).chains) for p in plans]
        chains = reasoning_paths(
            kg, q_ids, [tuple(p) for p in plans], config["directed"], config["max_reasoning_paths"]
        )
        record = {
            "question": question.question,
            "q_entity": question.q_entity,
            "reasoning_paths": [[list(t) for t in chain] for chain in chains.chains],
            "answers": [],  # rog_reason renders the prompt; the completion is not used
        }
        reason_prompts.append(rog_reason(record)[0])
        plans_of.append(plans)
        no_planning = config["reasoning_paths"] == "none"
        validity.append(None if no_planning else sum(valid) / len(valid) if valid else 0.0)
    answers = generator.generate(
        reason_prompts,
        batch_size=config["batch_size"],
        max_new_tokens=config["max_new_tokens"],
        description="reasoning",
    )
    examples = []
    for (key, question, _, _), plans, share, output in zip(usable, plans_of, validity, answers, strict=True):
        scores = {**rog_scores(output[0], question.answers), "path_validity": share}
        examples.append(_example(key, question, prediction_list(output[0]), plans, scores))
    report = Report("rog", examples, METRICS, dict(skipped))
    report.extra["model"] = generator.name
    report.extra["constrained"] = config["constrained"]
    report.extra["follow_graph"] = config["constrained"] and config["follow_graph"]
    report.extra["reasoning_paths"] = config["reasoning_paths"]
    return report


def _plan(
    generator: Any, usable: list[tuple[str, KGQuestion, KG, list[int]]], config: dict[str, Any]
) -> list[list[str]]:
    """Every beam's output of the planning prompt, per question (constrained unless turned off)."""
    constraints = None
    if config["constrained"]:
        grammars = [_grammar(generator.tokenizer, kg, q_ids, config) for _, _, kg, q_ids in usable]
        constraints = [grammar.allowed for grammar in grammars]
    plan_prompts = [
        rog_plan({"question": question.question, "relation_paths": [[]]})[0] for _, question, _, _ in usable
    ]
    planned: list[list[str]] = generator.generate(
        plan_prompts,
        batch_size=config["batch_size"],
        max_new_tokens=config["max_new_tokens"],
        num_beams=config["beams"],
        num_return_sequences=config["beams"],
        constraints=constraints,
        description="planning",
    )
    return planned


def _grammar(tokenizer: Any, kg: KG, q_ids: list[int], config: dict[str, Any]) -> Any:
    from hybridft.evaluation.path_grammar import PathGrammar
    from hybridft.kg.plans import RelationPathTrie

    if not config["follow_graph"]:
        return PathGrammar(tokenizer, kg.relation_ids(), config["max_hops"])
    trie = RelationPathTrie(kg, q_ids, config["max_hops"], config["directed"])
    return PathGrammar(tokenizer, [], config["max_hops"], follow=trie.next_relations)


def _parse_plans(outputs: list[str]) -> list[list[str]]:
    """Relation paths from the beams' outputs, first occurrence first, duplicates dropped."""
    plans: list[list[str]] = []
    for output in outputs:
        for body in PLAN.findall(output):
            path = [part.strip() for part in body.split("<SEP>") if part.strip()]
            if path and path not in plans:
                plans.append(path)
    return plans
