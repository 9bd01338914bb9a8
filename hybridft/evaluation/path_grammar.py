"""Constrained RoG planning: which next tokens keep a generated plan inside the KG's relations.

A plan is ``<PATH>`` r1 (``<SEP>`` r2)* ``</PATH>`` then end-of-sequence, where every r is a
relation name of the question's graph. Each piece is tokenised on its own and the relation
names go into a prefix trie, so at every step the allowed tokens are the trie's children (plus
``<SEP>`` / ``</PATH>`` once a name is complete). RoG's planner decodes freely and can invent
relations; this one cannot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hybridft.core.models import MARKERS

OPEN, CLOSE, SEP = MARKERS  # "<PATH>", "</PATH>", "<SEP>"


class TokenTrie:
    """Token-id sequences of relation names; a node is a dict, ``None`` marks a complete name."""

    def __init__(self, sequences: Iterable[list[int]]):
        self.root: dict[Any, Any] = {}
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})
            node[None] = True


class PathGrammar:
    """Allowed next tokens for plans over a given set of relations, at most ``max_hops`` long."""

    def __init__(self, tokenizer: Any, relations: Iterable[str], max_hops: int):
        def ids(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        self.open, self.close, self.sep = ids(OPEN), ids(CLOSE), ids(SEP)
        self.trie = TokenTrie(ids(name) for name in sorted(set(relations)) if name)
        self.max_hops = max_hops
        self.end = [tokenizer.eos_token_id]
        self.pad = tokenizer.pad_token_id

    def allowed(self, generated: list[int]) -> list[int]:
        """Token ids that may follow ``generated`` (the tokens produced so far)."""
        state = self._walk(generated)
        if state is None:  # off the grammar (cannot happen when every step was constrained)
            return self.end
        return sorted(state)

    def _walk(self, generated: list[int]) -> set[int] | None:
        tokens = list(generated)
        position = 0

        def expect(sequence: list[int]) -> set[int] | None | bool:
            """Consume ``sequence``; True when done, the next allowed token when cut short."""
            nonlocal position
            for token in sequence:
                if position == len(tokens):
                    return {token}
                if tokens[position] != token:
                    return None
                position += 1
            return True

        step = expect(self.open)
        if step is not True:
            return step  # type: ignore[return-value]
        hops = 0
        while True:
            node = self.trie.root
            while True:  # inside a relation name
                if position == len(tokens):
                    allowed = {t for t in node if t is not None}
                    if None in node:
                        allowed |= {self.close[0]} | ({self.sep[0]} if hops + 1 < self.max_hops else set())
                    return allowed
                token = tokens[position]
                if None in node and token in (self.close[0], self.sep[0]) and token not in node:
                    break
                if token not in node:
                    return None
                node = node[token]
                position += 1
            hops += 1
            if tokens[position] == self.sep[0] and hops < self.max_hops:
                step = expect(self.sep)
                if step is not True:
                    return step  # type: ignore[return-value]
                continue
            step = expect(self.close)
            if step is not True:
                return step  # type: ignore[return-value]
            return set(self.end) | ({self.pad} if self.pad is not None else set())
