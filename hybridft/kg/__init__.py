"""The knowledge-graph engine for RoG: graphs as integer CSR adjacency (``graph``), shortest
relation paths over many small graphs at once (``batch``), RoG question rows read with their
graphs left as bytes (``rows``), and the relation paths that exist from a question's entities as a
trie grown on demand, for constrained planning (``plans``).

May import: ``hybridft.core``.
"""
