"""Invar-RAG data (Liu et al. 2024, arXiv 2411.07021): an invariant LLM retriever, then a generator.

``--stage retrieval`` (default) writes the retriever's training rows: each QA row's query, seeded
query variants (the invariance loss compares the rankings of a query and its variants), positive
chunks, hard negatives that never contain a gold answer, and a MiniLM teacher's similarities of
the query to positives then negatives (the alignment target). Records (``records.jsonl``)::

    {"id", "source_id", "kind": "invar", "stage": "retrieval", "split", "query",
     "variants": [str], "variant_kinds": [str], "answers",
     "positives": [{"id", "text"}], "negatives": [{"id", "text"}], "teacher_scores": [float] | null}

``--stage generation`` writes the generator's rows: the question, the top-k documents a retriever
returns for it, and the answer (``messages`` / ``prompt-completion``, mixable with RAFT and RoG)::

    {"id", "source_id", "kind": "invar", "stage": "generation", "split", "query", "answers",
     "docs": [{"id", "title", "text"}], "answer_in_docs": bool}

Chunking, positives from ``doc_ids`` / answer search and hard-negative mining are RAFT's corpus
machinery (:class:`hybridft.builders.RaftBuilder`), with negatives in place of distractors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridft.builders import raft
from hybridft.builders.common import (
    RAY_OPTIONS,
    SHARD_OPTION,
    BuildResult,
    Quality,
    check_shard,
    common_options,
    row_rng,
    shard_rows,
    split_of,
)
from hybridft.builders.raft_examples import CANDIDATE_MARGIN, RaftBuilder
from hybridft.core.answers import AnswerFinder, GoldAnswers
from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.progress import log, track
from hybridft.core.readers import QARow, read_qa
from hybridft.generators import check_generator, generator_options
from hybridft.retrieval.chunking import CHUNKING_OPTIONS, check_chunking
from hybridft.retrieval.index import INDEX_OPTION, Corpus, load_corpus
from hybridft.retrieval.variants import PERTURBATIONS, make_variants

if TYPE_CHECKING:
    from hybridft.retrieval.rankers import DenseIndex

STAGES = ("retrieval", "generation")
FORMATS = ("auto", "retrieval", "messages", "prompt-completion")
TEACHERS = ("minilm", "none")


def _bm25(texts: Sequence[str], config: dict[str, Any]) -> Any:
    from hybridft.retrieval.rankers import BM25Index

    return BM25Index(texts)


def _dense(texts: Sequence[str], config: dict[str, Any]) -> Any:
    from hybridft.retrieval.rankers import DenseIndex

    return DenseIndex(texts, config["dense_model"])


def _trained(texts: Sequence[str], config: dict[str, Any]) -> Any:
    from hybridft.retrieval.llm_index import open_index

    return open_index(config["retriever"], texts)


# Rankers for the generation stage: each builds an index with ``search(queries, k)`` over the
# chunk texts. ``--retriever RUN_DIR`` (a `finetune --trainer invar-retriever` run) uses the trained
# Invar-RAG retriever instead (:func:`_trained`).
RETRIEVERS: dict[str, Callable[[Sequence[str], dict[str, Any]], Any]] = {"bm25": _bm25, "dense": _dense}

_RAFT = {o.name: o for o in raft.OPTIONS}
_FORMAT = Option(
    "format",
    "str",
    "auto",
    "rows in train.jsonl / eval.jsonl (auto: retrieval for --stage retrieval, messages for generation)",
    choices=FORMATS,
)

OPTIONS = [
    replace(_RAFT["qa"], required=True, required_unless=None, help="QA set: .jsonl/.jsonl.gz/.parquet rows or hf:NAME"),
    _RAFT["docs"],
    INDEX_OPTION,
    Option("stage", "str", "retrieval", "retriever rows, or question + retrieved documents -> answer", choices=STAGES),
    Option("negatives", "int", 7, "hard negatives per query (retrieval stage)", minimum=0),
    Option("negative_strategy", "str", "bm25", "how negatives are chosen", choices=("bm25", "random", "dense")),
    Option(
        "max_positives",
        "int",
        1,
        "positives of a row without doc_ids: the best bm25-ranked chunks holding a gold answer",
        minimum=1,
    ),
    Option(
        "variants",
        "list",
        list(PERTURBATIONS),
        "query perturbations, each seeded (reword: a --generator rewords the query)",
        choices=("reword", *PERTURBATIONS),
    ),
    Option("n_variants", "int", 2, "query variants per row", minimum=0),
    _RAFT["doubtful_oracles"],
    _RAFT["oracle_judge"],
    SHARD_OPTION,
    *RAY_OPTIONS,
    Option(
        "teacher",
        "str",
        "minilm",
        "teacher_scores by minilm (packaged all-MiniLM-L6-v2), a local folder, or none",
        none_turns_off=True,
    ),
    Option("teacher_batch_size", "int", 64, "texts per teacher forward pass", minimum=1),
    Option("top_k", "int", 5, "retrieved documents per question (generation stage)", minimum=1),
    Option(
        "retriever",
        "str",
        "bm25",
        "ranker of the generation stage: bm25, dense, or the run folder of `finetune --trainer invar-retriever`",
    ),
    *CHUNKING_OPTIONS,
    _RAFT["dense_model"],
    *(o if o.name != "format" else _FORMAT for o in common_options()),
    *generator_options(),
]


def check(config: dict[str, Any]) -> list[str]:
    """Checks that involve more than one key; also resolves ``format: auto`` from the stage (and an
    unset teacher to ``none``), so that ``--dry-run`` and the manifest show what is used."""
    errors = check_chunking(config) + check_shard(config)
    rewords = "reword" in config["variants"] and config["n_variants"] > 0 and config["stage"] == "retrieval"
    needs = [
        need for need, needed in (("variants=reword", rewords), ("oracle_judge=generator", judges(config))) if needed
    ]
    errors += check_generator(config, " and ".join(needs) or None)
    if config["n_variants"] > 0 and not config["variants"]:
        errors.append(f"variants: name at least one perturbation for n_variants={config['n_variants']}")
    teacher = config["teacher"] = config["teacher"] or "none"  # the option parser reads "none" as unset
    if teacher not in TEACHERS and not Path(teacher).is_dir():
        errors.append(f"teacher={teacher}: expected minilm, none, or a local sentence-transformers folder")
    retriever = config["retriever"]
    if retriever not in RETRIEVERS and not (Path(retriever) / "retriever.json").is_file():
        errors.append(
            f"retriever={retriever}: expected bm25, dense, or the --out folder of a finished "
            "`finetune --trainer invar-retriever` run (holding retriever.json)"
        )
    stage, fmt = config["stage"], config["format"]
    if fmt == "auto":
        config["format"] = "retrieval" if stage == "retrieval" else "messages"
    elif (fmt == "retrieval") != (stage == "retrieval"):
        wanted = "retrieval" if stage == "retrieval" else "messages or prompt-completion"
        errors.append(f"format={fmt}: --stage {stage} writes {wanted} rows (or leave --format auto)")
    return errors


def judges(config: dict[str, Any]) -> bool:
    """Whether a --generator judges the positives found by answer search."""
    return config["oracle_judge"] == "generator" and config["stage"] == "retrieval"


# --- retrieval stage --------------------------------------------------------------------------


class RetrievalBuilder:
    """Positives, negatives and variants row by row; teacher scores for all rows at the end."""

    def __init__(self, config: dict[str, Any], qa: list[QARow], corpus: Corpus):
        self.config = config
        self.all_qa = qa
        self.qa, self.positions = shard_rows(qa, config)  # see RaftBuilder
        self.chunks = corpus.chunks
        corpus_config = {
            "distractor_strategy": config["negative_strategy"],
            "exclude_answer_from_distractors": True,  # negatives never hold a gold answer
            "dense_model": config["dense_model"],
            "seed": config["seed"],
            "doubtful_oracles": config["doubtful_oracles"],
        }
        self.corpus = RaftBuilder(corpus_config, self.qa, corpus, holding_check="negative_holding_answer")
        self.quality = self.corpus.quality
        self.quality.counts.pop("quote_fallback")
        self.quality.counts.pop("quote_missing")
        self.quality.counts["fewer_variants"] = 0
        self.quality.counts["variants_rejected"] = 0
        self.counts: Counter[str] = Counter()
        self.rewordings: dict[str, str | None] = {}  # query -> the generator's rewording (variants=reword)
        self.generated: dict[str, Any] = {}  # counts of the generator's items
        self.manifest: dict[str, Any] = {}  # the manifest's generator section

    def rankings_with_generator(self, k: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The rankings (see :meth:`RaftBuilder.rankings`), with one generator's work around them:
        every distinct query reworded once before ranking (variants=reword: a wrong endpoint or
        model stops the build before any ranking), the positives found by answer search judged
        after it (oracle_judge=generator). Generated items are cached (see hybridft.generators)."""
        from hybridft.generators.run import Generator
        from hybridft.generators.tasks import judge_passages, write_rewordings

        config = self.config
        with Generator(config) as gen:
            if "reword" in config["variants"] and config["n_variants"] > 0:
                queries = list(dict.fromkeys(r.question for r in self.qa))
                texts, counts = write_rewordings(gen, queries)
                self.rewordings = dict(zip(queries, texts, strict=True))
                self.generated["rewordings"] = counts.as_dict()
            bm25_ranked, ranked = self.corpus.rankings(k, config["negatives"] > 0, "positives", "negatives")
            if judges(config):

                def judge(items: list[tuple[str, str]]) -> list[bool]:
                    verdicts, counts = judge_passages(gen, items)
                    self.generated["oracle_judge"] = counts.as_dict()
                    return verdicts

                self.corpus.judge_oracles(judge, bm25_ranked)
        self.manifest["generator"] = gen.manifest()
        return bm25_ranked, ranked

    def reworded(self, query: str, rng: Any) -> str | None:
        return self.rewordings.get(query)

    def build(self) -> list[dict[str, Any]]:
        config, corpus = self.config, self.corpus
        corpus.check_doc_ids()
        strategy = config["negative_strategy"]
        most_named = max((len(set(r.doc_ids)) if r.doc_ids else 0) for r in self.all_qa)
        k = config["negatives"] + max(most_named, config["max_positives"]) + CANDIDATE_MARGIN
        rewords = "reword" in config["variants"] and config["n_variants"] > 0
        if rewords or judges(config):
            bm25_ranked, ranked = self.rankings_with_generator(k)
        else:
            bm25_ranked, ranked = corpus.rankings(k, config["negatives"] > 0, "positives", "negatives")
        records = []
        for row in track(self.qa, "building Invar-RAG rows", total=len(self.qa)):
            record = self.example(row, bm25_ranked.get(row.id), ranked.get(row.id))
            if record is not None:
                records.append(record)
        if config["teacher"] != "none" and records:
            # Dense negatives ranked with the teacher's own model: its chunk embeddings are reused.
            same_model = strategy == "dense" and config["negatives"] > 0 and config["dense_model"] == config["teacher"]
            scores = teacher_scores(
                config["teacher"],
                [r["query"] for r in records],
                [[d["text"] for d in r["positives"] + r["negatives"]] for r in records],
                config["teacher_batch_size"],
                (corpus.chunks.texts, corpus.ranker()) if same_model else None,
            )
            for record, row_scores in zip(records, scores, strict=True):
                record["teacher_scores"] = row_scores
        return records

    def positives(
        self, row: QARow, gold: GoldAnswers, bm25_ranked: np.ndarray | None
    ) -> tuple[list[int], list[dict], bool]:
        """Positive chunk indices, any positive that is not a chunk, and whether they are doubtful:
        ``doc_ids`` (one chunk per named document), else the row's ``context``, else up to
        ``max_positives`` chunks holding a gold answer and relevant to the question, best bm25-ranked
        first (see :meth:`RaftBuilder.oracles_by_answer`)."""
        if row.doc_ids:
            return self.corpus.oracles_from_doc_ids(row, gold), [], False
        if row.context:
            return [], [{"id": f"{row.id}#context", "text": row.context}], False
        assert bm25_ranked is not None
        indices, doubtful = self.corpus.oracles_by_answer(row, bm25_ranked, gold, self.config["max_positives"])
        return indices, [], doubtful

    def example(self, row: QARow, bm25_ranked: np.ndarray | None, ranked: np.ndarray | None) -> dict[str, Any] | None:
        config, chunks = self.config, self.chunks
        gold = GoldAnswers(row.answers)
        indices, others, doubtful = self.positives(row, gold, bm25_ranked)
        positives = [{"id": chunks.ids[i], "text": chunks.texts[i]} for i in indices] + others
        if not positives:
            self.counts["skipped_no_positive"] += 1
            return None
        if doubtful and self.corpus.doubtful(row, indices[0]):
            return None
        excluded = set(indices)
        needed = config["negatives"]
        if needed == 0:
            negatives: list[int] | None = []
        elif ranked is not None:
            negatives = self.corpus.ranked_distractors(ranked, row, needed, excluded, gold)
        else:
            negatives = self.corpus.random_distractors(row_rng(config["seed"], row.id), needed, excluded, gold, row)
        if negatives is None:
            self.counts["skipped_not_enough_negatives"] += 1
            return None
        # Variants have their own stream: they stay the same whatever the negative strategy.
        # The words of an answer or of a positive's title are never dropped or misspelt.
        titles = [chunks.titles[i] for i in indices]
        refused: set[str] = set()
        variants = make_variants(
            row.question,
            config["variants"],
            config["n_variants"],
            row_rng(config["seed"], f"variants:{row.id}"),
            {"reword": self.reworded},
            keep=frozenset(word for text in [*row.answers, *titles] for word in text.lower().split()),
            refused=refused,
        )
        if refused:
            self.quality.note("variants_rejected", row.id, len(refused), query=row.question, kinds=sorted(refused))
        if len(variants) < config["n_variants"]:
            self.counts["fewer_variants"] += 1
            self.quality.note("fewer_variants", row.id, query=row.question, variants=[text for _, text in variants])
        self.counts["positives"] += len(positives)
        self.counts["negatives"] += len(negatives)
        self.counts["variants"] += len(variants)
        record: dict[str, Any] = {
            "id": f"invar-{row.id}",
            "source_id": row.id,
            "kind": "invar",
            "stage": "retrieval",
            "split": split_of(row.id, config["eval_fraction"]),
            "query": row.question,
            "variants": [text for _, text in variants],
            "variant_kinds": [kind for kind, _ in variants],
            "answers": row.answers,
            "positives": positives,
            "negatives": [{"id": chunks.ids[i], "text": chunks.texts[i]} for i in negatives],
            "teacher_scores": None,
        }
        if doubtful and config["doubtful_oracles"] == "flag":
            record["oracle_doubtful"] = True
        return record


