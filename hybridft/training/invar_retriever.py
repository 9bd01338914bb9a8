"""The ``invar-retriever`` trainer (Invar-RAG, arXiv 2411.07021): the LLM itself as a bi-encoder
retriever, trained with LoRA (or QLoRA, or fully).

A query or document is embedded by last-token pooling: ``query: ``/``passage: `` + text, EOS
appended, the final hidden state at the EOS, L2-normalised (:mod:`hybridft.retrieval.llm_index`).
Per batch of ``retrieval`` rows the loss is::

    InfoNCE(query vs its positives, its hard negatives and every other row's documents)
    + align_weight     * KL(teacher || student) over the row's candidates (positives + negatives)
    + invariance_weight * invariance(query and its variants' distributions over those candidates)

each term logged on its own (``info_nce``, ``alignment``, ``invariance`` in log.jsonl; ``eval_``
versions on the eval split). The run folder gets the adapter, the tokenizer and
``retriever.json`` (pooling, prefixes, max_length, base model): what is needed to embed a corpus.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridft.core import models
from hybridft.core.errors import UsageError
from hybridft.core.outputs import sha256_file
from hybridft.core.progress import log
from hybridft.retrieval.llm_index import (
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    SETTINGS_FILE,
    embed_for_training,
    encoder_settings,
    pad,
    tokenize,
)
from hybridft.training import losses
from hybridft.training import run as training_run
from hybridft.training.rows import folder_splits
from hybridft.training.run_folder import write_run_json
from hybridft.training.sft_data import read_manifest

TERMS = ("info_nce", "alignment", "invariance")


@dataclass
class RetrievalData:
    """Train and eval ``retrieval`` rows (``datasets.Dataset``; ``eval`` None when there is no eval
    row), and what run.json records about them."""

    train: Any
    eval: Any
    manifest_sha256: str
    teacher_rows: int  # train rows with teacher scores
    variant_rows: int  # train rows with at least one variant


def load_retrieval_data(data_dir: str | Path, num_proc: int | None = None) -> RetrievalData:
    """``retrieval`` rows of a ``build-data invar`` folder, each checked (errors name file:line)."""
    import pyarrow.compute as pc

    folder = Path(data_dir)
    manifest = read_manifest(folder)
    fmt = (manifest.get("options") or {}).get("format", "messages")
    if fmt != "retrieval":
        raise UsageError(f"data={folder}: rows are in format {fmt!r}; trainer=invar-retriever reads retrieval rows")
    train, evaluation = folder_splits(folder, "retrieval", num_proc)
    columns = train.data  # counted by Arrow over the columns
    return RetrievalData(
        train,
        evaluation,
        sha256_file(folder / "manifest.json"),
        len(train) - columns.column("teacher_scores").null_count,
        pc.sum(pc.greater(pc.list_value_length(columns.column("variants")), 0)).as_py() or 0,
    )


class RetrievalCollator:
    """Rows -> token tensors and the index tensors the losses need.

    Documents are deduplicated across the batch by text: each query is scored against every
    distinct document (its own and the in-batch negatives); ``candidates`` lists each row's own
    positives then negatives as indices into those documents (the order of ``teacher_scores``).
    """

    def __init__(self, tokenizer: Any, max_length: int, use_variants: bool = True, context_window: float = 0.0):
        """``context_window`` > 0 adds Invar-RAG's context-size variant: every document also cut to
        that share of its tokens (``cut_doc_ids``), scored by the query as one more version."""
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.use_variants = use_variants
        self.context_window = context_window

    def _tokens(self, texts: list[str], prefix: str) -> tuple[Any, Any]:
        rows, _ = tokenize(self.tokenizer, texts, prefix, self.max_length)
        return pad(rows, self.tokenizer.pad_token_id)

    def _cut(self, texts: list[str]) -> tuple[Any, Any]:
        """The documents in a smaller window: the first ``context_window`` share of each one's
        tokens (at least one), then EOS, as the pooling expects."""
        rows, _ = tokenize(self.tokenizer, texts, PASSAGE_PREFIX, self.max_length)
        cut = [[*row[: max(1, int((len(row) - 1) * self.context_window))], row[-1]] for row in rows]
        return pad(cut, self.tokenizer.pad_token_id)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        position: dict[str, int] = {}
        own = [
            [position.setdefault(text, len(position)) for text in row["positives"] + row.get("negatives", [])]
            for row in rows
        ]
        width = max(len(c) for c in own)
        batch, documents = len(rows), len(position)
        positive = torch.zeros((batch, documents), dtype=torch.bool)
        candidates = torch.zeros((batch, width), dtype=torch.long)
        candidate_mask = torch.zeros((batch, width), dtype=torch.bool)
        candidate_positive = torch.zeros((batch, width), dtype=torch.bool)
        teacher = torch.zeros((batch, width))
        teacher_mask = torch.zeros((batch, width), dtype=torch.bool)
        variants: list[str] = []
        most = max(len(row.get("variants", [])) for row in rows) if self.use_variants else 0
        version = torch.zeros((batch, 1 + most), dtype=torch.long)  # rows of [queries; variants]
        present = torch.zeros((batch, 1 + most), dtype=torch.bool)
        for b, (row, chosen) in enumerate(zip(rows, own, strict=True)):
            n_pos = len(row["positives"])
            positive[b, chosen[:n_pos]] = True
            candidates[b, : len(chosen)] = torch.tensor(chosen)
            candidate_mask[b, : len(chosen)] = True
            candidate_positive[b, :n_pos] = True
            if row.get("teacher_scores") is not None:
                teacher[b, : len(chosen)] = torch.tensor(row["teacher_scores"], dtype=torch.float32)
                teacher_mask[b, : len(chosen)] = True
            version[b, 0], present[b, 0] = b, True
            for v, text in enumerate(row.get("variants", [])[:most]):
                version[b, 1 + v], present[b, 1 + v] = batch + len(variants), True
                variants.append(text)
        texts = list(position)
        query_ids, query_mask = self._tokens([row["query"] for row in rows], QUERY_PREFIX)
        variant_ids, variant_mask = self._tokens(variants, QUERY_PREFIX)
        doc_ids, doc_mask = self._tokens(texts, PASSAGE_PREFIX)
        cut: dict[str, Any] = {}
        if self.context_window > 0:
            cut["cut_doc_ids"], cut["cut_doc_mask"] = self._cut(texts)
        return {
            **cut,
            "query_ids": query_ids,
            "query_mask": query_mask,
            "variant_ids": variant_ids[: len(variants)],
            "variant_mask": variant_mask[: len(variants)],
            "doc_ids": doc_ids,
            "doc_mask": doc_mask,
            "positive": positive,
            "candidates": candidates,
            "candidate_mask": candidate_mask,
            "candidate_positive": candidate_positive,
            "teacher": teacher,
            "teacher_mask": teacher_mask,
            "version": version,
            "present": present,
        }


def retriever_losses(
    model: Any, inputs: dict[str, Any], config: dict[str, Any], embed: Callable[..., Any] = embed_for_training
) -> dict[str, Any]:
    """The three loss terms and their weighted sum (``loss``) for one collated batch.
    ``embed(model, ids, mask)`` embeds a padded batch of texts (a benchmark swaps in a naive one)."""
    import torch

    temperature = config["temperature"]
    queries = embed(model, inputs["query_ids"], inputs["query_mask"])
    documents = embed(model, inputs["doc_ids"], inputs["doc_mask"])
    scores = queries @ documents.T  # cosine similarities: the embeddings are normalised
    every = torch.ones_like(inputs["positive"])
    terms = {"info_nce": losses.info_nce(scores, inputs["positive"], every, temperature)}
    own = scores.gather(1, inputs["candidates"])
    terms["alignment"] = losses.alignment(
        own, inputs["teacher"], inputs["teacher_mask"], temperature, config["teacher_temperature"]
    )
    loss = terms["info_nce"] + config["align_weight"] * terms["alignment"]
    if inputs["present"].shape[1] > 1 or "cut_doc_ids" in inputs:
        # Without weight the term is only watched: no gradient through the variants.
        with torch.set_grad_enabled(torch.is_grad_enabled() and config["invariance_weight"] > 0):
            variants = embed(model, inputs["variant_ids"], inputs["variant_mask"])
            versions = torch.cat([queries, variants.to(queries.dtype)]) if len(variants) else queries
            version_scores = (versions @ documents.T)[inputs["version"]]  # [B, V, N]
            index = inputs["candidates"].unsqueeze(1).expand(-1, version_scores.shape[1], -1)
            candidate_scores, present = version_scores.gather(2, index), inputs["present"]
            if "cut_doc_ids" in inputs:  # the context-size variant: the query against the cut documents
                cut = embed(model, inputs["cut_doc_ids"], inputs["cut_doc_mask"]).to(queries.dtype)
                cut_scores = (queries @ cut.T).gather(1, inputs["candidates"]).unsqueeze(1)
                candidate_scores = torch.cat([candidate_scores, cut_scores], dim=1)
                present = torch.cat([present, present[:, :1]], dim=1)
            terms["invariance"] = losses.invariance(
                config["invariance"],
                candidate_scores,
                present,
                inputs["candidate_mask"],
                inputs["candidate_positive"],
                temperature,
            )
        if config["invariance_weight"] > 0:
            loss = loss + config["invariance_weight"] * terms["invariance"]
    terms["loss"] = loss
    return terms


def _trainer_class() -> Any:
    from transformers import Trainer

    class RetrieverTrainer(Trainer):
        """A Trainer whose loss is :func:`retriever_losses`; each term is logged on its own."""

        def __init__(self, *args: Any, loss_config: dict[str, Any], **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.loss_config = loss_config
            self.can_return_loss = True
            self.model_accepts_loss_kwargs = False  # the loss is a mean: Trainer scales it for accumulation
            self._terms: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            terms = retriever_losses(model, inputs, self.loss_config)
            stored = self._terms["train" if model.training else "eval"]
            for name in TERMS:
                if name in terms:
                    stored[name].append(float(terms[name].detach()))
            return (terms["loss"], {}) if return_outputs else terms["loss"]

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
            prefix = "eval_" if mode == "eval" else ""
            for name, values in self._terms[mode].items():
                if values:
                    logs[prefix + name] = round(sum(values) / len(values), 6)
            self._terms[mode].clear()
            super().log(logs, start_time)

    return RetrieverTrainer


def _with_lora(model: Any, config: dict[str, Any]) -> Any:
    from peft import get_peft_model

    lora = models.lora_config(config)
    if config["gradient_checkpointing"]:
        model.enable_input_require_grads()
    return get_peft_model(model, lora)


def build_trainer(
    config: dict[str, Any],
    model: Any,
    tokenizer: Any,
    data: RetrievalData,
    device: models.Device,
    extra_callbacks: Sequence[Any] = (),
) -> tuple[Any, dict[str, Any]]:
    from transformers import TrainingArguments

    has_eval = data.eval is not None
    args = TrainingArguments(
        **training_run.training_arguments(
            config,
            device,
            has_eval,
            activation_checkpointing_kwargs={"use_reentrant": False} if config["gradient_checkpointing"] else None,
            remove_unused_columns=False,  # the collator reads the raw rows
            label_names=[],  # no labels: the loss comes from compute_loss, in evaluation too
            prediction_loss_only=True,
            ddp_find_unused_parameters=config["method"] == "full",  # lm_head gets no gradient
        )
    )
    if config["attn_implementation"]:
        model.config._attn_implementation = config["attn_implementation"]
    callbacks = training_run.callbacks(Path(config["out"]))
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=RetrievalCollator(tokenizer, config["max_length"], context_window=config["context_window"]),
        processing_class=tokenizer,
        callbacks=[*callbacks.values(), *extra_callbacks],
        loss_config={
            k: config[k]
            for k in ("temperature", "teacher_temperature", "align_weight", "invariance_weight", "invariance")
        },
    )
    training_run.quiet(trainer)
    return trainer, callbacks


def _truncated(tokenizer: Any, data: RetrievalData, max_length: int, num_proc: int | None) -> dict[str, int]:
    """Texts longer than ``max_length`` tokens (embedded from their first ``max_length - 1``):
    every query and variant, and each distinct document once, counted by a batched map."""
    counted = [
        split.map(
            _cut_texts,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
            remove_columns=split.column_names,
            keep_in_memory=True,  # one row per batch: recounted each run, never stale
            num_proc=num_proc if num_proc and num_proc > 1 else None,
        )
        for split in (data.train, data.eval)
        if split is not None
    ]
    return {
        "queries_cut": sum(n for batches in counted for n in batches["queries_cut"]),
        "documents_cut": len({text for batches in counted for cut in batches["cut_documents"] for text in cut}),
    }


def _cut_texts(batch: dict[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
    """One row per batch: how many of its queries and variants are cut, and its documents that are
    (a document can recur across batches: the caller counts distinct ones)."""
    queries = batch["query"] + [v for variants in batch["variants"] for v in variants]
    documents = sorted({t for pos, neg in zip(batch["positives"], batch["negatives"], strict=True) for t in pos + neg})
    cut = []
    if tokenize(tokenizer, documents, PASSAGE_PREFIX, max_length)[1]:  # rare: find which ones
        cut = [t for t in documents if tokenize(tokenizer, [t], PASSAGE_PREFIX, max_length)[1]]
    return {"queries_cut": [tokenize(tokenizer, queries, QUERY_PREFIX, max_length)[1]], "cut_documents": [cut]}


def train(config: dict[str, Any], extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run (or resume) one invar-retriever run described by resolved ``config``; return run.json."""
    import transformers

    data = load_retrieval_data(config["data"], config["dataset_num_proc"])
    if config["align_weight"] > 0 and data.teacher_rows == 0:
        raise UsageError(
            f"align_weight={config['align_weight']}: data={config['data']} has no teacher_scores (built with "
            "--teacher none); rebuild with --teacher minilm or set align_weight=0"
        )
    start = training_run.start(config)
    transformers.set_seed(config["seed"])
    device = models.detect_device()
    method, tokenizer = start.method, start.tokenizer
    model = models.load_for_training(
        start.model_path, method, device, gradient_checkpointing=config["gradient_checkpointing"]
    )
    model.config.use_cache = False
    if method != "full":
        model = _with_lora(model, config)
    trainer, callbacks = build_trainer(config, model, tokenizer, data, device, extra_callbacks)
    truncated = _truncated(tokenizer, data, config["max_length"], config["dataset_num_proc"])
    run = training_run.new_run(start, config, method, device)
    run |= {
        "data": {
            "dir": str(config["data"]),
            "manifest_sha256": data.manifest_sha256,
            "format": "retrieval",
            "train_rows": len(data.train),
            "eval_rows": len(data.eval) if data.eval is not None else 0,
            "train_rows_with_teacher_scores": data.teacher_rows,
            "train_rows_with_variants": data.variant_rows,
        },
        "truncated": truncated,
        "resumed_from": Path(start.checkpoint).name if start.checkpoint else None,
    }
    if any(truncated.values()):
        log(
            f"{truncated['queries_cut']} queries and {truncated['documents_cut']} documents are longer than "
            f"max_length={config['max_length']} tokens: embedded from their first {config['max_length'] - 1}"
        )
    what = f"retriever on {config['model']} ({method}) on {device.description}, {len(data.train)} train rows"
    training_run.begin(start, run, what)

    def save_settings() -> None:
        settings = encoder_settings(config["model"], config["max_length"])
        (start.out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    run = training_run.finish(trainer, start, run, callbacks["interrupt"], after_save=save_settings)
    if run["status"] == "complete":
        run["final"].update(_last_terms(trainer))
        if start.state.is_main_process:
            write_run_json(start.out, run)
    return run


def _last_terms(trainer: Any) -> dict[str, float]:
    """The last logged value of each loss term (train and eval)."""
    found: dict[str, float] = {}
    for record in reversed(trainer.state.log_history):
        for name in TERMS:
            for key in (name, f"eval_{name}"):
                if key in record and key not in found:
                    found[key] = float(record[key])
    return found
