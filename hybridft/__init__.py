"""hybridft: RAG-aware fine-tuning data, trainers and evaluation (RAFT, RoG, Invar-RAG)."""

__version__ = "0.1.0"