def teacher_scores(
    teacher: str,
    queries: list[str],
    candidates: list[list[str]],
    batch_size: int,
    encoded: tuple[Sequence[str], DenseIndex] | None = None,
) -> list[list[float]]:
    """Cosine similarity of each query to each of its candidate texts under the teacher model
    (normalised sentence embeddings), rounded to 4 decimals. Each distinct text is encoded once,
    in batches; the per-row work is one vectorised gather and dot product. ``encoded`` gives texts
    a dense index of the same model holds already, and the index: those are not encoded again."""
    from hybridft.retrieval.rankers import encode_texts, load_sentence_model

    log(f"loading the teacher ({teacher})")
    model = load_sentence_model(teacher, option="teacher")
    position: dict[str, int] = {}
    flat = [position.setdefault(text, len(position)) for texts in candidates for text in texts]
    texts = list(position)
    stored = np.full(len(texts), -1, dtype=np.int64)  # each text's row in the dense index, if any
    if encoded is not None:
        for row, text in enumerate(encoded[0]):
            at = position.get(text)
            if at is not None and stored[at] < 0:
                stored[at] = row
    missing = np.flatnonzero(stored < 0)
    fresh = encode_texts(model, [texts[i] for i in missing], batch_size, "teacher: documents")
    document_embeddings = np.zeros((len(texts), fresh.shape[1]), dtype=np.float32)
    document_embeddings[missing] = fresh
    if encoded is not None and len(missing) < len(texts):
        reused = np.flatnonzero(stored >= 0)
        document_embeddings[reused] = encoded[1].embeddings(stored[reused])
        log(f"teacher: {len(reused)} document embedding(s) reused from the dense index")
    query_embeddings = encode_texts(model, queries, batch_size, "teacher: queries")
    lengths = [len(texts) for texts in candidates]
    query_of = np.repeat(np.arange(len(queries)), lengths)
    documents = document_embeddings[np.asarray(flat, dtype=np.int64)]
    similarity = np.einsum("ij,ij->i", query_embeddings[query_of], documents)
    values = np.round(similarity.astype(np.float64), 4).tolist()
    ends = np.cumsum(lengths).tolist()
    return [values[end - n : end] for n, end in zip(lengths, ends, strict=True)]


