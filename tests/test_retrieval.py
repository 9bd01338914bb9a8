import pytest

from hybridft.retrieval.rankers import BM25Index, DenseIndex

TEXTS = [
    "The Seine flows through Paris.",
    "Berlin lies on the Spree.",
    "Tea is brewed from leaves.",
    "Paris is the capital of France.",
]


def test_bm25_ranks_shared_words_first() -> None:
    index = BM25Index(TEXTS)
    found, scores = index.search(["capital of France", "brewed tea"], k=2)
    assert found[:, 0].tolist() == [3, 2]
    assert scores[0, 0] > scores[0, 1]
    assert index.scores("capital of France").argmax() == 3
    assert index.scores("zzz unknown words").max() == 0


def test_dense_minilm_ranks_by_meaning() -> None:
    index = DenseIndex(TEXTS)
    found, _ = index.search(["Which French city is the capital?", "a hot drink made from leaves"], k=4)
    assert found[0, 0] in (0, 3) and found[1, 0] == 2
    assert sorted(found[0].tolist()) == [0, 1, 2, 3]


def test_top_k_is_the_best_k_in_order() -> None:
    import numpy as np

    from hybridft.retrieval.rankers import top_k

    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    assert top_k(scores, 2).tolist() == [[1, 3], [0, 1]]
    assert top_k(scores, 4).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]


def test_top_k_by_dot_product_works_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from hybridft.retrieval import rankers as retrieval

    documents = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    monkeypatch.setattr(retrieval, "QUERY_BATCH", 2)  # two blocks: rows 0-1, then row 2
    indices, scores = retrieval.top_k_by_dot_product(queries, documents, 2)
    assert indices.tolist() == [[0, 2], [1, 2], [2, 0]]
    assert np.allclose(scores, [[1.0, 0.6], [1.0, 0.8], [0.96, 0.8]])
    empty, _ = retrieval.top_k_by_dot_product(queries[:0], documents, 5)
    assert empty.shape == (0, 3)
