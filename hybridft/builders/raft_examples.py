"""RAFT examples from QA rows: oracles (named by ``doc_ids``, given as ``context``, or found by
answer search), distractors (ranked hard negatives or random chunks, never an oracle and by default
never a chunk holding a gold answer), the seeded oracle drop and shuffle, and the extractive
chain-of-thought answer. ``builders.raft`` reads the inputs and runs this; ``builders.invar`` reuses
the ranking and answer search for its negatives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from hybridft.builders.common import RowDraws, row_draws, splits_of
from hybridft.core.errors import UsageError
from hybridft.core.progress import log, track
from hybridft.core.readers import QARow
from hybridft.core.text import AnswerFinder, GoldAnswers, iter_sentences, normalize_answer
from hybridft.retrieval.chunking import Chunk
from hybridft.retrieval.index import Corpus

# Hard negatives are taken from this many top-ranked chunks before a full ranking is needed.
CANDIDATE_MARGIN = 16


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

    def __init__(self, config: dict[str, Any], qa: list[QARow], corpus: Corpus):
        self.config = config
        self.qa = qa
        self.corpus = corpus  # its saved --index, if any, ranks instead of a new index
        chunks = self.chunks = corpus.chunks
        self.finder = AnswerFinder(chunks.texts)
        self.counts: Counter[str] = Counter()
        self._bm25: Any = None
        self._ranker: Any = None

    # --- ranking ---------------------------------------------------------------------------

    def bm25(self) -> Any:
        if self._bm25 is None:
            from hybridft.retrieval.rankers import BM25Index

            self._bm25 = self.corpus.saved_ranker("bm25")
            if self._bm25 is None:
                log(f"indexing {len(self.chunks)} chunks with bm25")
                self._bm25 = BM25Index(self.chunks.texts)
        return self._bm25

    def ranker(self) -> Any:
        """The index that ranks distractor candidates (bm25 or dense)."""
        if self._ranker is None:
            if self.config["distractor_strategy"] == "dense":
                from hybridft.retrieval.rankers import DenseIndex

                self._ranker = self.corpus.saved_ranker(self.config["dense_model"])
                if self._ranker is None:
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
