"""``eval retrieval``: rank documents for each Invar-RAG query (and its variants) with a ranker, or
score a predictions file, against the record's positives; SPEC §5 and docs/eval.md.

What is ranked: without ``--docs``, each record's own candidates (positives + negatives, in a
seeded order so that ties never favour the positives); with ``--docs``, the whole corpus (chunked
as ``build-data`` chunked it, so ids match the records' positives).

**The ranker seam.** ``RANKERS`` maps a ``--ranker`` name to a function ``(texts, config) ->
Ranker`` over the texts to rank. A :class:`Ranker` has ``search(queries, k)`` (the ``k`` best text
indices per query, best first: corpus mode) and ``score(queries, candidates)`` (each query's
scores of its own candidate indices: candidate mode). :class:`EmbeddingRanker` gives both from an
``encode(texts, description)`` function returning normalised embeddings; ``minilm`` is one.
``adapter`` is the trained Invar-RAG retriever (``finetune --trainer invar-retriever``, named by
``--retriever RUN_DIR``): :class:`hybridft.retrieval.llm_index.RetrieverIndex`, whose corpus index
is cached and resumable.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hybridft.core.errors import InputError, UsageError
from hybridft.core.options import Option
from hybridft.core.progress import log, track
from hybridft.core.records import RANKING
from hybridft.evaluation.common import common_options, load_records, read_keyed
from hybridft.evaluation.metrics import kendall_tau, mean, retrieval_scores, top_k_overlap
from hybridft.evaluation.report import Report
from hybridft.retrieval.chunking import Chunks
from hybridft.retrieval.index import INDEX_OPTION, Corpus


class Ranker(Protocol):
    def search(self, queries: list[str], k: int) -> list[list[int]]: ...

    def score(self, queries: list[str], candidates: list[list[int]]) -> list[np.ndarray]: ...


class BM25Ranker:
    """BM25 over the texts (in candidate mode the texts are every record's candidates, so term
    statistics come from that pool)."""

    def __init__(self, texts: Sequence[str], config: dict[str, Any]):
        from hybridft.retrieval.rankers import BM25Index

        self._index = BM25Index(texts)

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        indices, _ = self._index.search(queries, k, "bm25 search")
        return [[int(i) for i in row] for row in indices]

    def score(self, queries: list[str], candidates: list[list[int]]) -> list[np.ndarray]:
        return [
            self._index.scores(query)[chosen]
            for query, chosen in track(zip(queries, candidates, strict=True), "bm25 scoring", total=len(queries))
        ]


class EmbeddingRanker:
    """Dot products of normalised embeddings from ``encode(texts, description)``."""

    def __init__(self, texts: Sequence[str], encode: Callable[[Sequence[str], str], np.ndarray], name: str):
        self._encode = encode
        self._name = name
        self._documents = encode(texts, f"encoding documents ({name})")

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        from hybridft.retrieval.rankers import top_k_by_dot_product

        embedded = self._encode(queries, f"encoding queries ({self._name})")
        indices, _ = top_k_by_dot_product(embedded, self._documents, k)
        return [[int(i) for i in row] for row in indices]

    def score(self, queries: list[str], candidates: list[list[int]]) -> list[np.ndarray]:
        embedded = self._encode(queries, f"encoding queries ({self._name})")
        return [self._documents[chosen] @ embedded[n] for n, chosen in enumerate(candidates)]


def _minilm(texts: Sequence[str], config: dict[str, Any]) -> Ranker:
    from hybridft.retrieval.rankers import encode_texts, load_sentence_model

    model = load_sentence_model("minilm")
    return EmbeddingRanker(
        texts, lambda batch, description: encode_texts(model, batch, config["batch_size"], description), "minilm"
    )


def _adapter(texts: Sequence[str], config: dict[str, Any]) -> Ranker:
    from hybridft.retrieval.llm_index import open_index

    index = open_index(config["retriever"], texts, config["batch_size"])

    class AdapterRanker:
        def search(self, queries: list[str], k: int) -> list[list[int]]:
            indices, _ = index.search(queries, k)
            return [[int(i) for i in row] for row in indices]

        def score(self, queries: list[str], candidates: list[list[int]]) -> list[np.ndarray]:
            return index.score(queries, candidates)

    return AdapterRanker()


RANKERS: dict[str, Callable[[Sequence[str], dict[str, Any]], Ranker]] = {
    "bm25": BM25Ranker,
    "minilm": _minilm,
    "adapter": _adapter,
}

_COMMON = {o.name: o for o in common_options()}
OPTIONS = [
    *(_COMMON[name] for name in ("data", "split")),
    Option("predictions", "path", None, 'score this JSONL of {"id", "ranking": [doc_id, ...]} rows instead of ranking'),
    Option("ranker", "str", None, "rank with this model instead of scoring --predictions", choices=tuple(RANKERS)),
    Option("k", "list", ["1", "5", "20"], "cut-offs of hit@k, recall@k, ndcg@k"),
    Option("docs", "path", None, "rank this whole corpus (default: each record's positives + negatives)"),
    INDEX_OPTION,
    Option("invariance_k", "int", 5, "cut-off of invariance_overlap@k between a query and its variants", minimum=1),
    Option("seed", "int", 0, "order of each record's candidates before ranking (breaks ties)", minimum=0),
    Option("retriever", "path", None, "run folder of `finetune --trainer invar-retriever` (--ranker adapter)"),
    Option("batch_size", "int", 64, "texts encoded together (minilm, adapter)", minimum=1),
    *(_COMMON[name] for name in ("limit", "compare", "out", "overwrite")),
]


def check(config: dict[str, Any]) -> list[str]:
    errors = []
    if config["predictions"] and config["ranker"]:
        errors.append("give either --predictions or --ranker, not both")
    elif not config["predictions"] and not config["ranker"]:
        errors.append(f"give --predictions FILE, or --ranker ({', '.join(RANKERS)}) to rank")
    if (config["ranker"] == "adapter") != bool(config["retriever"]):
        errors.append("--ranker adapter and --retriever RUN_DIR (an invar-retriever run) go together")
    if config["docs"] and not config["ranker"]:
        errors.append("--docs is the corpus a --ranker ranks; a predictions file brings its own rankings")
    if config["index"] and not config["docs"]:
        errors.append("--index is a saved index over --docs: give --docs too (the corpus it was built from)")
    if not config["k"] or not all(value.isdigit() and int(value) > 0 for value in config["k"]):
        errors.append(f"k={','.join(config['k'])}: expected whole numbers of at least 1, like 1,5,20")
    return errors


def cutoffs(config: dict[str, Any]) -> list[int]:
    return sorted({int(value) for value in config["k"]})


def metric_names(ks: list[int], invariance_k: int, invariance: bool) -> list[str]:
    names = [f"{metric}@{k}" for metric in ("hit", "recall", "ndcg") for k in ks] + ["mrr"]
    if invariance:
        names += [f"invariance_overlap@{invariance_k}", "invariance_kendall_tau"]
    return names


# --- records and predictions ------------------------------------------------------------------


def read_rankings(path: str, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{"id", "ranking", "variant_rankings"?}`` rows keyed by id (see
    :func:`~hybridft.evaluation.common.read_keyed`); ``variant_rankings``, when given, has one
    ranking per variant of its record. Records without a row are counted by the caller."""

    def fits(row: dict[str, Any]) -> str | None:
        expected = len(records[row["id"]].get("variants", []))
        given = row.get("variant_rankings")
        if given is not None and len(given) != expected:
            return f'"variant_rankings" must be a list of {expected} rankings, one per variant of the record'
        return None

    return {
        key: {"ranking": row["ranking"], "variant_rankings": row.get("variant_rankings")}
        for key, row in read_keyed(path, records, RANKING, fits).items()
    }


