"""RAFT data (Zhang et al. 2024, arXiv 2403.10131): question + oracle + distractor documents.

Each QA row gives one example with exactly ``len(oracles) + distractors`` documents. A share
``oracle_p`` of the examples keeps the oracles; in the rest their places go to more distractors,
which teaches the model to answer from memory when retrieval fails. Distractors are hard
negatives (``bm25``, ``dense``) or ``random`` chunks, never the oracle and, by default, never a
chunk that contains a gold answer. Records (``records.jsonl``)::

    {"id", "source_id", "kind": "raft", "split", "question", "answers", "cot_answer",
     "docs": [{"id", "title", "text", "is_oracle"}], "oracle_present",
     "oracles": [{"id", "title", "text"}]}   # kept even when dropped from docs
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridft.builders.common import BuildResult, RowDraws, common_options, row_draws, splits_of
from hybridft.errors import UsageError
from hybridft.generators import check_generator, generator_options
from hybridft.io import Documents, QARow, ReadStats, read_documents, read_qa
from hybridft.options import Option
from hybridft.progress import log, track
from hybridft.text import (
    AnswerFinder,
    GoldAnswers,
    chunk_text,
    iter_sentences,
    normalize_answer,
    tokenizer_spans,
    word_spans,
)

OPTIONS = [
    Option(
        "qa",
        "path",
        None,
        "QA set: .jsonl/.jsonl.gz/.parquet rows or hf:NAME; without it a --generator writes questions from --docs",
        required_unless="generator",
    ),
    Option("docs", "path", None, "documents: a folder, a .txt/.md file or .jsonl rows", required=True),
    Option("distractors", "int", 4, "distractor documents per example", minimum=0),
    Option("oracle_p", "float", 0.8, "share of examples that keep their oracle documents", minimum=0, maximum=1),
    Option(
        "distractor_strategy",
        "str",
        "bm25",
        "how distractors are chosen",
        choices=("bm25", "random", "dense"),
    ),
    Option("exclude_answer_from_distractors", "bool", True, "no distractor contains a gold answer"),
    Option("chunk_size", "int", 512, "chunk length in tokens (words when --tokenizer is unset)", minimum=1),
    Option("chunk_overlap", "int", 0, "tokens shared by consecutive chunks", minimum=0),
    Option("tokenizer", "str", None, "Hugging Face tokenizer (name or local path) that measures chunks"),
    Option(
        "cot",
        "str",
        "extractive",
        "chain-of-thought answers: quote the oracle sentence, written by the --generator, or none",
        choices=("extractive", "generator", "none"),
    ),
    Option("questions_per_chunk", "int", 3, "questions the --generator writes per chunk when --qa is unset", minimum=1),
    Option(
        "dense_model",
        "str",
        "minilm",
        "sentence-transformers model for the dense strategy: minilm (packaged all-MiniLM-L6-v2) or a local folder",
    ),
    *common_options(("messages", "prompt-completion", "raft-hf")),
    *generator_options(),
]

# Hard negatives are taken from this many top-ranked chunks before a full ranking is needed.
CANDIDATE_MARGIN = 16


def check_chunking(config: dict[str, Any]) -> list[str]:
    if config["chunk_overlap"] >= config["chunk_size"]:
        return [f"chunk_overlap={config['chunk_overlap']}: must be below chunk_size={config['chunk_size']}"]
    return []


def check(config: dict[str, Any]) -> list[str]:
    """Checks that involve more than one key."""
    return check_chunking(config) + check_generator(config, "cot=generator" if config["cot"] == "generator" else None)


@dataclass(slots=True)
class Chunk:
    id: str
    doc_id: str
    title: str
    text: str


@dataclass
class Chunks:
    """The corpus cut into chunks, one list per field: corpora have 100,000s of chunks and only a
    few per example are ever looked at as :class:`Chunk` objects."""

    ids: list[str]
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    # A document's chunks are contiguous: the index of its first one (an int per document is cheaper
    # to build than a range per document, for the few documents that questions name).
    first_of_doc: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Chunk:
        return Chunk(self.ids[index], self.doc_ids[index], self.titles[index], self.texts[index])

    def of_doc(self, doc_id: str) -> range:
        """The indices of a document's chunks (KeyError for a document without chunks)."""
        start = end = self.first_of_doc[doc_id]
        while end < len(self.doc_ids) and self.doc_ids[end] == doc_id:
            end += 1
        return range(start, end)

    def record_doc(self, index: int) -> dict[str, Any]:
        """A distractor as it appears in a record's ``docs``."""
        return {"id": self.ids[index], "title": self.titles[index], "text": self.texts[index], "is_oracle": False}


