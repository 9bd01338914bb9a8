"""The generator layer: parsers and quality gates on hand-written answers, and the OpenAI-compatible
backend against a local server (retries, timeouts, cache, failures, secrets)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from hybridft.builders.common import common_options
from hybridft.core.errors import UsageError
from hybridft.core.options import resolve
from hybridft.generators import backends, check_generator, generator_options, prompts
from hybridft.generators.backends import GenerationError
from hybridft.generators.run import Generator
from hybridft.generators.tasks import (
    check_cot_answer,
    check_explanation,
    parse_questions,
    parse_rewording,
    write_cot_answers,
    write_questions,
)

KEY = "sk-test-5ecret-key-0123456789"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "BACKOFF_BASE_S", 0.01)


def generator_config(tmp_path: Path, base_url: str, **overrides: Any) -> dict[str, Any]:
    values = {
        "out": str(tmp_path / "out"),
        "generator": "openai:fake-model",
        "base_url": base_url,
        "api_key_env": "HYBRIDFT_TEST_KEY",
        "generator_cache": str(tmp_path / "cache.sqlite"),
        **overrides,
    }
    config = resolve([*generator_options(), *common_options()], values, {})
    assert check_generator(config, None) == []
    return config


# --- parsing and gates -------------------------------------------------------------------------


def test_parse_questions_strips_numbering_enforces_the_count_and_drops_duplicates() -> None:
    text = (
        "Here are three questions about the text:\n"
        "1. What is the capital of France?\n"
        "2) Which river flows through Paris?\n"
        "- what is the capital of france\n"
        "**Q3:** Who founded Paris?\n"
        "(4) When was the Eiffel Tower built?\n"
        "\n"
        "Thanks\n"
    )
    parsed = parse_questions(text, 3)
    assert parsed.questions == [
        "What is the capital of France?",
        "Which river flows through Paris?",
        "Who founded Paris?",
    ]
    assert (parsed.duplicates, parsed.extra, parsed.skipped_lines) == (1, 1, 2)
    assert parse_questions('Question 1: "How tall is it?"\nQ2. Why is the sky blue?', 5).questions == [
        "How tall is it?",
        "Why is the sky blue?",
    ]


ORACLE = "Paris is the capital of France. The Seine flows through Paris."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            "##Reason: The document says ##begin_quote##The Seine flows through Paris.##end_quote## so the river "
            "is the Seine.\n<ANSWER>: Seine",
            ("Seine", None),
        ),
        # whitespace inside a quote may differ (a line break where the oracle has a space)
        ("##begin_quote##Paris is the\ncapital of France.##end_quote##\n<ANSWER>: France", ("France", None)),
        ("##begin_quote##Paris is the capital of Spain.##end_quote##\n<ANSWER>: Spain", (None, "quote_not_in_oracle")),
        ("##begin_quote##The Seine flows through Paris.##end_quote## So: Seine", (None, "no_answer_tag")),
        ("The Seine flows through Paris.\n<ANSWER>: Seine", (None, "no_quote")),
        ("##begin_quote##The Seine flows through Paris.\n<ANSWER>: Seine", (None, "unbalanced_quote")),
        ("##begin_quote##The Seine flows through Paris.##end_quote##\n<ANSWER>:  ", (None, "empty_answer")),
        ("##begin_quote####end_quote##\n<ANSWER>: Seine", (None, "quote_not_in_oracle")),
    ],
)
def test_cot_quality_gate(answer: str, expected: tuple[str | None, str | None]) -> None:
    check = check_cot_answer(answer, [ORACLE])
    assert (check.answer, check.reason) == expected


def test_explanation_gate_and_rewording_parser() -> None:
    assert check_explanation("Nolan directed Inception: Christopher Nolan.", ["Christopher Nolan"]) is None
    assert check_explanation("The paths lead to the director.", ["Christopher Nolan"]) == "names_no_answer"
    assert check_explanation("  ", ["x"]) == "empty"
    assert parse_rewording('Reworded query: "Which river runs through Paris?"\nextra', "q") == (
        "Which river runs through Paris?",
        None,
    )
    assert parse_rewording("which river flows through paris", "Which river flows through Paris?") == (
        None,
        "same_as_query",
    )
    assert parse_rewording("\n\n", "q") == (None, "empty")


def test_every_prompt_has_its_own_hash() -> None:
    hashes = {p.sha256 for p in prompts.PROMPTS.values()}
    assert len(hashes) == len(prompts.PROMPTS)


# --- the OpenAI-compatible backend --------------------------------------------------------------


def test_retries_after_429_500_and_a_hang_then_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    with FakeOpenAI(key=KEY, hang_seconds=1.5) as server:
        server.plan = ["429", "500", "hang"]
        gen = Generator(generator_config(tmp_path, server.base_url, concurrency=1, request_timeout=0.3))
        [text] = gen.run(prompts.REWORD, [{"query": "Which river flows through Paris?"}], "test")
        gen.close()
    assert text == "Reworded query: In other words, which river flows through Paris?"
    assert [action for _, action in server.log] == ["429", "500", "hang", "ok"]
    run = gen.manifest()["this_run"]
    assert run["requests"] == 4 and run["retries"] == 3
    assert run["retry_reasons"] == {"HTTP 429": 1, "HTTP 500": 1, "no response within request_timeout=0.3s": 1}


def test_requests_are_not_repeated_once_cached_and_a_changed_option_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    texts = [f"Item {k} is painted red. It stands in a field." for k in range(6)]
    with FakeOpenAI(key=KEY) as server:
        gen = Generator(generator_config(tmp_path, server.base_url))
        first, counts = write_questions(gen, texts, 2)
        gen.close()
        assert len(server.log) == 6
        assert first[0] == ["What is fact 0 about Item?", "What is fact 1 about Item?"]
        assert counts.as_dict()["duplicates_dropped"] == 6
        again = Generator(generator_config(tmp_path, server.base_url))
        assert write_questions(again, texts, 2)[0] == first
        again.close()
        assert len(server.log) == 6  # all six from the cache
        assert again.manifest()["tasks"]["questions"]["cached"] == 6
        assert again.manifest()["tokens"] == gen.manifest()["tokens"]  # the data set's tokens, not this run's
        assert again.manifest()["this_run"]["requests"] == 0
        for changed in ({"max_new_tokens": 100}, {"temperature": 0.5}, {"generator": "openai:other-model"}):
            other = Generator(generator_config(tmp_path, server.base_url, **changed))
            before = len(server.log)
            write_questions(other, texts, 2)
            other.close()
            assert len(server.log) - before == 6, changed
        before = len(server.log)
        three = Generator(generator_config(tmp_path, server.base_url))
        write_questions(three, texts, 3)  # another question count is another prompt text
        three.close()
        assert len(server.log) - before == 6


def test_endpoint_failing_for_good_stops_and_a_rerun_sends_only_what_was_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    items = [(f"Question {k}?", [f"Fact number {k} is true."]) for k in range(10)]
    with FakeOpenAI(key=KEY) as server:
        server.decide = lambda body, n: "500" if n >= 4 else None  # the endpoint dies after 4 answers
        gen = Generator(generator_config(tmp_path, server.base_url, concurrency=2, max_retries=2))
        with pytest.raises(GenerationError, match="run the same command again to resume") as caught:
            write_cot_answers(gen, items)
        gen.close()
        assert "after max_retries=2 retries (last: HTTP 500)" in str(caught.value)
        finished = server.answered()
        assert len(finished) == 4
        server.decide = None
        rerun = Generator(generator_config(tmp_path, server.base_url, concurrency=2, max_retries=2))
        results, counts = write_cot_answers(rerun, items)
        rerun.close()
    resent = server.log[len(server.log) - 6 :]
    assert sorted(text for text, _ in resent) == sorted(set(server.answered()) - set(finished))
    assert all(action == "ok" for _, action in resent)
    assert len(set(server.answered())) == len(server.answered()) == 10  # no item was paid for twice
    assert counts.accepted == 10 and all(r is not None for r in results)


def test_a_refused_item_is_counted_and_the_rest_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    with FakeOpenAI(key=KEY) as server:
        server.decide = lambda body, n: "400" if "Question 1?" in body["messages"][1]["content"] else None
        gen = Generator(generator_config(tmp_path, server.base_url))
        results, counts = write_cot_answers(gen, [(f"Question {k}?", [f"Fact {k} holds."]) for k in range(3)])
        gen.close()
    assert results[1] is None and results[0] is not None and results[2] is not None
    assert (counts.accepted, counts.failed) == (2, 1)
    assert gen.manifest()["tasks"]["cot_answer"]["failed_http_400"] == 1
    # The server's message, logged, quoted the key back: it is redacted.
    logged = " ".join(capfd.readouterr().err.split())  # rich wraps long lines
    assert "HTTP 400 for one item: scripted 400 for Bearer ***" in logged and KEY not in logged


@pytest.mark.parametrize(("status", "needle"), [(401, "HTTP 401"), (404, "HTTP 404")])
def test_auth_and_not_found_are_usage_errors_naming_endpoint_and_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, needle: str
) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    with FakeOpenAI(key="another-key" if status == 401 else KEY) as server:
        url = server.base_url if status == 401 else server.base_url.replace("/v1", "/v2")
        gen = Generator(generator_config(tmp_path, url))
        with pytest.raises(UsageError) as caught:
            gen.run(prompts.REWORD, [{"query": "q?"}], "test")
        gen.close()
    message = str(caught.value)
    assert needle in message and url in message and "fake-model" in message
    assert KEY not in message


def test_the_key_is_never_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    with FakeOpenAI(key=KEY) as server:
        gen = Generator(generator_config(tmp_path, server.base_url))
        gen.run(prompts.REWORD, [{"query": f"query {k}?"} for k in range(3)], "test")
        assert KEY not in repr(gen.backend) and KEY not in str(gen.manifest())
        gen.close()
    for file in tmp_path.glob("cache.sqlite*"):
        assert KEY.encode() not in file.read_bytes()
    rows = sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT * FROM items").fetchall()
    assert len(rows) == 3 and not any(KEY in str(row) for row in rows)


def test_checks_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBRIDFT_TEST_KEY", raising=False)
    options = [*generator_options(), *common_options()]
    base = {"out": str(tmp_path / "out"), "api_key_env": "HYBRIDFT_TEST_KEY"}

    def errors(**values: Any) -> list[str]:
        return check_generator(resolve(options, {**base, **values}, {}), "cot=generator")

    assert errors() == ["cot=generator needs a model: give --generator hf:PATH or --generator openai:MODEL"]
    assert errors(generator="gpt-4") == ["generator=gpt-4: expected none, hf:PATH or openai:MODEL"]
    [missing] = errors(generator="openai:m", base_url="http://127.0.0.1:1/v1")
    assert "HYBRIDFT_TEST_KEY is not set" in missing
    assert errors(generator="openai:m", base_url="http://127.0.0.1:1/v1", api_key_env="none") == []
    assert "credentials" in errors(generator="openai:m", base_url="http://u:p@host/v1", api_key_env="none")[0]
    # Secrets pasted into the wrong option are refused without being echoed (the URL goes to the manifest).
    [query] = errors(generator="openai:m", base_url="http://host/v1?key=SECRET-1", api_key_env="none")
    assert "query" in query and "SECRET-1" not in query
    [pasted] = errors(generator="openai:m", base_url="http://host/v1", api_key_env="sk-proj-SECRET-2")
    assert "NAME of an environment variable" in pasted and "SECRET-2" not in pasted
    inside = str(tmp_path / "out" / "c.sqlite")
    assert "outside --out" in errors(generator="hf:tiny", generator_cache=inside)[0]
    with pytest.raises(UsageError):
        resolve(options, {**base, "concurrency": 0}, {})


@pytest.mark.parametrize(
    "argv",
    [
        ["build-data", "raft", "--help"],
        ["build-data", "rog", "--help"],
        [
            "build-data",
            "raft",
            "--docs",
            str(Path(__file__).parent.parent / "data_recipes" / "samples" / "raft" / "docs"),
            "--generator",
            "openai:m",
            "--api-key-env",
            "none",
            "--out",
            "x",
            "--dry-run",
        ],
    ],
)
def test_help_and_dry_run_import_no_http_client_nor_model(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from hybridft.cli.main import app\n"
        f"sys.argv = ['hybridft', *{argv!r}]\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('httpx', 'torch', 'transformers', 'sqlite3') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("HEAVY []")


def test_an_edited_prompt_is_not_served_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    edited = prompts.Prompt("reword", prompts.REWORD.system, prompts.REWORD.user + "\nBe brief.")
    with FakeOpenAI(key=KEY) as server:
        for prompt, sent in ((prompts.REWORD, 1), (prompts.REWORD, 1), (edited, 2), (edited, 2)):
            gen = Generator(generator_config(tmp_path, server.base_url))
            gen.run(prompt, [{"query": "Which river flows through Paris?"}], "test")
            gen.close()
            assert len(server.log) == sent
    assert gen.manifest()["prompts"]["reword"]["sha256"] == edited.sha256 != prompts.REWORD.sha256


@pytest.mark.parametrize("concurrency", [1, 4])
def test_requests_in_flight_never_exceed_the_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    with FakeOpenAI(key=KEY, latency=0.05) as server:
        gen = Generator(generator_config(tmp_path, server.base_url, concurrency=concurrency))
        texts = gen.run(prompts.REWORD, [{"query": f"query {k}?"} for k in range(16)], "test")
        gen.close()
    assert all(texts) and len(server.log) == 16
    assert server.max_in_flight == concurrency


def test_retry_after_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    with FakeOpenAI(key=KEY) as server:
        server.plan = ["429:0.6"]
        gen = Generator(generator_config(tmp_path, server.base_url))
        started = time.perf_counter()
        [text] = gen.run(prompts.REWORD, [{"query": "q?"}], "test")
        elapsed = time.perf_counter() - started
        gen.close()
    assert text is not None and [a for _, a in server.log] == ["429:0.6", "ok"]
    assert elapsed >= 0.6  # the backoff alone would be ~0.01 s here
    assert backends.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert backends.retry_after("9999") == backends.RETRY_AFTER_MAX_S and backends.retry_after("soon") is None


def test_a_local_model_trained_again_in_place_is_another_cache_identity(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"a" * 10)
    (folder / "notes.txt").write_text("not a weight file")
    backend = backends.HFBackend(str(folder), batch_size=1, log=print)
    first = backend.identity()
    assert first["model"] == str(folder.resolve()) and first["dtype"] in ("float32", "bfloat16")
    assert sorted(first["files"]) == ["config.json", "model.safetensors"]
    (folder / "notes.txt").write_text("edited")
    assert backend.identity() == first
    weights = folder / "model.safetensors"
    weights.write_bytes(b"b" * 10)  # the same size, written again
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert backend.identity() != first


def test_the_seed_is_sent_only_when_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    bodies: list[dict[str, Any]] = []
    with FakeOpenAI(key=KEY) as server:
        server.decide = lambda body, n: bodies.append(body)
        for n, temperature in enumerate((0.0, 0.7)):
            config = generator_config(tmp_path / str(n), server.base_url, temperature=temperature, seed=5)
            with Generator(config) as gen:
                gen.run(prompts.REWORD, [{"query": "Which river flows through Paris?"}], "test")
    assert [("seed" in body, body.get("seed"), body["temperature"]) for body in bodies] == [
        (False, None, 0.0),
        (True, 5, 0.7),
    ]
