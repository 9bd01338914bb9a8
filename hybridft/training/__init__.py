"""``hybridft finetune``'s trainers: the options and checks (``config``), TRL SFT (``sft`` on rows
from ``sft_data``), the Invar-RAG retriever and generator trainers, the rows of each read, checked
and shaped through ``datasets`` (``rows``), their pure losses, and what every run shares (``run``:
arguments, start and finish; ``run_folder``: the folder, run.json, resume; ``callbacks``:
log.jsonl, progress, Ctrl-C).

May import: ``hybridft.core``, ``hybridft.retrieval`` (the retriever trainer embeds with the same
code that serves the trained retriever).
"""