def chunk_documents(documents: Documents, size: int, overlap: int, tokenizer: str | None) -> Chunks:
    """Chunks keep their document's id when it fits in one chunk, else ``id#0``, ``id#1``, ..."""
    spans = tokenizer_spans(tokenizer) if tokenizer else word_spans
    # A text of c characters holds at most (c + 1) // 2 words: when chunks are counted in words and
    # no text is longer than 2 * size characters, every document is one chunk (the common case of
    # a corpus cut into passages already), and the columns are the documents' own.
    if spans is word_spans and max(map(len, documents.texts), default=0) <= 2 * size:
        stripped = list(map(str.strip, documents.texts))  # never empty: documents hold more than whitespace
        first_chunks = dict(zip(documents.ids, range(len(documents)), strict=True))
        return Chunks(documents.ids, documents.ids, documents.titles, stripped, first_chunks)
    ids: list[str] = []
    doc_ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    first_of_doc: dict[str, int] = {}
    for doc in documents:
        pieces = chunk_text(doc.text, size, overlap, spans)
        if not pieces:
            continue
        first_of_doc[doc.id] = len(ids)
        if len(pieces) == 1:
            ids.append(doc.id)
            doc_ids.append(doc.id)
            titles.append(doc.title)
            texts.append(pieces[0])
        else:
            for number, piece in enumerate(pieces):
                ids.append(f"{doc.id}#{number}")
                doc_ids.append(doc.id)
                titles.append(doc.title)
                texts.append(piece)
    return Chunks(ids, doc_ids, titles, texts, first_of_doc)


def extractive_cot(question: str, oracles: list[Chunk], gold: GoldAnswers) -> str | None:
    """Quote the first oracle sentence that holds a gold answer, then give that answer.

    Returns None when no oracle sentence holds an answer (the caller counts it).
    """
    for oracle in oracles:
        # Lazily, and from the first sentence that can hold an answer: most quotes are found before
        # the last sentence.
        for sentence in iter_sentences(oracle.text, gold.sentence_end_bound(oracle.text)):
            if not gold.might_be_in(sentence):
                continue
            norm_sentence = f" {normalize_answer(sentence)} "
            for answer, norm in zip(gold.answers, gold.normalized, strict=True):
                if norm and f" {norm} " in norm_sentence:
                    source = f"The document titled {oracle.title!r}" if oracle.title else "The document"
                    return (
                        f"##Reason: {source} says ##begin_quote##{sentence}##end_quote## "
                        f"so the answer is {answer}.\n<ANSWER>: {answer}"
                    )
    return None


# How each ``cot`` choice writes an answer; ``none`` has no writer and the answer line stands alone.
COT_WRITERS: dict[str, Callable[[str, list[Chunk], GoldAnswers], str | None]] = {"extractive": extractive_cot}


