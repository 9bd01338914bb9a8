"""A synthetic domain for bench/effects.py: people with attributes, documents about them, a knowledge
graph over the same people, and questions — with whole families of people held out for testing.

Made-up names and values drawn at random per person, so a model cannot learn an answer about a
held-out person from its training questions: it must read it from the documents or the graph.
People of one family share the family name, so documents about them share words with a question
and make hard distractors (and bm25 ranks them high); every person has three documents, one per
attribute, so the other two documents about the same person are distractors too.

  write_domain(folder, seed)  ->  docs_train.jsonl, docs_test.jsonl, qa_train.jsonl, qa_test.jsonl,
                                  kg_train.jsonl, kg_test.jsonl (RoG questions with their graphs),
                                  domain.json (what was drawn, for the held-out check)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridft.core.outputs import write_jsonl

SYLLABLES = "ka lo ve rin to mar sel dun pi ro ne bas tul qui zen fa gor li mo tes bri dax ul wen sho pra vik"
SYLLABLE_LIST = SYLLABLES.split()
# Values are made-up words like the names, from pools large enough that no value is a likely
# guess: a model answers by reading (real words, single tokens of the tiny tokenizer, were tried
# first: the model learned their frequencies and answered from them instead of reading).
COUNTRIES = 8
CITIES_PER_COUNTRY = 10
JOBS = 80
PETS = 80

# attribute -> (document sentence, question); {name} is the person, {value} the attribute's value.
ATTRIBUTES = {
    "city": ("{name} lives in the city of {value}.", "In which city does {name} live?"),
    "job": ("{name} works as a {value}.", "What does {name} work as?"),
    "pet": ("{name} has a pet called {value}.", "What is the name of the pet of {name}?"),
}
# RoG questions: relation path -> question template (answers are what the path reaches).
KG_QUESTIONS = {
    ("lives_in",): "In which city does {name} live?",
    ("works_as",): "What does {name} work as?",
    ("lives_in", "located_in"): "In which country does {name} live?",
    ("friend_of", "lives_in"): "In which city does the friend of {name} live?",
    ("friend_of", "works_as"): "What does the friend of {name} work as?",
}


@dataclass
class Person:
    key: str
    name: str
    family: int
    held_out: bool
    values: dict[str, str] = field(default_factory=dict)
    friend: str = ""  # key of another person of the same family


def _words(rng: random.Random, count: int, syllables: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        word = "".join(rng.choice(SYLLABLE_LIST) for _ in range(syllables)).capitalize()
        if word not in found:
            found.append(word)
    return found


def draw(
    seed: int, families: int = 40, per_family: int = 6, held_out_families: int = 8, syllables: int = 2
) -> dict[str, Any]:
    """People, places and values; the last ``held_out_families`` families are the test people.
    Names and values have ``syllables`` syllables (the reader's pretraining domain uses 3, so none
    of its names can be a test person's)."""
    rng = random.Random(seed)
    sizes = [families, per_family * 3, COUNTRIES, COUNTRIES * CITIES_PER_COUNTRY, JOBS, PETS]
    names = _words(rng, sum(sizes), syllables)
    family_names, first_names, countries, cities, jobs, pets = (
        names[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))
    )
    jobs = [job.lower() for job in jobs]
    country_of = {city: countries[i // CITIES_PER_COUNTRY] for i, city in enumerate(cities)}
    people: list[Person] = []
    for family in range(families):
        firsts = rng.sample(first_names, per_family)  # first names recur across families too
        members: list[Person] = []
        for first in firsts:
            key, held_out = f"p{len(people) + len(members)}", family >= families - held_out_families
            person = Person(key, f"{first} {family_names[family]}", family, held_out)
            person.values = {
                "city": rng.choice(cities),
                "job": rng.choice(jobs),
                "pet": rng.choice(pets),
            }
            members.append(person)
        for i, person in enumerate(members):  # a friend in the family, never oneself
            person.friend = members[(i + 1 + rng.randrange(per_family - 1)) % per_family].key
        people.extend(members)
    return {"people": people, "country_of": country_of}


def documents(people: list[Person]) -> list[dict[str, str]]:
    return [
        {"id": f"{p.key}-{attribute}", "title": p.name, "text": sentence.format(name=p.name, value=p.values[attribute])}
        for p in people
        for attribute, (sentence, _) in ATTRIBUTES.items()
    ]


def qa_rows(people: list[Person]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"q-{p.key}-{attribute}",
            "question": question.format(name=p.name),
            "answers": [p.values[attribute]],
            "doc_ids": [f"{p.key}-{attribute}"],
        }
        for p in people
        for attribute, (_, question) in ATTRIBUTES.items()
    ]


def triples(people: list[Person], country_of: dict[str, str]) -> list[list[str]]:
    by_key = {p.key: p for p in people}
    found = []
    for p in people:
        found.append([p.name, "lives_in", p.values["city"]])
        found.append([p.name, "works_as", p.values["job"]])
        found.append([p.name, "friend_of", by_key[p.friend].name])
    found += [[city, "located_in", country] for city, country in country_of.items()]
    return found


def kg_rows(people: list[Person], all_triples: list[list[str]]) -> list[dict[str, Any]]:
    """RoG questions; each row's graph is every triple within two hops (edges both ways) of its
    person, as RoG-webqsp rows carry their own subgraph."""
    neighbours: dict[str, set[str]] = {}
    for h, _, t in all_triples:
        neighbours.setdefault(h, set()).add(t)
        neighbours.setdefault(t, set()).add(h)
    rows = []
    for p in people:
        near = {p.name} | neighbours[p.name]
        for entity in list(near):
            near |= neighbours[entity]
        graph = [t for t in all_triples if t[0] in near and t[2] in near]
        for path, question in KG_QUESTIONS.items():
            answers = _follow(p.name, path, all_triples)
            rows.append(
                {
                    "id": f"kg-{p.key}-{'-'.join(path)}",
                    "question": question.format(name=p.name),
                    "answer": answers,
                    "q_entity": [p.name],
                    "a_entity": answers,
                    "graph": graph,
                }
            )
    return rows


def _follow(start: str, path: tuple[str, ...], all_triples: list[list[str]]) -> list[str]:
    reached = {start}
    for relation in path:
        reached = {t for h, r, t in all_triples if r == relation and h in reached}
    return sorted(reached)


def write_domain(folder: Path, seed: int, **sizes: int) -> dict[str, Any]:
    """Every file of the domain in ``folder``; returns the held-out people and texts."""
    drawn = draw(seed, **sizes)
    people: list[Person] = drawn["people"]
    all_triples = triples(people, drawn["country_of"])
    folder.mkdir(parents=True, exist_ok=True)
    held = {"train": [p for p in people if not p.held_out], "test": [p for p in people if p.held_out]}
    for split, members in held.items():
        write_jsonl(folder / f"docs_{split}.jsonl", documents(members))
        write_jsonl(folder / f"qa_{split}.jsonl", qa_rows(members))
        write_jsonl(folder / f"kg_{split}.jsonl", kg_rows(members, all_triples))
    test = {
        "entities": [p.name for p in held["test"]],
        "questions": [row["question"] for row in qa_rows(held["test"])]
        + [row["question"] for row in kg_rows(held["test"], all_triples)],
        "documents": [doc["text"] for doc in documents(held["test"])],
    }
    (folder / "domain.json").write_text(json.dumps({"seed": seed, "test": test}, indent=1) + "\n")
    return test


def leaks(train_rows_file: Path, test: dict[str, Any]) -> list[str]:
    """Test entities, questions or document texts found in a training rows file (train.jsonl)."""
    text = train_rows_file.read_text(encoding="utf-8")
    found = [f"entity {e!r}" for e in test["entities"] if e in text]
    found += [f"question {q!r}" for q in test["questions"] if q in text]
    found += [f"document {d!r}" for d in test["documents"] if d in text]
    return found
