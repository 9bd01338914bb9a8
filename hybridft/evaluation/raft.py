"""``eval raft``: answer each question from its oracle documents plus k distractors, for one k
or several (the robustness curve of the RAFT paper's Figure 6), or score a predictions file."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hybridft.core.options import Option
from hybridft.core.records import RAFT_PREDICTION
from hybridft.core.render import raft_prompt
from hybridft.evaluation.common import check_source, common_options, load_records, read_predictions
from hybridft.evaluation.metrics import raft_scores
from hybridft.evaluation.report import Report

METRICS = ["exact_match", "f1", "contains", "answer_format", "quote_precision"]

OPTIONS = [
    *common_options(),
    Option(
        "distractors",
        "list",
        None,
        "distractor documents at test time, e.g. 0,2,4 (default: the documents each record was built with)",
    ),
    Option("seed", "int", 0, "order of the documents shown with each question", minimum=0),
]


def check(config: dict[str, Any]) -> list[str]:
    errors = check_source(config)
    for value in config["distractors"] or []:
        if not value.isdigit():
            errors.append(f"distractors={','.join(config['distractors'])}: expected whole numbers like 0,2,4")
            break
    if config["predictions"] and config["distractors"] and len(config["distractors"]) > 1:
        errors.append("a predictions file answers one set of documents: give at most one --distractors value")
    return errors


def test_documents(record: dict[str, Any], k: int | None, seed: int) -> list[str] | None:
    """The oracles plus the record's first ``k`` distractors, in a seeded order; None when the
    record holds fewer than ``k`` distractors. ``k=None``: the documents as built."""
    if k is None:
        return [doc["text"] for doc in record["docs"]]
    distractors = [doc["text"] for doc in record["docs"] if not doc.get("is_oracle")]
    if len(distractors) < k:
        return None
    documents = [oracle["text"] for oracle in record["oracles"]] + distractors[:k]
    random.Random(f"{seed}:{record['id']}:{k}").shuffle(documents)
    return documents


def prompt_for(record: dict[str, Any], documents: list[str]) -> str:
    """The prompt the RAFT builder writes, with these documents."""
    return raft_prompt({"docs": [{"text": text} for text in documents], "question": record["question"]})


def read_inputs(config: dict[str, Any]) -> None:
    """What ``--dry-run`` checks: the records (and the predictions) as the run reads them."""
    records = load_records(config, "raft")
    if config["predictions"]:
        read_predictions(config["predictions"], {r["id"] for r in records}, RAFT_PREDICTION)


def evaluate(config: dict[str, Any]) -> Report:
    records = load_records(config, "raft")
    ks: list[int | None] = [int(k) for k in config["distractors"]] if config["distractors"] else [None]
    skipped: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    by_k: dict[str, list[dict[str, Any]]] = {}
    generator = None
    if config["predictions"]:
        predictions = read_predictions(config["predictions"], {r["id"] for r in records}, RAFT_PREDICTION)
    else:
        from hybridft.core.generation import load_generator

        generator = load_generator(config["model"], config["adapter"])
    for k in ks:
        usable = []
        for record in records:
            documents = test_documents(record, k, config["seed"])
            if documents is None:
                skipped[f"fewer_than_{k}_distractors"] += 1
            elif generator is None and record["id"] not in predictions:
                skipped["no_prediction"] += 1
            else:
                usable.append((record, documents))
        if generator is not None:
            prompts = [prompt_for(record, documents) for record, documents in usable]
            outputs = [
                o[0]
                for o in generator.generate(
                    prompts,
                    batch_size=config["batch_size"],
                    max_new_tokens=config["max_new_tokens"],
                    description=f"answering ({k if k is not None else 'as built'} distractors)",
                )
            ]
        else:
            outputs = [predictions[r["id"]] for r, _ in usable]
        rows = [
            {
                "id": record["id"],
                "distractors": k,
                "question": record["question"],
                "answers": record["answers"],
                "output": output,
                "scores": raft_scores(output, record["answers"], documents),
            }
            for (record, documents), output in zip(usable, outputs, strict=True)
        ]
        examples.extend(rows)
        by_k[str(k)] = rows
    report = Report("raft", examples, METRICS, dict(skipped))
    if config["distractors"] and len(ks) > 1:
        report.extra["by_distractors"] = {k: report.metrics(rows) for k, rows in by_k.items() if rows}
    report.extra["model"] = generator.name if generator else None
    return report