class RaftBuilder:
    """Holds the corpus, its index and the options while examples are built row by row."""

    def __init__(self, config: dict[str, Any], qa: list[QARow], chunks: Chunks):
        self.config = config
        self.qa = qa
        self.chunks = chunks
        self.finder = AnswerFinder(chunks.texts)
        self.counts: Counter[str] = Counter()
        self._bm25: Any = None
        self._ranker: Any = None

    # --- ranking ---------------------------------------------------------------------------

    def bm25(self) -> Any:
        if self._bm25 is None:
            from hybridft.retrieval import BM25Index

            log(f"indexing {len(self.chunks)} chunks with bm25")
            self._bm25 = BM25Index(self.chunks.texts)
        return self._bm25

    def ranker(self) -> Any:
        """The index that ranks distractor candidates (bm25 or dense)."""
        if self._ranker is None:
            if self.config["distractor_strategy"] == "dense":
                from hybridft.retrieval import DenseIndex

                log(f"embedding {len(self.chunks)} chunks with {self.config['dense_model']}")
                self._ranker = DenseIndex(self.chunks.texts, self.config["dense_model"])
            else:
                self._ranker = self.bm25()
        return self._ranker

    # --- oracles ---------------------------------------------------------------------------

    def check_doc_ids(self) -> None:
        errors = []
        for row in self.qa:
            for doc_id in row.doc_ids or []:
                if doc_id not in self.chunks.first_of_doc:
                    errors.append(f'{row.where}: doc_ids names "{doc_id}", which is not a document with text in --docs')
        if errors:
            more = len(errors) - 10
            raise UsageError(*errors[:10], *([f"... and {more} more unknown doc_ids"] if more > 0 else []))

    def oracles_from_doc_ids(self, row: QARow, gold: GoldAnswers) -> list[int]:
        """Per named document: its first chunk holding a gold answer, else its first chunk."""
        picked = []
        for doc_id in dict.fromkeys(row.doc_ids or []):
            indices = self.chunks.of_doc(doc_id)
            if len(indices) == 1:  # most documents are one chunk: nothing to search
                picked.append(indices[0])
            else:
                picked.append(next((i for i in indices if self.finder.contains(i, gold)), indices[0]))
        return picked

    def oracle_by_answer(self, row: QARow, ranked: np.ndarray, gold: GoldAnswers) -> int | None:
        """The best bm25-ranked chunk holding a gold answer.

        Beyond the top-ranked chunks, only chunks sharing a bm25 term with an answer can hold it,
        so those are checked (a vectorised lookup, not a scan of the corpus per question); an
        answer without any bm25 term (one letter, stopwords) falls back to checking every chunk.
        """
        for index in ranked:
            if self.finder.contains(int(index), gold):
                return int(index)
        bm25 = self.bm25()
        candidates: set[int] = set()
        for answer in gold.answers:
            answer_scores = bm25.scores(answer)
            if not answer_scores.any():
                candidates = set(range(len(self.chunks)))
                break
            candidates.update(np.flatnonzero(answer_scores).tolist())
        holding = [i for i in sorted(candidates) if self.finder.contains(i, gold)]
        if not holding:
            return None
        scores = bm25.scores(row.question)
        return max(holding, key=lambda i: (scores[i], -i))

    # --- distractors -----------------------------------------------------------------------

    def usable(self, index: int, excluded: set[int], gold: GoldAnswers) -> bool:
        if index in excluded:
            return False
        return not (self.config["exclude_answer_from_distractors"] and self.finder.contains(index, gold))

    def ranked_distractors(
        self, ranked: np.ndarray, row: QARow, needed: int, excluded: set[int], gold: GoldAnswers
    ) -> list[int] | None:
        picked = [int(i) for i in ranked if self.usable(int(i), excluded, gold)][:needed]
        if len(picked) < needed and len(ranked) < len(self.chunks):
            full, _ = self.ranker().search([row.question], len(self.chunks), description="full ranking")
            picked = [int(i) for i in full[0] if self.usable(int(i), excluded, gold)][:needed]
        return picked if len(picked) == needed else None

    def random_distractors(self, rng: Any, needed: int, excluded: set[int], gold: GoldAnswers) -> list[int] | None:
        """Rejection sampling, then a seeded scan of the whole corpus if that keeps failing."""
        picked: list[int] = []
        seen = set(excluded)  # so an unseen index needs no check against excluded (see usable)
        total = len(self.chunks)
        draw = rng.random  # int(random() * total) is uniform enough here and 3x cheaper than randrange
        check_answers = self.config["exclude_answer_from_distractors"]
        for _ in range(needed * 20):
            if len(picked) == needed:
                return picked
            index = int(draw() * total)
            if index not in seen:
                seen.add(index)
                if not (check_answers and self.finder.contains(index, gold)):
                    picked.append(index)
        if len(picked) == needed:
            return picked
        rest = [i for i in range(total) if i not in seen]
        rng.shuffle(rest)
        for index in rest:
            if not (check_answers and self.finder.contains(index, gold)):
                picked.append(index)
                if len(picked) == needed:
                    return picked
        return None

    def rankings(
        self, k: int, rank_candidates: bool, oracles: str, candidates: str
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per QA row id: the top ``k`` bm25 chunks of the rows whose oracle is found by answer
        search, and, with ``rank_candidates``, the top ``k`` chunks of every row by the distractor
        strategy (the bm25 ranking again when it covers every row). ``oracles`` and ``candidates``
        name them on the progress bars."""
        strategy = self.config["distractor_strategy"]
        need_answer_search = [r for r in self.qa if not r.doc_ids and not r.context]
        bm25_ranked: dict[str, np.ndarray] = {}
        if need_answer_search:
            found, _ = self.bm25().search([r.question for r in need_answer_search], k, f"ranking for {oracles}")
            bm25_ranked = {r.id: found[n] for n, r in enumerate(need_answer_search)}
        ranked: dict[str, np.ndarray] = {}
        if rank_candidates and strategy != "random":
            if strategy == "bm25" and len(bm25_ranked) == len(self.qa):
                ranked = bm25_ranked
            else:
                found, _ = self.ranker().search([r.question for r in self.qa], k, f"{strategy} {candidates}")
                ranked = {r.id: found[n] for n, r in enumerate(self.qa)}
        return bm25_ranked, ranked

    # --- examples --------------------------------------------------------------------------

    def examples(self) -> Iterator[dict[str, Any]]:
        """The examples in QA order, one at a time (skipped rows are counted in ``counts``)."""
        config = self.config
        max_oracles = max((len(set(r.doc_ids)) if r.doc_ids else 1) for r in self.qa)
        k = config["distractors"] + max_oracles + CANDIDATE_MARGIN
        bm25_ranked, ranked = self.rankings(k, True, "oracles", "distractors")

        ids = [row.id for row in self.qa]
        # Per row: one number for oracle_p, twice the needed distractors (rejection sampling) and
        # the shuffle of the documents; a row that needs more continues its own stream.
        draws = row_draws(config["seed"], ids, 1 + 3 * (config["distractors"] + max_oracles))
        rows = zip(self.qa, splits_of(ids, config["eval_fraction"]), draws, strict=True)
        for row, split, row_draw in track(rows, "building RAFT examples", total=len(self.qa)):
            record = self.example(row, split, row_draw, bm25_ranked.get(row.id), ranked.get(row.id))
            if record is not None:
                yield record

    def example(
        self, row: QARow, split: str, rng: RowDraws, bm25_ranked: np.ndarray | None, ranked: np.ndarray | None
    ) -> dict[str, Any] | None:
        config = self.config
        gold = GoldAnswers(row.answers)
        context_oracle: list[Chunk] = []
        if row.doc_ids:
            oracle_indices = self.oracles_from_doc_ids(row, gold)
        elif row.context:
            oracle_indices = []
            context_oracle = [Chunk(f"{row.id}#context", f"{row.id}#context", "", row.context)]
        else:
            assert bm25_ranked is not None
            found = self.oracle_by_answer(row, bm25_ranked, gold)
            if found is None:
                self.counts["skipped_no_oracle"] += 1
                return None
            oracle_indices = [found]
        oracles = [self.chunks[i] for i in oracle_indices] + context_oracle

        oracle_present = rng.random() < config["oracle_p"]
        needed = config["distractors"] + (0 if oracle_present else len(oracles))
        excluded = set(oracle_indices)
        if ranked is not None:
            distractors = self.ranked_distractors(ranked, row, needed, excluded, gold)
        else:
            distractors = self.random_distractors(rng, needed, excluded, gold)
        if distractors is None:
            self.counts["skipped_not_enough_distractors"] += 1
            return None

        docs = (
            [{"id": c.id, "title": c.title, "text": c.text, "is_oracle": True} for c in oracles]
            if oracle_present
            else []
        )
        docs += map(self.chunks.record_doc, distractors)
        rng.shuffle(docs)

        cot_answer = None
        write_cot = COT_WRITERS.get(config["cot"])
        if write_cot is not None:
            cot_answer = write_cot(row.question, oracles, gold)
            if cot_answer is None:
                self.counts["cot_without_quote"] += 1
                cot_answer = f"<ANSWER>: {row.answers[0]}"
        self.counts["oracle_present"] += oracle_present
        return {
            "id": f"raft-{row.id}",
            "source_id": row.id,
            "kind": "raft",
            "split": split,
            "question": row.question,
            "answers": row.answers,
            "cot_answer": cot_answer,
            "docs": docs,
            "oracle_present": oracle_present,
            "oracles": [{"id": c.id, "title": c.title, "text": c.text} for c in oracles],
        }


def build(config: dict[str, Any]) -> BuildResult:
    """Build RAFT records from ``config`` (resolved OPTIONS).

    Without a generator the records come as an iterator that builds them while they are written
    (no example waits in memory for the others); the counts are complete once it is exhausted.
    """
    qa = read_qa(config["qa"]) if config["qa"] else []
    documents, stats = read_documents(config["docs"])
    chunks = chunk_documents(documents, config["chunk_size"], config["chunk_overlap"], config["tokenizer"])
    needed = config["distractors"] + 1
    if len(chunks) < needed:
        raise UsageError(
            f"--docs {config['docs']}: {len(chunks)} chunk(s), but every example needs {needed} "
            f"(distractors={config['distractors']} + 1 oracle): add documents or lower --distractors"
        )
    inputs = [path for path in (config["qa"], config["docs"]) if path]
    sizes = {"documents": len(documents), "chunks": len(chunks)}
    if not config["qa"] or config["cot"] == "generator":  # see raft_generated
        return _build_with_generator(config, qa, chunks, inputs, sizes, stats)
    builder = RaftBuilder(config, qa, chunks)
    builder.check_doc_ids()
    result = BuildResult([], {}, inputs)
    result.records = _counted(builder, result, {"qa_rows": len(qa), **sizes}, stats)
    return result


def _counted(
    builder: RaftBuilder, result: BuildResult, sizes: dict[str, int], stats: ReadStats
) -> Iterator[dict[str, Any]]:
    """The builder's examples, then the counts in ``result``."""
    n_examples = 0
    for record in builder.examples():
        n_examples += 1
        yield record
    result.counts.update(_counts(builder, sizes, n_examples, stats))


def _counts(builder: RaftBuilder, sizes: dict[str, int], n_examples: int, stats: ReadStats) -> dict[str, Any]:
    return {
        **sizes,
        "examples": n_examples,
        "oracle_present": builder.counts["oracle_present"],
        "oracle_dropped": n_examples - builder.counts["oracle_present"],
        "cot_without_quote": builder.counts["cot_without_quote"],
        "skipped": {
            "no_oracle": builder.counts["skipped_no_oracle"],
            "not_enough_distractors": builder.counts["skipped_not_enough_distractors"],
            **stats.skipped,
        },
    }


def _build_with_generator(
    config: dict[str, Any],
    qa: list[QARow],
    chunks: Chunks,
    inputs: list[str],
    sizes: dict[str, int],
    stats: ReadStats,
) -> BuildResult:
    """Questions and/or CoT answers written by the generator: every record is kept until the
    generator has answered for all of them."""
    from hybridft.builders.raft_generated import RaftGenerator

    builder: RaftBuilder
    with RaftGenerator(config) as generator:
        if not config["qa"]:
            qa, builder = generator.questions(chunks)
            if not qa:
                raise UsageError(f"the generator wrote no usable question: {generator.counts}")
        else:
            builder = RaftBuilder(config, qa, chunks)
        builder.check_doc_ids()
        records = list(builder.examples())
        if config["cot"] == "generator":
            generator.fill_cot(records)
    counts = _counts(builder, {"qa_rows": len(qa), **sizes}, len(records), stats)
    counts["generated"] = generator.counts
    counts["skipped"].update(generator.skipped)
    return BuildResult(records, counts, inputs, {"generator": generator.manifest()})
