"""RAFT with a generator: questions written from the documents, and chain-of-thought answers.

Without ``--qa``, as the RAFT paper does on a user's corpus: the generator writes
``questions_per_chunk`` questions from every chunk (numbering stripped, duplicates dropped, the
count enforced), that chunk is the question's oracle, and the generator answers each question
from its oracle in RAFT's format (``##begin_quote##…##end_quote##`` quotes, ``<ANSWER>: …``).
The answer must pass the quality gate (every quote verbatim in the oracle, a final answer line);
its final answer becomes the row's gold answer, so distractors exclude it as for a QA set.
Questions whose answer failed or was rejected are dropped and counted.

With ``cot: generator`` the kept chain-of-thought answer is the record's ``cot_answer``; with a
QA set, the generator answers each built example from its oracles, and a rejected answer falls
back to ``<ANSWER>: gold`` (counted), as an extractive answer without a quote does. Beyond the format
gate, a kept answer names a gold answer and quotes the evidence the extractive choice would quote
(:func:`hybridft.core.evidence.supports`); answers that do not are counted as they are dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hybridft.builders.raft_examples import RaftBuilder
from hybridft.core.answers import GoldAnswers
from hybridft.core.evidence import supports
from hybridft.core.readers import QARow
from hybridft.generators.run import Generator
from hybridft.generators.tasks import judge_passages, question_key, quotes_of, write_cot_answers, write_questions
from hybridft.retrieval.index import Corpus


class ChunkOracleBuilder(RaftBuilder):
    """Rows written from a chunk: that chunk is the oracle (not the document's first chunk that
    holds the answer, which is what ``doc_ids`` means for a QA set)."""

    def __init__(self, config: dict[str, Any], qa: list[QARow], corpus: Corpus, oracle_of: dict[str, int]):
        super().__init__(config, qa, corpus)
        self.oracle_of = oracle_of

    def check_doc_ids(self) -> None:
        pass  # the rows were made from the chunks

    def oracles_from_doc_ids(self, row: QARow, gold: GoldAnswers) -> list[int]:
        return [self.oracle_of[row.id]]


class RaftGenerator:
    """One generator for a RAFT build: its counts and manifest section cover every task."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.gen = Generator(config)
        self.counts: dict[str, Any] = {}
        self.skipped: Counter[str] = Counter()
        self.cot_of: dict[str, str] = {}  # generated row id -> its accepted chain-of-thought answer

    def __enter__(self) -> RaftGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.gen.close()

    def manifest(self) -> dict[str, Any]:
        return self.gen.manifest()

    def judge(self, items: list[tuple[str, str]]) -> list[bool]:
        """``--oracle-judge generator``: whether each passage answers its question."""
        verdicts, counts = judge_passages(self.gen, items)
        self.counts["oracle_judge"] = counts.as_dict()
        return verdicts

    def questions(self, corpus: Corpus) -> tuple[list[QARow], ChunkOracleBuilder]:
        """QA rows written from every chunk, each answered from its chunk, and their builder."""
        chunks = corpus.chunks
        per_chunk, question_counts = write_questions(self.gen, chunks.texts, self.config["questions_per_chunk"])
        candidates: list[tuple[str, str, int]] = []  # (row id, question, chunk index)
        seen: set[str] = set()
        for index, questions in enumerate(per_chunk):
            for n, question in enumerate(questions):
                key = question_key(question)
                if key in seen:  # two chunks asking the same thing would give it two oracles
                    question_counts.extra["duplicates_across_chunks"] += 1
                    continue
                seen.add(key)
                candidates.append((f"{chunks.ids[index]}#q{n}", question, index))
        self.counts["questions"] = question_counts.as_dict()
        answers, answer_counts = write_cot_answers(self.gen, [(q, [chunks.texts[i]]) for _, q, i in candidates])
        self.counts["cot_answers"] = answer_counts.as_dict()
        rows: list[QARow] = []
        oracle_of: dict[str, int] = {}
        for (row_id, question, index), answer in zip(candidates, answers, strict=True):
            if answer is None:
                self.skipped["question_without_answer"] += 1
                continue
            cot, final = answer
            oracle = [(chunks.titles[index], chunks.texts[index])]
            if not supports(quotes_of(cot), question, oracle, GoldAnswers([final])):
                self.skipped["answer_quote_not_supporting"] += 1
                continue
            doc_id = chunks.doc_ids[index]
            where = f"question written from chunk {chunks.ids[index]}"
            rows.append(QARow(row_id, question, [final], [doc_id], None, where))
            oracle_of[row_id] = index
            self.cot_of[row_id] = cot
        return rows, ChunkOracleBuilder(self.config, rows, corpus, oracle_of)

    def fill_cot(self, records: list[dict[str, Any]]) -> None:
        """``cot: generator``: each record's answer from the generator (rows written above keep the
        answer written with their question)."""
        todo = [r for r in records if r["source_id"] not in self.cot_of]
        if todo:
            items = [(r["question"], [o["text"] for o in r["oracles"]]) for r in todo]
            answers, counts = write_cot_answers(self.gen, items)
            self.counts["cot_answers"] = counts.as_dict()
            fallbacks = disagreed = 0
            unsupported = 0
            for record, answer in zip(todo, answers, strict=True):
                if answer is not None and not _names_gold(answer[1], record["answers"]):
                    disagreed += 1  # it would teach the model to contradict the QA set
                    answer = None
                elif answer is not None and not _quotes_support(answer[0], record, record["answers"]):
                    unsupported += 1  # it quotes a sentence that is not the evidence for the answer
                    answer = None
                if answer is None:
                    fallbacks += 1
                    record["cot_answer"] = f"<ANSWER>: {record['answers'][0]}"
                else:
                    record["cot_answer"] = answer[0]
            self.counts["cot_answers"]["disagreed_with_gold"] = disagreed
            self.counts["cot_answers"]["quote_not_supporting"] = unsupported
            self.counts["cot_answers"]["fell_back_to_answer_line"] = fallbacks
        for record in records:
            if record["source_id"] in self.cot_of:
                record["cot_answer"] = self.cot_of[record["source_id"]]


def _quotes_support(cot: str, record: dict[str, Any], answers: list[str]) -> bool:
    """The extractive quote choice as a gate (:func:`~hybridft.core.evidence.supports`)."""
    oracles = [(o.get("title", ""), o["text"]) for o in record["oracles"]]
    return supports(quotes_of(cot), record["question"], oracles, GoldAnswers(answers))


def _names_gold(final: str, gold: list[str]) -> bool:
    """Whether a final answer holds a gold answer (see :mod:`hybridft.core.answers`)."""
    return GoldAnswers(gold).in_text(final)