# --- generation stage -------------------------------------------------------------------------


def build_generation(config: dict[str, Any], qa: list[QARow], corpus: Corpus) -> list[dict[str, Any]]:
    """Question + the top-k chunks the retriever ranks for it -> the first gold answer."""
    chunks = corpus.chunks
    retriever = config["dense_model"] if config["retriever"] == "dense" else config["retriever"]
    index = corpus.saved_ranker(retriever)
    if index is None:
        log(f"indexing {len(chunks)} chunks with {config['retriever']}")
        index = RETRIEVERS.get(config["retriever"], _trained)(chunks.texts, config)
    found, _ = index.search([r.question for r in qa], config["top_k"], f"{config['retriever']} retrieval")
    finder = AnswerFinder(chunks.texts)
    records = []
    for n, row in enumerate(track(qa, "building Invar-RAG generation rows", total=len(qa))):
        gold = GoldAnswers(row.answers)
        indices = [int(i) for i in found[n]]
        records.append(
            {
                "id": f"invar-gen-{row.id}",
                "source_id": row.id,
                "kind": "invar",
                "stage": "generation",
                "split": split_of(row.id, config["eval_fraction"]),
                "query": row.question,
                "answers": row.answers,
                "docs": [{"id": chunks.ids[i], "title": chunks.titles[i], "text": chunks.texts[i]} for i in indices],
                "answer_in_docs": any(finder.contains(i, gold) for i in indices),
            }
        )
    return records


