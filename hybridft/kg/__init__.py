"""The knowledge-graph engine for RoG: graphs as integer CSR adjacency (``graph``), shortest
relation paths over many small graphs at once (``batch``), and RoG question rows read with their
graphs left as bytes (``rows``).

May import: ``hybridft.core``.
"""
