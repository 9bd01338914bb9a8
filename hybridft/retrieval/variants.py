"""Seeded query perturbations for Invar-RAG's invariance loss (Invar-RAG, arXiv 2411.07021).

A variant asks the same thing as its query in other words or another shape, so a retriever whose
ranking is invariant ranks the same documents for both. Each perturbation is a pure function of
the query and a ``random.Random``: the same seed gives the same variant. A variant stays a
well-formed question that keeps every word the answer depends on: ``drop-words`` drops only filler
words (articles, intensifiers such as "both", "very", "actually"), never a verb, noun or
preposition; ``drop-words`` and ``typos`` never touch a word of a name or title (see
:func:`name_positions`), a word with a digit, or a word of the answer or title (``keep``);
``shuffle-clauses`` moves only a phrase of two or more words led by a preposition and its object,
and never cuts inside a name or title. ``reword`` (a model rewrites the query) is not here: the invar builder has
a generator write it and passes it to :func:`make_variants` as an extra perturbation.

    drop-words       "Which chip do both iPad Pro models include?" -> "Which chip do iPad Pro models include?"
    shuffle-clauses  "Which river flows through Paris?" -> "Through Paris, which river flows?"
    typos            "Which river flows through Paris?" -> "Which rievr flows through Paris?"
    prefix           "Which river flows through Paris?" -> "Question: Which river flows through Paris?"
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping

# Words a movable phrase can start with when a question has no comma or semicolon to split on:
# prepositions and subordinators. Not "of" (it belongs to the noun before it: "the structure of
# DNA"), "and"/"or" (they join the parts of a phrase: "the White Nile and the Blue Nile") nor
# relative pronouns (a relative clause belongs after its noun).
_STARTERS = (
    "in on at for to with through from by during after before about into under over near between "
    "when where while because since"
)
# A phrase holding one of these is a clause with its own verb, not a phrase that can move.
_VERBS = frozenset(
    ("is", "are", "was", "were", "be", "been", "do", "does", "did", "has", "have", "had")
    + ("can", "could", "will", "would", "should", "may", "might")
)
_CLAUSE_STARTERS = frozenset(_STARTERS.split())
# First words that are lowercased when they move from the start of the query (not names).
_LOWERCASE_FIRST = (
    "what which who whom whose where when why how is are was were do does did can could should would will "
    "the a an in on at of for to with through from by during after before list name give tell"
)
_FUNCTION_WORDS = frozenset(_LOWERCASE_FIRST.split())
# Lower-case words that join the capitalised words of one name or title.
_CONNECTORS = frozenset(
    ("of", "the", "a", "an", "and", "with", "in", "on", "at", "for", "to", "by", "from")
    + ("de", "del", "der", "la", "le", "von", "van", "y")
)
_CLAUSE_SEPARATOR = re.compile(r"\s*[,;:]\s+")
_END = re.compile(r"[?.!]+$")
_KEYBOARD_NEIGHBOURS = {
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc", "g": "ftyhbv",
    "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop", "m": "njk", "n": "bhjm",
    "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz", "t": "rfgy", "u": "yhji",
    "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}  # fmt: skip

PREFIXES = (
    "Question: ",
    "Query: ",
    "Please answer: ",
    "I would like to know: ",
    "Quick question: ",
    "Help me find out: ",
    "Tell me: ",
    "Search: ",
)

# The share of a query's words that drop-words and typos change (at least one word).
DROP_SHARE = 0.2
TYPO_SHARE = 0.15
TRIES_PER_PERTURBATION = 3
# Shorter queries lose their meaning with any word gone.
MIN_WORDS_TO_DROP = 4
# The words drop-words may drop: a question reads as well, and asks the same, without them.
FILLER = frozenset(
    ("a", "an", "the", "both", "very", "really", "actually", "exactly", "ever", "also", "just", "still", "even")
    + ("currently", "officially", "commonly", "usually", "please", "precisely", "roughly")
)


def _name_like(word: str, position: int) -> bool:
    """A word of a name: capitalised past the first word, mixed case anywhere ("iPad"), or holding
    a digit."""
    return (position > 0 and word[:1].isupper()) or any(c.isupper() for c in word[1:]) or any(c.isdigit() for c in word)


def name_positions(words: list[str]) -> frozenset[int]:
    """The positions of the words that belong to a name or title: name-like words, and the
    lower-case connectors between two capitalised ones ("Bank *of* America", "Gone *with the*
    Wind", "The Old Man *and the* Sea"), which belong to the name as much as its capitalised words
    (not between a name and a number: "the Nobel Prize with in 1903")."""
    inside = {i for i, word in enumerate(words) if _name_like(word, i)}
    capitalised = [i for i in sorted(inside) if not any(c.isdigit() for c in words[i])]
    for left, right in zip(capitalised, capitalised[1:], strict=False):
        between = range(left + 1, right)
        joined = not words[left].endswith((",", ";", ":"))
        if joined and len(between) and all(words[i].lower() in _CONNECTORS for i in between):
            inside.update(between)
    return frozenset(inside)


def _protected(word: str, position: int, names: frozenset[int], keep: frozenset[str]) -> bool:
    """Words that likely carry the answer's identity: the words of a name or title (see
    :func:`name_positions`) and the words of ``keep``."""
    return position in names or word.lower().strip(",;:?!.") in keep


def _split_end(query: str) -> tuple[str, str]:
    """``("Which river flows", "?")``: the body and its closing punctuation."""
    body = query.strip()
    match = _END.search(body)
    return (body[: match.start()].rstrip(), match.group()) if match else (body, "")


def drop_words(query: str, rng: random.Random, keep: frozenset[str] = frozenset()) -> str | None:
    """Drop about a fifth of the words (at least one) of a query of four or more words: filler
    words only, never the first (the question word) nor a protected one."""
    body, end = _split_end(query)
    words = body.split()
    names = name_positions(words)
    droppable = [
        i for i, word in enumerate(words) if i > 0 and word.lower() in FILLER and not _protected(word, i, names, keep)
    ]
    if len(words) < MIN_WORDS_TO_DROP or not droppable:
        return None
    n = min(max(1, round(DROP_SHARE * len(words))), len(droppable), len(words) - 1)
    dropped = set(rng.sample(droppable, n))
    return " ".join(word for i, word in enumerate(words) if i not in dropped) + end


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if first.lower() in _FUNCTION_WORDS else text


def shuffle_clauses(query: str, rng: random.Random) -> str | None:
    """Reorder the clauses (split at commas, semicolons and colons); a single clause is split
    before a preposition or conjunction and its two parts swapped."""
    body, end = _split_end(query)
    clauses = [c for c in _CLAUSE_SEPARATOR.split(body) if c]
    if len(clauses) >= 2 and any(len(c.split()) < 2 for c in clauses):
        return None  # a one-word clause ("..., in") would be stranded wherever it goes
    if len(clauses) < 2:
        words = body.split()
        names = name_positions(words)
        # A phrase of two or more words moves, led by its preposition or conjunction and its object:
        # never a lone word, never a preposition whose object is not next to it ("share the prize
        # *with* in 1903": "with" ends its verb phrase), never a cut inside a name or title ("Bank
        # of America", "Gone with the Wind").
        cuts = [
            i
            for i in range(2, len(words) - 1)
            if words[i].lower() in _CLAUSE_STARTERS
            and words[i + 1].lower() not in _CLAUSE_STARTERS
            and i not in names
            and not any(word.lower() in _VERBS for word in words[i:])
        ]
        if not cuts:
            return None
        cut = rng.choice(cuts)
        clauses = [" ".join(words[:cut]), " ".join(words[cut:])]
    order = list(range(len(clauses)))
    while order == sorted(order):
        rng.shuffle(order)
    parts = [clauses[i] if n == 0 else _lower_first(clauses[i]) for n, i in enumerate(order)]
    parts[0] = parts[0][:1].upper() + parts[0][1:]
    return ", ".join(parts) + end


def _typo(word: str, rng: random.Random) -> str:
    """One keyboard slip that changes the word: swap two neighbours, drop, double or hit a
    neighbouring key."""
    i = rng.randrange(len(word))
    operations = ["drop", "double", "neighbour"]
    if i + 1 < len(word) and word[i] != word[i + 1]:
        operations.append("swap")
    operation = rng.choice(operations)
    if operation == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if operation == "drop":
        return word[:i] + word[i + 1 :]
    if operation == "double":
        return word[:i] + word[i] + word[i:]
    neighbours = _KEYBOARD_NEIGHBOURS.get(word[i].lower(), "")
    if not neighbours:
        return word[:i] + word[i + 1 :]
    hit = rng.choice(neighbours)
    return word[:i] + (hit.upper() if word[i].isupper() else hit) + word[i + 1 :]


def typos(query: str, rng: random.Random, keep: frozenset[str] = frozenset()) -> str | None:
    """One slip in each of about 15% of the words (at least one) of four or more letters."""
    words = query.split(" ")
    names = name_positions(words)
    eligible = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha() and not _protected(w, i, names, keep)]
    if not eligible:
        return None
    n = min(max(1, round(TYPO_SHARE * len(words))), len(eligible))
    for i in sorted(rng.sample(eligible, n)):
        words[i] = _typo(words[i], rng)
    return " ".join(words)


def prefix(query: str, rng: random.Random) -> str | None:
    """A conversational lead-in before the unchanged query."""
    return rng.choice(PREFIXES) + query.strip()


PERTURBATIONS: dict[str, Callable[[str, random.Random], str | None]] = {
    "drop-words": drop_words,
    "shuffle-clauses": shuffle_clauses,
    "typos": typos,
    "prefix": prefix,
}


def make_variants(
    query: str,
    kinds: list[str],
    n: int,
    rng: random.Random,
    extra: Mapping[str, Callable[[str, random.Random], str | None]] | None = None,
    keep: frozenset[str] = frozenset(),
    refused: set[str] | None = None,
) -> list[tuple[str, str]]:
    """Up to ``n`` distinct variants of ``query``, each different from it, as ``(kind, text)``.
    ``extra`` adds perturbations to :data:`PERTURBATIONS` (``reword``: the model's rewording);
    ``keep``: lowercased words (of the answers and titles) that drop-words and typos leave alone;
    ``refused`` gets the kinds that were tried and could make no new well-formed variant.

    Kinds are taken in a seeded order, round-robin, so ``n`` variants spread over the kinds;
    when one cannot change the query (a one-word query has no clauses) the next kind is tried, and
    the next variant starts after the kind that made this one. Fewer than ``n`` come back only
    when no listed perturbation can make another distinct variant.
    """
    perturbations: dict[str, Perturbation] = {**PERTURBATIONS, **(extra or {})}
    if keep:
        perturbations["drop-words"] = functools.partial(drop_words, keep=keep)
        perturbations["typos"] = functools.partial(typos, keep=keep)
    order = list(dict.fromkeys(kinds))
    rng.shuffle(order)
    seen = {query.strip()}
    made: list[tuple[str, str]] = []
    start = 0
    while len(made) < n:
        for step in range(len(order)):
            kind = order[(start + step) % len(order)]
            text = _try(perturbations[kind], query, rng, seen)
            if text is not None:
                seen.add(text)
                made.append((kind, text))
                start += step + 1
                break
            if refused is not None:
                refused.add(kind)
        else:
            break
    return made


Perturbation = Callable[[str, random.Random], "str | None"]


def _try(perturb: Perturbation, query: str, rng: random.Random, seen: set[str]) -> str | None:
    for _ in range(TRIES_PER_PERTURBATION):
        text = perturb(query, rng)
        if text is not None and text.strip() and text not in seen:
            return text
    return None