# --- ranking ------------------------------------------------------------------------------------


def candidates_of(record: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Positives + negatives (first occurrence of each id), shuffled with the seed: ties in the
    ranker's scores keep this order, so they never favour the positives listed first."""
    unique = {doc["id"]: doc for doc in reversed(record["positives"] + record["negatives"])}
    documents = sorted(unique.values(), key=lambda doc: doc["id"])
    random.Random(f"{seed}:{record['id']}").shuffle(documents)
    return documents


def rank_candidates(records: list[dict[str, Any]], config: dict[str, Any]) -> list[list[list[str]]]:
    """Per record: the rankings (doc ids, best first) of its query, then of each variant, over its
    own candidates."""
    pool: dict[tuple[str, str], int] = {}
    queries: list[str] = []
    chosen: list[list[int]] = []
    ids: list[list[str]] = []
    for record in records:
        documents = candidates_of(record, config["seed"])
        indices = [pool.setdefault((doc["id"], doc["text"]), len(pool)) for doc in documents]
        names = [doc["id"] for doc in documents]
        for query in [record["query"], *record.get("variants", [])]:
            queries.append(query)
            chosen.append(indices)
            ids.append(names)
    log(f"ranking the candidates of {len(records)} record(s) ({len(pool)} distinct) with {config['ranker']}")
    ranker = RANKERS[config["ranker"]]([text for _, text in pool], config)
    scores = ranker.score(queries, chosen)
    rankings = [
        [names[i] for i in np.argsort(-np.asarray(s), kind="stable")] for names, s in zip(ids, scores, strict=True)
    ]
    return _per_record(records, rankings)


def corpus_chunks(config: dict[str, Any]) -> Corpus:
    """``--docs`` (or the saved ``--index`` over it), chunked with the chunk options in
    ``--data``/manifest.json when there is one (as ``build-data invar`` chunked them), else whole
    documents."""
    from hybridft.core.readers import read_documents
    from hybridft.retrieval.index import load_corpus, open_saved

    manifest = Path(config["data"]) / "manifest.json"
    options: dict[str, Any] = {}
    if manifest.is_file():
        try:
            options = json.loads(manifest.read_text(encoding="utf-8")).get("options") or {}
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise InputError(f"{manifest}: not a build-data manifest ({exc})") from None
    if options.get("chunk_size"):
        chunking = {"chunk_size": options["chunk_size"], "chunk_overlap": options.get("chunk_overlap") or 0}
        corpus = load_corpus({**config, "tokenizer": options.get("tokenizer"), **chunking})
    elif config["index"]:  # records of whole documents: the index's chunks are taken as they are
        saved = open_saved(config["index"], docs=config["docs"])
        corpus = Corpus(saved.chunks, saved.manifest["counts"]["documents"], {}, saved)
    else:
        documents, stats = read_documents(config["docs"])
        whole = Chunks(documents.ids, documents.ids, documents.titles, documents.texts)
        corpus = Corpus(whole, len(documents), dict(stats.skipped))
    for reason, n in corpus.skipped.items():
        log(f"--docs: skipped {n} ({reason.replace('_', ' ')})")
    return corpus


def rank_corpus(
    records: list[dict[str, Any]], config: dict[str, Any], corpus: Corpus, depth: int
) -> list[list[list[str]]]:
    """Per record: the top ``depth`` corpus ids of its query, then of each variant (with the saved
    ``--index`` when it was built by this ranker)."""
    queries = [query for record in records for query in [record["query"], *record.get("variants", [])]]
    ids, texts = corpus.chunks.ids, corpus.chunks.texts
    name = {"bm25": "bm25", "minilm": "minilm", "adapter": config["retriever"]}[config["ranker"]]
    saved = corpus.saved_ranker(name)
    if saved is not None:
        log(f"ranking {len(texts)} corpus text(s) for {len(queries)} quer(ies) with the saved index")
        found, _ = saved.search(queries, min(depth, len(texts)))
        return _per_record(records, [[ids[int(i)] for i in row] for row in found])
    log(f"ranking {len(texts)} corpus text(s) for {len(queries)} quer(ies) with {config['ranker']}")
    ranker = RANKERS[config["ranker"]](texts, config)
    rankings = [[ids[i] for i in row] for row in ranker.search(queries, depth)]
    return _per_record(records, rankings)


def _per_record(records: list[dict[str, Any]], rankings: list[list[str]]) -> list[list[list[str]]]:
    grouped, start = [], 0
    for record in records:
        size = 1 + len(record.get("variants", []))
        grouped.append(rankings[start : start + size])
        start += size
    return grouped


# --- scoring ------------------------------------------------------------------------------------


def invariance_scores(ranking: list[str], variant_rankings: list[list[str]], k: int) -> dict[str, float | None]:
    """Mean top-k overlap and Kendall tau between the query's ranking and each variant's."""
    overlap = mean([top_k_overlap(ranking, other, k) for other in variant_rankings])
    tau = mean([kendall_tau(ranking, other) for other in variant_rankings])
    return {f"invariance_overlap@{k}": overlap, "invariance_kendall_tau": tau}


def read_inputs(config: dict[str, Any]) -> None:
    """What ``--dry-run`` checks: the records (and the rankings) as the run reads them."""
    records = load_records(config, "invar")
    if config["predictions"]:
        read_rankings(config["predictions"], {r["id"]: r for r in records})


def evaluate(config: dict[str, Any]) -> Report:
    records = load_records(config, "invar")
    ks = cutoffs(config)
    depth = max(*ks, config["invariance_k"])
    skipped: Counter[str] = Counter()
    usable = [record for record in records if record["positives"]]
    skipped["no_positive"] = len(records) - len(usable)
    if config["docs"]:
        corpus = corpus_chunks(config)
        known = set(corpus.chunks.ids)
        scored = [r for r in usable if all(p["id"] in known for p in r["positives"])]
        skipped["positive_not_in_docs"] = len(usable) - len(scored)
        if usable and not scored:
            raise UsageError(
                f"docs={config['docs']}: no record's positives are in this corpus; give the documents "
                f"`build-data invar` was built from (positive ids look like {usable[0]['positives'][0]['id']!r})"
            )
        usable = scored
        rankings = rank_corpus(usable, config, corpus, depth) if usable else []
        ranked = "docs"
    elif config["ranker"]:
        rankings = rank_candidates(usable, config) if usable else []
        ranked = "candidates"
    else:
        given = read_rankings(config["predictions"], {r["id"]: r for r in records})
        scored = [r for r in usable if r["id"] in given]
        skipped["no_prediction"] = len(usable) - len(scored)
        usable = scored
        rankings = [[given[r["id"]]["ranking"], *(given[r["id"]]["variant_rankings"] or [])] for r in usable]
        ranked = "predictions"
    examples = []
    for record, (ranking, *variant_rankings) in zip(usable, rankings, strict=True):
        scores: dict[str, float | None] = dict(retrieval_scores(ranking, {p["id"] for p in record["positives"]}, ks))
        if variant_rankings:
            scores.update(invariance_scores(ranking, variant_rankings, config["invariance_k"]))
        examples.append(
            {
                "id": record["id"],
                "query": record["query"],
                "positives": [p["id"] for p in record["positives"]],
                "ranking": ranking[:depth],
                "variant_rankings": [r[:depth] for r in variant_rankings],
                "scores": scores,
            }
        )
    invariance = any("invariance_kendall_tau" in e["scores"] for e in examples)
    report = Report("retrieval", examples, metric_names(ks, config["invariance_k"], invariance), dict(skipped))
    report.extra.update(ranker=config["ranker"], ranked=ranked)
    return report
