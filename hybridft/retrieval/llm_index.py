"""The Invar-RAG LLM retriever at use time: embed texts with a trained ``invar-retriever`` run,
index a document collection (batched, resumable), rank queries.

A text is embedded as the trainer embeds it: ``query: `` or ``passage: `` + text, tokenised,
cut to ``max_length - 1`` tokens, EOS appended, the final-layer hidden state of that EOS (last
token pooling), L2-normalised. The run folder's ``retriever.json`` records those settings and the
base model, so the adapter alone is enough to embed a corpus later.

Indexing a corpus writes its embeddings in shards of :data:`SHARD_TEXTS` texts under a cache
folder named by the retriever and the texts (``$HYBRIDFT_CACHE/index/KEY``); an interrupted run
resumes at the first missing shard, and a rerun over the same corpus reads the shards back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridft.core.progress import log, track
from hybridft.core.readers import read_json_object

SETTINGS_FILE = "retriever.json"
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
SHARD_TEXTS = 4096  # texts per saved shard of an index


def encoder_settings(model: str, max_length: int) -> dict[str, Any]:
    """What ``retriever.json`` holds: enough to embed texts exactly as in training."""
    return {
        "model": model,
        "pooling": "last-token",
        "append_eos": True,
        "normalize": True,
        "max_length": max_length,
        "query_prefix": QUERY_PREFIX,
        "passage_prefix": PASSAGE_PREFIX,
    }


def tokenize(tokenizer: Any, texts: list[str], prefix: str, max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of ``prefix + text`` cut to ``max_length - 1`` and ending in EOS; also the
    number of texts that were cut."""
    if not texts:  # a batch without query variants (tokenizers refuse an empty batch)
        return [], 0
    eos = tokenizer.eos_token_id
    encoded = tokenizer([prefix + text for text in texts], add_special_tokens=True)["input_ids"]
    rows, cut = [], 0
    for ids in encoded:
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        if len(ids) > max_length - 1:
            ids, cut = ids[: max_length - 1], cut + 1
        rows.append([*ids, eos])
    return rows, cut


def pad(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Right-padded ids and attention mask (the pooled EOS is the last real token of each row)."""
    import torch

    width = max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def pool(hidden: Any, mask: Any) -> Any:
    """Normalised hidden state of each row's last real token (right padding)."""
    import torch
    from torch.nn import functional as F

    last = mask.sum(dim=1) - 1
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return F.normalize(pooled.float(), dim=-1)


def embed_for_training(model: Any, ids: Any, mask: Any) -> Any:
    """Embeddings through the (possibly DDP-wrapped) causal LM's own forward, so gradients sync;
    only the last position's logits are computed."""
    if ids.shape[0] == 0:
        import torch

        return torch.zeros((0, 1), device=ids.device)
    output = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1)
    return pool(output.hidden_states[-1], mask)


