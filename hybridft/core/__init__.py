"""The core every other package stands on: errors and exit codes, progress on stderr, option
schemas, text normalisation, the record schemas, readers and atomic writers, rendering records as
prompts, and loading models (the tiny model, tokenizers, LoRA, batched generation).

May import: no other package of hybridft (only the version, from the top ``__init__``). Heavy libraries (torch,
transformers, peft) are imported inside the functions that need them.
"""
