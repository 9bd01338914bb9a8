"""RAFT examples from QA rows: oracles (named by ``doc_ids``, given as ``context``, or found by
answer search), distractors (ranked hard negatives or random chunks, never an oracle and by default
never a chunk holding a gold answer), the seeded oracle drop and shuffle, and the extractive
chain-of-thought answer. ``builders.raft`` reads the inputs and runs this; ``builders.invar`` reuses
the ranking and answer search for its negatives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from hybridft.builders.common import Quality, RowDraws, row_draws, shard_rows, splits_of
from hybridft.core.answers import AnswerFinder, GoldAnswers
from hybridft.core.errors import UsageError
from hybridft.core.evidence import Quote, choose_quote, is_relevant, question_terms
from hybridft.core.progress import log, track
from hybridft.core.readers import QARow
from hybridft.retrieval.chunking import Chunk
from hybridft.retrieval.index import Corpus

# Hard negatives are taken from this many top-ranked chunks before a full ranking is needed.
CANDIDATE_MARGIN = 16
# A row without doc_ids: how many chunks holding its answer are checked for relevance to the
# question before its oracle is called doubtful, and how many of them a --oracle-judge reads.
HOLDERS_CHECKED = 50
HOLDERS_JUDGED = 3
# The quality checks of a RAFT build (see builders.common.Quality).
QUALITY_CHECKS = ("doubtful_oracle", "quote_fallback", "quote_missing")


def extractive_cot(question: str, oracles: list[Chunk], gold: GoldAnswers) -> tuple[str, Quote] | None:
    """Quote the oracle sentence that holds a gold answer and best matches the question (see
    :func:`~hybridft.core.evidence.choose_quote`), then give that answer.

    Returns the answer and the quote, or None when no oracle sentence holds an answer (the
    caller counts it)."""
    quote = choose_quote(question, [(oracle.title, oracle.text) for oracle in oracles], gold)
    if quote is None:
        return None
    source = f"The document titled {quote.title!r}" if quote.title else "The document"
    text = (
        f"##Reason: {source} says ##begin_quote##{quote.text}##end_quote## "
        f"so the answer is {quote.answer}.\n<ANSWER>: {quote.answer}"
    )
    return text, quote


class RaftBuilder:
    """Holds the corpus, its index and the options while examples are built row by row."""

    def __init__(
        self,
        config: dict[str, Any],
        qa: list[QARow],
        corpus: Corpus,
        holding_check: str = "distractor_holding_answer",
    ):
        self.config = config
        # With --shard, the rows built are the shard's; counts that size every row's draws and
        # rankings still come from all of them, so a row is built as in the unsharded build.
        self.all_qa = qa
        self.qa, self.positions = shard_rows(qa, config)
        self.corpus = corpus  # its saved --index, if any, ranks instead of a new index
        chunks = self.chunks = corpus.chunks
        self.finder = AnswerFinder(chunks.texts)
        self.counts: Counter[str] = Counter()
        self.holding_check = holding_check
        self.quality = Quality(*QUALITY_CHECKS, holding_check)
        # --oracle-judge: per row id, the chunks holding its answer that the judge confirmed.
        self.judge: Callable[[list[tuple[str, str]]], list[bool]] | None = None
        self.judged: dict[str, list[int]] | None = None
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
        for row in self.all_qa:
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

    def holders(self, row: QARow, ranked: np.ndarray, gold: GoldAnswers) -> Iterator[tuple[int, bool]]:
        """Chunks holding a gold answer, best bm25-ranked first, each with whether it was among
        the ``ranked`` top chunks.

        Beyond the top-ranked chunks, only chunks sharing a bm25 term with an answer can hold it,
        so those are checked (a vectorised lookup, not a scan of the corpus per question); an
        answer without any bm25 term (one letter, stopwords) falls back to checking every chunk.
        """
        top = [int(i) for i in ranked]
        for index in top:
            if self.finder.contains(index, gold):
                yield index, True
        bm25 = self.bm25()
        candidates: set[int] = set()
        for answer in gold.answers:
            answer_scores = bm25.scores(answer)
            if not answer_scores.any():
                candidates = set(range(len(self.chunks)))
                break
            candidates.update(np.flatnonzero(answer_scores).tolist())
        candidates.difference_update(top)
        holding = [i for i in sorted(candidates) if self.finder.contains(i, gold)]
        if holding:
            scores = bm25.scores(row.question)
            for index in sorted(holding, key=lambda i: (-scores[i], i)):
                yield index, False

    def oracles_by_answer(
        self, row: QARow, ranked: np.ndarray, gold: GoldAnswers, limit: int
    ) -> tuple[list[int], bool]:
        """Up to ``limit`` chunks holding a gold answer that are relevant to the question (or
        confirmed by the ``--oracle-judge``), best ranked first; chunks beyond the top-ranked ones
        are looked at only while none is found. When no holder is relevant: the best-ranked
        holder, and True (doubtful). ``[]`` when no chunk holds an answer."""
        if self.judged is not None and row.id in self.judged:
            confirmed = self.judged[row.id][:limit]
            if confirmed:
                return confirmed, False
            best = next(self.holders(row, ranked, gold), None)
            return ([best[0]] if best else []), best is not None
        terms = question_terms(row.question, row.answers)
        picked: list[int] = []
        first = None
        for checked, (index, in_top) in enumerate(self.holders(row, ranked, gold)):
            if (picked and not in_top) or checked == HOLDERS_CHECKED:
                break
            if first is None:
                first = index
            if is_relevant(terms, self.finder.normalized(index)):
                picked.append(index)
                if len(picked) == limit:
                    break
        if picked:
            return picked, False
        return ([first] if first is not None else []), first is not None

    def judge_candidates(self, row: QARow, ranked: np.ndarray) -> list[int]:
        """The chunks a judge reads for a row: up to :data:`HOLDERS_JUDGED` holders, the ones
        relevant to the question first, each group best ranked first."""
        gold = GoldAnswers(row.answers)
        terms = question_terms(row.question, row.answers)
        relevant: list[int] = []
        others: list[int] = []
        for checked, (index, _) in enumerate(self.holders(row, ranked, gold)):
            if checked == HOLDERS_CHECKED or len(relevant) == HOLDERS_JUDGED:
                break
            (relevant if is_relevant(terms, self.finder.normalized(index)) else others).append(index)
        return (relevant + others)[:HOLDERS_JUDGED]

    def judge_oracles(
        self, judge: Callable[[list[tuple[str, str]]], list[bool]], bm25_ranked: dict[str, np.ndarray]
    ) -> None:
        """Ask ``judge`` (question, passage) -> answers-it for every row found by answer search,
        in one batch; :meth:`oracles_by_answer` then takes the confirmed chunks."""
        rows = [row for row in self.qa if row.id in bm25_ranked]
        candidates = {row.id: self.judge_candidates(row, bm25_ranked[row.id]) for row in rows}
        items = [(row, index) for row in rows for index in candidates[row.id]]
        verdicts = judge([(row.question, self.chunks.texts[index]) for row, index in items])
        self.judged = {row.id: [] for row in rows}
        for (row, index), verdict in zip(items, verdicts, strict=True):
            if verdict:
                self.judged[row.id].append(index)

    def doubtful(self, row: QARow, oracle: int) -> bool:
        """Note a doubtful oracle; True when ``--doubtful-oracles skip`` drops the row."""
        text = self.chunks.texts[oracle]
        self.quality.note(
            "doubtful_oracle",
            row.id,
            question=row.question,
            answers=row.answers,
            oracle=self.chunks.ids[oracle],
            passage=text if len(text) <= 300 else text[:300] + "...",
        )
        if self.config["doubtful_oracles"] == "skip":
            self.counts["skipped_doubtful_oracle"] += 1
            return True
        return False

    # --- distractors -----------------------------------------------------------------------

    def ranked_distractors(
        self, ranked: np.ndarray, row: QARow, needed: int, excluded: set[int], gold: GoldAnswers
    ) -> list[int] | None:
        picked, holding = self._first_usable(ranked, needed, excluded, gold)
        if len(picked) < needed and len(ranked) < len(self.chunks):
            full, _ = self.ranker().search([row.question], len(self.chunks), description="full ranking")
            picked, holding = self._first_usable(full[0], needed, excluded, gold)
        self._note_holding(row, holding)
        return picked if len(picked) == needed else None

    def _first_usable(
        self, ranked: Iterable[Any], needed: int, excluded: set[int], gold: GoldAnswers
    ) -> tuple[list[int], list[int]]:
        """The first ``needed`` chunks of ``ranked`` that are not excluded and (by default) hold no
        gold answer, and the chunks passed over for holding one."""
        picked: list[int] = []
        holding: list[int] = []
        if needed == 0:
            return picked, holding
        check_answers = self.config["exclude_answer_from_distractors"]
        for value in ranked:
            index = int(value)
            if index in excluded:
                continue
            if check_answers and self.finder.contains(index, gold):
                holding.append(index)
                continue
            picked.append(index)
            if len(picked) == needed:
                break
        return picked, holding

    def _note_holding(self, row: QARow, holding: list[int]) -> None:
        if holding:
            ids = [self.chunks.ids[i] for i in holding]
            self.quality.note(
                self.holding_check, row.id, len(holding), question=row.question, answers=row.answers, chunks=ids
            )

    def random_distractors(
        self, rng: Any, needed: int, excluded: set[int], gold: GoldAnswers, row: QARow
    ) -> list[int] | None:
        """Rejection sampling, then a seeded scan of the whole corpus if that keeps failing."""
        picked: list[int] = []
        holding: list[int] = []
        seen = set(excluded)  # so an unseen index needs no check against excluded
        total = len(self.chunks)
        draw = rng.random  # int(random() * total) is uniform enough here and 3x cheaper than randrange
        check_answers = self.config["exclude_answer_from_distractors"]
        for _ in range(needed * 20):
            if len(picked) == needed:
                break
            index = int(draw() * total)
            if index not in seen:
                seen.add(index)
                if check_answers and self.finder.contains(index, gold):
                    holding.append(index)
                else:
                    picked.append(index)
        if len(picked) < needed:
            rest = [i for i in range(total) if i not in seen]
            rng.shuffle(rest)
            found, more_holding = self._first_usable(rest, needed - len(picked), set(), gold)
            picked += found
            holding += more_holding
        self._note_holding(row, holding)
        return picked if len(picked) == needed else None

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
        max_oracles = max((len(set(r.doc_ids)) if r.doc_ids else 1) for r in self.all_qa)
        k = config["distractors"] + max_oracles + CANDIDATE_MARGIN
        bm25_ranked, ranked = self.rankings(k, True, "oracles", "distractors")
        if self.judge is not None:
            self.judge_oracles(self.judge, bm25_ranked)

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
        doubtful = False
        if row.doc_ids:
            oracle_indices = self.oracles_from_doc_ids(row, gold)
        elif row.context:
            oracle_indices = []
            context_oracle = [Chunk(f"{row.id}#context", f"{row.id}#context", "", row.context)]
        else:
            assert bm25_ranked is not None
            oracle_indices, doubtful = self.oracles_by_answer(row, bm25_ranked, gold, 1)
            if not oracle_indices:
                self.counts["skipped_no_oracle"] += 1
                return None
            if doubtful and self.doubtful(row, oracle_indices[0]):
                return None
        oracles = [self.chunks[i] for i in oracle_indices] + context_oracle

        oracle_present = rng.random() < config["oracle_p"]
        needed = config["distractors"] + (0 if oracle_present else len(oracles))
        excluded = set(oracle_indices)
        if ranked is not None:
            distractors = self.ranked_distractors(ranked, row, needed, excluded, gold)
        else:
            distractors = self.random_distractors(rng, needed, excluded, gold, row)
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
        if config["cot"] == "extractive":
            written = extractive_cot(row.question, oracles, gold)
            if written is None:
                self.counts["cot_without_quote"] += 1
                self.quality.note("quote_missing", row.id, question=row.question, answers=row.answers)
                cot_answer = f"<ANSWER>: {row.answers[0]}"
            else:
                cot_answer, quote = written
                if quote.fallback:
                    self.quality.note("quote_fallback", row.id, question=row.question, quote=quote.text)
        self.counts["oracle_present"] += oracle_present
        record = {
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
        if doubtful and config["doubtful_oracles"] == "flag":
            record["oracle_doubtful"] = True
        return record