# --- build and render -------------------------------------------------------------------------


def read_inputs(config: dict[str, Any]) -> tuple[list[QARow], Corpus]:
    """The QA rows and the chunked corpus, checked (``--dry-run`` reads them too)."""
    qa = read_qa(config["qa"])
    corpus = load_corpus(config)
    chunks = corpus.chunks
    if config["stage"] == "generation" and len(chunks) < config["top_k"]:
        raise UsageError(
            f"--docs {config['docs']}: {len(chunks)} chunk(s), fewer than top_k={config['top_k']}: "
            "add documents or lower --top-k"
        )
    if config["stage"] == "retrieval" and len(chunks) < config["negatives"] + 1:
        raise UsageError(
            f"--docs {config['docs']}: {len(chunks)} chunk(s), but every row needs {config['negatives'] + 1} "
            f"(negatives={config['negatives']} + 1 positive): add documents or lower --negatives"
        )
    return qa, corpus


def build(config: dict[str, Any]) -> BuildResult:
    """Build Invar-RAG records from ``config`` (resolved OPTIONS, after :func:`check`)."""
    qa, corpus = read_inputs(config)
    chunks = corpus.chunks
    if config["stage"] == "generation":
        qa, positions = shard_rows(qa, config)
        counts: dict[str, Any] = {"qa_rows": len(qa), "documents": corpus.documents, "chunks": len(chunks)}
        records = build_generation(config, qa, corpus)
        in_docs = sum(r["answer_in_docs"] for r in records)
        counts.update(examples=len(records), answer_in_docs=in_docs, answer_not_in_docs=len(records) - in_docs)
        counts["skipped"] = dict(corpus.skipped)
        quality = Quality("answer_not_in_docs")
        for record in records:
            if not record["answer_in_docs"]:
                docs = [doc["id"] for doc in record["docs"]]
                quality.note("answer_not_in_docs", record["source_id"], query=record["query"], docs=docs)
        return BuildResult(records, counts, [config["qa"], config["docs"]], quality=quality, positions=positions)

    builder = RetrievalBuilder(config, qa, corpus)
    records = builder.build()
    c = builder.counts
    counts = {"qa_rows": len(builder.qa), "documents": corpus.documents, "chunks": len(chunks)}
    counts.update(
        examples=len(records),
        positives=c["positives"],
        negatives=c["negatives"],
        variants=c["variants"],
        rows_with_fewer_variants=c["fewer_variants"],
        teacher_scored=sum(r["teacher_scores"] is not None for r in records),
        **({"generated": builder.generated} if builder.generated else {}),
        skipped={
            "no_positive": c["skipped_no_positive"],
            "doubtful_oracle": builder.corpus.counts["skipped_doubtful_oracle"],
            "not_enough_negatives": c["skipped_not_enough_negatives"],
            **corpus.skipped,
        },
    )
    for reason in ("no_positive", "doubtful_oracle", "not_enough_negatives"):
        if counts["skipped"][reason]:
            log(f"skipped {counts['skipped'][reason]} QA row(s): {reason.replace('_', ' ')}")
    return BuildResult(
        records, counts, [config["qa"], config["docs"]], builder.manifest, builder.quality, builder.positions
    )
