"""``hybridft index``: a corpus chunked and indexed once, or a global KG packed once, saved for
every command that ranks the corpus or searches the KG."""

from __future__ import annotations

from typing import Any

from hybridft.cli.common import EXIT_OK, emit, options_command, print_options

USAGE = """\
usage: hybridft index --docs CORPUS [--retriever bm25|minilm|FOLDER|RUN_DIR] [chunking options] --out INDEX_DIR
       hybridft index --kg KG.tsv|KG.jsonl --out KG_DIR

Chunk a corpus and index it once: bm25 (bm25s), a sentence-transformers model (minilm, or a local
folder), or a trained retriever (the run folder of `finetune --trainer invar-retriever`).
INDEX_DIR holds the chunks, the index and manifest.json; `build-data raft|invar`, `eval retrieval`,
`eval rag` and `ask` open it with --index INDEX_DIR. Rerunning after Ctrl-C continues the encoding.

With --kg, pack a global KG once into memory-mapped columns (names, triple codes, the CSR indexes
path search walks) and manifest.json; `build-data rog --kg KG_DIR` and `eval rog --kg KG_DIR` open
it without reading it whole, and processes on one machine share one copy through the page cache.

  --config, --recipe FILE   YAML config (relative paths start at its folder)
  --dry-run                 check and print the resolved options; do no work, write nothing
  --json                    print the manifest as one JSON document on stdout
  --debug                   show tracebacks
"""


def main(tokens: list[str]) -> int:
    if _packs_kg(tokens):
        return _index_kg(tokens)
    from hybridft.retrieval.index import OPTIONS, check

    parsed = options_command(tokens, OPTIONS, check, name="index", usage=USAGE)
    if parsed is None:
        if "--help" in tokens or "-h" in tokens:
            print_options("index --kg options", _kg_options())
        return EXIT_OK
    config, control = parsed
    from hybridft.core.outputs import check_output_dir
    from hybridft.retrieval.index import build

    check_output_dir(config["out"], config["overwrite"])
    manifest = build(config)
    counts = manifest["counts"]
    as_json = bool(control.get("json"))
    emit(
        {"command": "index", "out": str(config["out"]), **manifest},
        as_json,
        f"index: {counts['chunks']} chunks of {counts['documents']} documents ({config['retriever']}) "
        f"-> {config['out']}",
    )
    return EXIT_OK


def _packs_kg(tokens: list[str]) -> bool:
    """``--kg`` on the command line, or ``kg:`` in the recipe: the KG form of the command."""
    if any(token == "--kg" or token.startswith("--kg=") for token in tokens):
        return True
    from hybridft.core.options import load_recipe, peek_recipe

    recipe_path = peek_recipe(tokens)
    return recipe_path is not None and "kg" in load_recipe(recipe_path)[0]


def _kg_options() -> list[Any]:
    from hybridft.core.options import Option

    return [
        Option(
            "kg",
            "path",
            None,
            "the global KG: .tsv (head<TAB>relation<TAB>tail) or .jsonl [h, r, t] rows",
            required=True,
        ),
        Option("out", "outpath", None, "the saved KG folder", required=True),
        Option("overwrite", "bool", False, "replace a non-empty --out"),
    ]


def _check_kg(config: dict[str, Any]) -> list[str]:
    from pathlib import Path

    source = config["kg"]
    if Path(source).is_dir():
        return [f"--kg {source}: a folder; give the .tsv or .jsonl KG file to pack (a saved KG is packed already)"]
    return []


def _index_kg(tokens: list[str]) -> int:
    if any(token == "--docs" or token.startswith("--docs=") for token in tokens):
        from hybridft.core.errors import UsageError

        raise UsageError("--kg packs a KG, --docs indexes a corpus: give one of them (two runs, two --out folders)")
    parsed = options_command(tokens, _kg_options(), _check_kg, name="index", usage=USAGE)
    if parsed is None:
        return EXIT_OK
    config, control = parsed
    from hybridft.core.outputs import check_output_dir
    from hybridft.core.progress import log
    from hybridft.kg.graph import read_kg
    from hybridft.kg.saved import save

    check_output_dir(config["out"], config["overwrite"])
    log(f"reading the KG {config['kg']}")
    kg = read_kg(config["kg"])
    manifest = save(kg, config)
    counts = manifest["counts"]
    emit(
        {"command": "index", "out": str(config["out"]), **manifest},
        bool(control.get("json")),
        f"index: KG of {counts['triples']} triples, {counts['entities']} entities, {counts['relations']} "
        f"relations -> {config['out']}",
    )
    return EXIT_OK
