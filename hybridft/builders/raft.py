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

from collections.abc import Iterator
from typing import Any

from hybridft.builders.common import RAY_OPTIONS, SHARD_OPTION, BuildResult, check_shard, common_options
from hybridft.builders.raft_examples import RaftBuilder
from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.readers import QARow, read_qa
from hybridft.generators import check_generator, generator_options
from hybridft.retrieval.chunking import CHUNKING_OPTIONS, check_chunking
from hybridft.retrieval.index import INDEX_OPTION, Corpus, load_corpus

OPTIONS = [
    Option(
        "qa",
        "path",
        None,
        "QA set: .jsonl/.jsonl.gz/.parquet rows or hf:NAME; without it a --generator writes questions from --docs",
        required_unless="generator",
    ),
    Option("docs", "path", None, "documents: a folder, a .txt/.md file or .jsonl rows", required=True),
    INDEX_OPTION,
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
    Option(
        "doubtful_oracles",
        "str",
        "skip",
        "a row without doc_ids whose answer is found only in passages not about the question: "
        "skip it, keep it, or keep it with oracle_doubtful in its record (always counted)",
        choices=("skip", "keep", "flag"),
    ),
    Option(
        "oracle_judge",
        "str",
        "none",
        "generator: the --generator confirms that an oracle found by answer search answers the question",
        choices=("none", "generator"),
    ),
    SHARD_OPTION,
    *RAY_OPTIONS,
    *CHUNKING_OPTIONS,
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


def check(config: dict[str, Any]) -> list[str]:
    """Checks that involve more than one key."""
    errors = check_chunking(config) + check_generator(config, generator_needed_for(config)) + check_shard(config)
    if config.get("shard") and not config["qa"]:
        errors.append("shard: needs --qa (questions a generator writes come from every chunk of the corpus)")
    return errors


def generator_needed_for(config: dict[str, Any]) -> str | None:
    """The options (``cot=generator``, ``oracle_judge=generator``) that need a --generator."""
    needs = [f"{key}=generator" for key in ("cot", "oracle_judge") if config.get(key) == "generator"]
    return " and ".join(needs) or None


def read_inputs(config: dict[str, Any]) -> tuple[list[QARow], Corpus]:
    """The QA rows and the chunked corpus, checked (``--dry-run`` reads them too)."""
    qa = read_qa(config["qa"]) if config["qa"] else []
    corpus = load_corpus(config)
    needed = config["distractors"] + 1
    if len(corpus.chunks) < needed:
        raise UsageError(
            f"--docs {config['docs']}: {len(corpus.chunks)} chunk(s), but every example needs {needed} "
            f"(distractors={config['distractors']} + 1 oracle): add documents or lower --distractors"
        )
    return qa, corpus


def build(config: dict[str, Any]) -> BuildResult:
    """Build RAFT records from ``config`` (resolved OPTIONS).

    Without a generator the records come as an iterator that builds them while they are written
    (no example waits in memory for the others); the counts are complete once it is exhausted.
    """
    qa, corpus = read_inputs(config)
    chunks = corpus.chunks
    inputs = [path for path in (config["qa"], config["docs"]) if path]
    sizes = {"documents": corpus.documents, "chunks": len(chunks)}
    if generator_needed_for(config) or not config["qa"]:  # see raft_generated
        return _build_with_generator(config, qa, corpus, inputs, sizes)
    builder = RaftBuilder(config, qa, corpus)
    builder.check_doc_ids()
    result = BuildResult([], {}, inputs, quality=builder.quality, positions=builder.positions)
    result.records = _counted(builder, result, {"qa_rows": len(builder.qa), **sizes}, corpus.skipped)
    return result


def _counted(
    builder: RaftBuilder, result: BuildResult, sizes: dict[str, int], unread: dict[str, int]
) -> Iterator[dict[str, Any]]:
    """The builder's examples, then the counts in ``result``."""
    n_examples = 0
    for record in builder.examples():
        n_examples += 1
        yield record
    result.counts.update(_counts(builder, sizes, n_examples, unread))


def _counts(builder: RaftBuilder, sizes: dict[str, int], n_examples: int, unread: dict[str, int]) -> dict[str, Any]:
    """``unread``: documents the reader skipped, by reason."""
    return {
        **sizes,
        "examples": n_examples,
        "oracle_present": builder.counts["oracle_present"],
        "oracle_dropped": n_examples - builder.counts["oracle_present"],
        "cot_without_quote": builder.counts["cot_without_quote"],
        "skipped": {
            "no_oracle": builder.counts["skipped_no_oracle"],
            "doubtful_oracle": builder.counts["skipped_doubtful_oracle"],
            "not_enough_distractors": builder.counts["skipped_not_enough_distractors"],
            **unread,
        },
    }


def _build_with_generator(
    config: dict[str, Any],
    qa: list[QARow],
    corpus: Corpus,
    inputs: list[str],
    sizes: dict[str, int],
) -> BuildResult:
    """Questions and/or CoT answers written by the generator: every record is kept until the
    generator has answered for all of them."""
    from hybridft.builders.raft_generated import RaftGenerator

    builder: RaftBuilder
    with RaftGenerator(config) as generator:
        if not config["qa"]:
            qa, builder = generator.questions(corpus)
            if not qa:
                raise UsageError(f"the generator wrote no usable question: {generator.counts}")
        else:
            builder = RaftBuilder(config, qa, corpus)
        if config["oracle_judge"] == "generator":
            builder.judge = generator.judge
        builder.check_doc_ids()
        records = list(builder.examples())
        if config["cot"] == "generator":
            generator.fill_cot(records)
    counts = _counts(builder, {"qa_rows": len(builder.qa), **sizes}, len(records), corpus.skipped)
    counts["generated"] = generator.counts
    counts["skipped"].update(generator.skipped)
    return BuildResult(records, counts, inputs, {"generator": generator.manifest()}, builder.quality, builder.positions)
