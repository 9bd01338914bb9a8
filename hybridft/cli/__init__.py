"""The ``hybridft`` command line: one module per command, wired together in ``main``.

May import: every package of hybridft (the CLI is the top); nothing imports it. No heavy library
at module top: ``hybridft --help`` must not import torch or transformers.
"""
