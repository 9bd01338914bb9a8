"""Ranking documents: the bm25 and dense rankers behind one ``search(queries, k)`` interface
(``rankers``), a trained Invar-RAG LLM retriever at use time (``llm_index``), cutting documents into
chunks (``chunking``), and seeded query perturbations (``variants``).

May import: ``hybridft.core``.
"""
