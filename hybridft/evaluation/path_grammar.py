"""Constrained RoG planning: which next tokens keep a generated plan inside the question's graph.

A plan is ``<PATH>`` r1 (``<SEP>`` r2)* ``</PATH>`` then end-of-sequence. Two constraints:

- ``follow`` given (the default of ``eval rog``): the relations allowed at each hop are those that
  continue the relations planned so far along the graph from a question entity
  (``kg.plans.RelationPathTrie``), so every complete plan is a relation path that exists;
- without it, every r is any relation name of the question's graph (a plan can still combine
  relations into a path that exists nowhere).

Each piece is tokenised on its own and the allowed relation names go into a token prefix trie, so
at every step the allowed tokens are the trie's children (plus ``<SEP>`` / ``</PATH>`` once a name
is complete). RoG's planner decodes freely and can invent relations; this one cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hybridft.core.models import MARKERS

OPEN, CLOSE, SEP = MARKERS  # "<PATH>", "</PATH>", "<SEP>"


class TokenTrie:
    """Token-id sequences of relation names; a node is a dict, key ``None`` holds the name that
    ends there."""

    def __init__(self, names: Iterable[tuple[str, list[int]]]):
        self.root: dict[Any, Any] = {}
        for name, sequence in names:
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})
            node[None] = name


class PathGrammar:
    """Allowed next tokens for plans at most ``max_hops`` long, over ``relations`` at every hop, or,
    with ``follow`` (relation names planned so far -> names that may come next), along the graph
    (``relations`` is then not used)."""

    def __init__(
        self,
        tokenizer: Any,
        relations: Iterable[str],
        max_hops: int,
        follow: Callable[[tuple[str, ...]], list[str]] | None = None,
    ):
        self._tokenizer = tokenizer
        self._ids: dict[str, list[int]] = {}
        self.open, self.close, self.sep = self.ids(OPEN), self.ids(CLOSE), self.ids(SEP)
        self.follow = follow
        # One token trie of every relation serves all hops; following the graph, each prefix gets
        # its own (built when a beam reaches it), and tokenising every relation would be wasted.
        self._every = None if follow else TokenTrie((name, self.ids(name)) for name in sorted(set(relations)) if name)
        self._tries: dict[tuple[str, ...], TokenTrie] = {}
        self.max_hops = max_hops
        self.end = [tokenizer.eos_token_id]
        self.pad = tokenizer.pad_token_id

    def ids(self, text: str) -> list[int]:
        if text not in self._ids:
            self._ids[text] = list(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._ids[text]

    def _names_after(self, prefix: tuple[str, ...]) -> TokenTrie:
        """The token trie of the relation names allowed after ``prefix``."""
        if self._every is not None:
            return self._every
        assert self.follow is not None
        if prefix not in self._tries:
            self._tries[prefix] = TokenTrie((name, self.ids(name)) for name in self.follow(prefix) if name)
        return self._tries[prefix]

    def _may_continue(self, path: tuple[str, ...]) -> bool:
        return len(path) < self.max_hops and (self.follow is None or bool(self.follow(path)))

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
        path: tuple[str, ...] = ()
        while True:
            node = self._names_after(path).root
            if not node:  # nothing leads on from the question entities: end the plan
                return set(self.end)
            while True:  # inside a relation name
                if position == len(tokens):
                    allowed = {t for t in node if t is not None}
                    if None in node:
                        allowed.add(self.close[0])
                        if self._may_continue((*path, node[None])):
                            allowed.add(self.sep[0])
                    return allowed
                token = tokens[position]
                if None in node and token in (self.close[0], self.sep[0]) and token not in node:
                    break
                if token not in node:
                    return None
                node = node[token]
                position += 1
            path = (*path, node[None])
            if tokens[position] == self.sep[0] and self._may_continue(path):
                step = expect(self.sep)
                if step is not True:
                    return step  # type: ignore[return-value]
                continue
            step = expect(self.close)
            if step is not True:
                return step  # type: ignore[return-value]
            return set(self.end) | ({self.pad} if self.pad is not None else set())