def decoder_of(model: Any) -> Any:
    """The transformer stack without the LM head (LoRA layers are injected in place, so it runs
    with the adapter)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder()


@dataclass
class Retriever:
    """A trained retriever ready to embed: model in eval mode, tokenizer, settings."""

    model: Any
    tokenizer: Any
    settings: dict[str, Any]
    fingerprint: str  # changes when the weights or the settings change
    name: str
    adapter: str | None = None  # the PEFT adapter to make active first (a backbone shared with a generator)

    def encode(self, texts: list[str], role: str, batch_size: int = 32, description: str | None = None) -> np.ndarray:
        """Normalised float32 embeddings of ``texts`` (``role``: ``query`` or ``passage``), in
        their order; batches of similar length, under a progress bar when ``description`` is given."""
        import torch

        if self.adapter is not None:
            self.model.set_adapter(self.adapter)
        prefix = self.settings["query_prefix"] if role == "query" else self.settings["passage_prefix"]
        rows, _ = tokenize(self.tokenizer, texts, prefix, self.settings["max_length"])
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        decoder = decoder_of(self.model)
        device = next(self.model.parameters()).device
        result = np.zeros((len(texts), self._dimension()), dtype=np.float32)
        for batch in track(batches, description, total=len(batches)) if description else batches:
            ids, mask = pad([rows[i] for i in batch], self.tokenizer.pad_token_id)
            ids, mask = ids.to(device), mask.to(device)
            with torch.no_grad():
                hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
            result[batch] = pool(hidden, mask).cpu().numpy()
        return result

    def _dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def index(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        folder: Path | None = None,
        description: str = "indexing",
        save_to: Path | None = None,
    ) -> np.ndarray:
        """Passage embeddings of ``texts``, saved shard by shard in ``folder`` (default: the cache
        folder for this retriever and these texts), so that an interrupted run resumes and a rerun
        reads them back. ``texts`` may be a memory-mapped column (only a shard's texts are Python
        strings at once). ``save_to``: a .npy file the embeddings are written to, memory-mapped,
        each shard as it is encoded or read back (a saved index's ``embeddings.npy``); the result
        is then that memory-mapped array."""
        from hybridft.retrieval.rankers import encode_in_shards, shard_folder

        out = None
        if save_to is not None:
            shape = (len(texts), self._dimension())
            out = np.lib.format.open_memmap(save_to, mode="w+", dtype=np.float32, shape=shape)
        embeddings = encode_in_shards(
            lambda block, description: self.encode(block, "passage", batch_size, description),
            texts,
            folder or shard_folder(self.fingerprint, texts),
            self._dimension(),
            description,
            SHARD_TEXTS,
            out,
        )
        if out is not None:
            out.flush()
        return embeddings


def fingerprint(folder: Path, settings: dict[str, Any]) -> str:
    """Changes when the run's weights or its embedding settings change (the cache key of its indexes)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in ("adapter_model.safetensors", "model.safetensors"):
        path = folder / name
        if path.is_file():
            from hybridft.core.outputs import sha256_file

            digest.update(sha256_file(path).encode())
    for path in sorted(folder.glob("model-*.safetensors")):  # a sharded full fine-tune: name, size, time
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def read_settings(folder: Path) -> dict[str, Any]:
    """``retriever.json`` of an invar-retriever run folder (exit 2 when it is missing or damaged)."""
    path = folder / SETTINGS_FILE
    missing = (
        f"retriever={folder}: no {SETTINGS_FILE}; give the --out folder of a finished "
        "`hybridft finetune --trainer invar-retriever` run"
    )
    return read_json_object(path, missing, f"{path}: not valid JSON")


def load_retriever(run_dir: str | Path) -> Retriever:
    """The retriever of a ``finetune --trainer invar-retriever`` run folder: its base model with the
    adapter (or the fully fine-tuned model), on CUDA when there is one."""
    from hybridft.core.models import load_for_inference

    folder = Path(run_dir)
    settings = read_settings(folder)
    if (folder / "adapter_config.json").is_file():
        model, tokenizer = load_for_inference(settings["model"], adapter=folder, what=f"retriever={folder}")
    else:  # a full fine-tune: the folder is the model
        model, tokenizer = load_for_inference(str(folder), what=f"retriever={folder}")
    return Retriever(model, tokenizer, settings, fingerprint(folder, settings), f"adapter {folder.name}")


class RetrieverIndex:
    """A document collection embedded by a retriever: ``search(queries, k)`` -> (indices, scores)
    best first, and ``score(queries, candidates)`` for each query's own candidate indices."""

    def __init__(self, retriever: Retriever, embeddings: np.ndarray, batch_size: int = 32):
        """``embeddings``: the passage embeddings of the collection (:meth:`Retriever.index`, or a
        saved index's memory-mapped array)."""
        self.retriever = retriever
        self.batch_size = batch_size
        self.size = len(embeddings)
        self.embeddings = embeddings

    def queries(self, queries: list[str], description: str = "encoding queries") -> np.ndarray:
        return self.retriever.encode(queries, "query", self.batch_size, description)

    def search(
        self, queries: list[str], k: int, description: str = "retriever search"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` document indices and their scores for each query, best first."""
        from hybridft.retrieval.rankers import top_k_by_dot_product

        return top_k_by_dot_product(self.queries(queries, description), self.embeddings, k)

    def score(self, queries: list[str], candidates: list[list[int]]) -> list[np.ndarray]:
        embedded = self.queries(queries)
        return [self.embeddings[chosen] @ embedded[n] for n, chosen in enumerate(candidates)]


def open_index(
    run_dir: str | Path, texts: Sequence[str], batch_size: int = 32, save_to: Path | None = None
) -> RetrieverIndex:
    """Load the retriever of ``run_dir`` and index ``texts`` (resuming from the cache); ``save_to``:
    see :meth:`Retriever.index`."""
    log(f"loading the retriever {run_dir}")
    retriever = load_retriever(run_dir)
    description = f"indexing {len(texts)} texts ({retriever.name})"
    embeddings = retriever.index(texts, batch_size, None, description, save_to)
    return RetrieverIndex(retriever, embeddings, batch_size)
