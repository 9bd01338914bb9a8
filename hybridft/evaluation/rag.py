"""``eval rag``: the composed system on questions — a retriever ranks the whole corpus (a saved
``--index``, or ``--docs`` indexed now), the top-k chunks go to the model rendered as its training
rows were, and the answers are scored with RAFT's answer metrics; on the same rankings,
``answer_recall@k`` (a retrieved chunk holds a gold answer) and ``hit@k`` (a retrieved chunk is one
the question names: ``doc_ids`` of a QA row, the oracles or positives of a build-data record).

Questions come from a QA set, or from a build-data folder's records of ``--split`` (``eval`` by
default: only questions the model was not trained on). Without ``--adapter`` the base model
answers: the baseline a tuned adapter is compared with (``--compare``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridft.core.answers import AnswerFinder, GoldAnswers
from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.readers import build_manifest, iter_rows, read_qa
from hybridft.core.records import question_schema
from hybridft.evaluation.common import common_options
from hybridft.evaluation.metrics import raft_scores
from hybridft.evaluation.raft import METRICS as ANSWER_METRICS
from hybridft.evaluation.report import Report
from hybridft.retrieval.chunking import CHUNKING_OPTIONS, check_chunking
from hybridft.retrieval.index import SavedIndex, checked_manifest, mismatches
from hybridft.retrieval.pipeline import PROMPTS, parse_ks

_COMMON = {o.name: o for o in common_options()}

OPTIONS = [
    Option(
        "qa",
        "path",
        None,
        "questions: a QA set (.jsonl/.parquet rows or hf:NAME) or a build-data folder (its records of --split)",
        required=True,
    ),
    Option("split", "str", "eval", "with a build-data folder: which questions", choices=("eval", "train", "all")),
    Option("index", "path", None, "a folder written by `hybridft index` (else --docs is indexed now)"),
    Option("docs", "path", None, "documents to index now, or to check --index against"),
    Option("retriever", "str", "bm25", "without --index: bm25, minilm, a sentence-transformers folder or a run"),
    *CHUNKING_OPTIONS,
    Option("k", "list", ["1", "3", "5", "10"], "chunks given to the model, one evaluation per value"),
    *(_COMMON[name] for name in ("model", "adapter")),
    Option("prompt", "str", "auto", "auto: as the adapter was trained (invar-generator or RAFT)", choices=PROMPTS),
    *(_COMMON[name] for name in ("batch_size", "max_new_tokens")),
    Option("limit", "int", None, "score only the first N questions", minimum=1),
    *(_COMMON[name] for name in ("compare", "out", "overwrite")),
]


def check(config: dict[str, Any]) -> list[str]:
    errors = check_chunking(config)
    if not config["index"] and not config["docs"]:
        errors.append("give --index INDEX_DIR (from `hybridft index`), or --docs to index the corpus now")
    if not config["model"] and not config["adapter"]:
        errors.append("give --model (the base model alone) and/or --adapter RUN_DIR")
    try:
        parse_ks(config["k"])
    except UsageError as exc:
        errors.extend(str(exc).splitlines())
    return errors


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]
    relevant: set[str]  # ids of the chunks (or documents) that answer it; empty: unknown
    by_document: bool  # relevant holds document ids (a QA row's doc_ids), not chunk ids


def load_questions(config: dict[str, Any]) -> list[Question]:
    source = Path(config["qa"])
    if source.is_dir():
        questions = _build_questions(source, config["split"])
    else:
        questions = [Question(r.id, r.question, r.answers, set(r.doc_ids or ()), True) for r in read_qa(config["qa"])]
    if config["limit"]:
        questions = questions[: config["limit"]]
    if not questions:
        raise UsageError(f"qa={config['qa']}: no questions in split {config['split']!r}")
    return questions


def _build_questions(folder: Path, split: str) -> list[Question]:
    """One question per source row of a RAFT or Invar-RAG build (its oracles / positives are the
    relevant chunks)."""
    path = folder / "records.jsonl"
    if not path.is_file():
        raise UsageError(f"qa={folder}: no records.jsonl; give a QA file or a `build-data raft|invar` folder")
    questions: dict[str, Question] = {}
    for where, row in iter_rows(path):
        schema = question_schema(row)
        if schema is None:
            raise UsageError(
                f"{where}: a {row.get('kind')!r} record; eval rag reads the questions of raft or invar builds"
            )
        if split not in ("all", row.get("split")):
            continue
        (row,) = schema.checked([(where, row)])
        text = row["question"] if row["kind"] == "raft" else row["query"]
        relevant = row.get("oracles") if row["kind"] == "raft" else row.get("positives")  # none: generation stage
        key = str(row.get("source_id", row["id"]))
        questions.setdefault(key, Question(key, text, row["answers"], {doc["id"] for doc in relevant or []}, False))
    return list(questions.values())


def read_inputs(config: dict[str, Any]) -> None:
    """What ``--dry-run`` checks: the questions, and the saved index's manifest against the
    chunking given."""
    load_questions(config)
    if config["index"]:
        chunking = {key: config[key] for key in ("chunk_size", "chunk_overlap", "tokenizer")}
        checked_manifest(Path(config["index"]), docs=config["docs"], chunking=chunking if config["docs"] else None)


def evaluate(config: dict[str, Any]) -> Report:
    from hybridft.retrieval.pipeline import answer, chunk_rows, load_system, prompt_style, retrieve

    ks = parse_ks(config["k"])
    questions = load_questions(config)
    chunking = {key: config[key] for key in ("chunk_size", "chunk_overlap", "tokenizer")}
    model, index = load_system(
        index=config["index"],
        docs=config["docs"],
        retriever=config["retriever"],
        chunking=chunking,
        model=config["model"],
        adapter=config["adapter"],
    )
    if Path(config["qa"]).is_dir() and any(q.relevant for q in questions):
        build_fits(Path(config["qa"]), index)
    skipped: Counter[str] = Counter()
    if ks[-1] > len(index.chunks):
        skipped["k_above_chunks"] = sum(k > len(index.chunks) for k in ks)
        ks = sorted({min(k, len(index.chunks)) for k in ks})
    style = prompt_style(config["prompt"], config["adapter"])
    texts = [q.question for q in questions]
    retrieved = retrieve(index, texts, ks[-1])
    examples: list[dict[str, Any]] = []
    by_k: dict[str, list[dict[str, Any]]] = {}
    for k in ks:
        outputs = answer(
            model,
            index,
            texts,
            retrieved,
            k,
            style,
            batch_size=config["batch_size"],
            max_new_tokens=config["max_new_tokens"],
            description=f"answering from the top {k}",
        )
        rows = [
            {
                "id": question.id,
                "k": k,
                "question": question.question,
                "answers": question.answers,
                "retrieved": chunk_rows(index, found, k),
                "output": output,
                "scores": scores_at(index, question, found.indices[:k], output),
            }
            for question, found, output in zip(questions, retrieved, outputs, strict=True)
        ]
        examples.extend(rows)
        by_k[str(k)] = rows
    return _report(examples, by_k, ks, skipped, model.name, style, index)


def build_fits(folder: Path, index: SavedIndex) -> None:
    """A build's relevant chunks (oracles, positives) are chunk ids of its own corpus and chunking:
    an index of another corpus or chunking would match none of them (``hit`` silently low), so it
    is exit 2 naming the difference. (A build made over an ``--index`` records that index, not the
    corpus files.)"""
    manifest = build_manifest(folder)
    options = manifest.get("options") or {}
    chunking = {key: options[key] for key in index.manifest["chunking"] if key in options}
    problems = mismatches(index.manifest, None, chunking)
    indexed = set((index.manifest.get("inputs") or {}).values())  # none: indexed now from --docs
    built_from = set((manifest.get("inputs") or {}).values())
    if indexed and options.get("docs") and not options.get("index") and not indexed <= built_from:
        problems.append(f"the build's corpus ({options['docs']}) is not the one the index was built from")
    if problems:
        raise UsageError(*(f"qa={folder}: {problem}; its relevant chunks would match none" for problem in problems))


def scores_at(index: SavedIndex, question: Question, indices: list[int], output: str) -> dict[str, float | None]:
    """RAFT's answer metrics against the retrieved texts, answer recall and hit of these chunks."""
    texts = [index.chunks.texts[i] for i in indices]
    scores = raft_scores(output, question.answers, texts)
    finder = AnswerFinder(texts)
    gold = GoldAnswers(question.answers)
    scores["answer_recall"] = float(any(finder.contains(i, gold) for i in range(len(texts))))
    scores["hit"] = None
    if question.relevant:
        names = index.chunks.doc_ids if question.by_document else index.chunks.ids
        scores["hit"] = float(any(names[i] in question.relevant for i in indices))
    return scores


def _report(
    examples: list[dict[str, Any]],
    by_k: dict[str, list[dict[str, Any]]],
    ks: list[int],
    skipped: Counter[str],
    model_name: str,
    style: str,
    index: SavedIndex,
) -> Report:
    names = [*ANSWER_METRICS, "answer_recall", "hit"]
    report = Report("rag", examples, names, dict(skipped), summary=by_k[str(ks[-1])])
    curve = {k: report.metrics(rows) for k, rows in by_k.items()}
    for k, metrics in curve.items():
        report.extra_metrics[f"answer_recall@{k}"] = metrics["answer_recall"]
        report.extra_metrics[f"hit@{k}"] = metrics["hit"]
    report.extra["k"] = ks[-1]
    report.extra["by_k"] = curve
    report.extra["model"] = model_name
    report.extra["prompt"] = style
    report.extra["retriever"] = index.manifest["retriever"]
    return report
