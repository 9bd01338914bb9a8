"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for tests (never the internet).

It answers every hybridft prompt in the expected format (derived from the prompt's own text), can
be told to fail (429, 500, 401, 400, a hang past the client's timeout) for given requests, checks
the API key, and records every request it gets and what it answered.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = str  # "ok", "429", "429:SECONDS" (with that Retry-After), "500", "400", "401", "hang"


def user_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def default_reply(body: dict[str, Any]) -> str:
    """A well-formed answer to each of hybridft's prompts, built from the prompt's input."""
    system = body["messages"][0]["content"]
    text = user_text(body)
    if "reading-comprehension" in system:  # questions: numbered, with a preamble and a duplicate
        n = int(re.search(r"Write (\d+) different questions", text).group(1))  # type: ignore[union-attr]
        subject = text.split("Text:\n", 1)[1].split()[0].strip(".,")
        lines = ["Here are the questions:"] + [f"{k + 1}. What is fact {k} about {subject}?" for k in range(n)]
        lines.insert(2, f"- what is fact 0 about {subject}")  # a duplicate, to be dropped
        return "\n".join(lines)
    if "show your reasoning" in system:  # CoT: quote the context's first sentence, answer its last word
        context = text.split("Context:\n", 1)[1].split("\n\nAnswer the question", 1)[0]
        sentence = re.split(r"(?<=\.)\s", context.strip())[0]
        answer = sentence.rstrip(".").split()[-1]
        reason = f"##Reason: The context says ##begin_quote##{sentence}##end_quote## so it is {answer}."
        return f"{reason}\n<ANSWER>: {answer}"
    if "knowledge graph" in system:
        answers = re.search(r"\nAnswers: (.*)\n", text).group(1)  # type: ignore[union-attr]
        return f"Following the reasoning paths from the question entity leads to {answers}."
    if "reword" in system:
        query = text.split("Query: ", 1)[1]
        return f"Reworded query: In other words, {query[:1].lower()}{query[1:]}"
    return "?"


class FakeOpenAI:
    def __init__(
        self,
        *,
        key: str | None = None,
        reply: Callable[[dict[str, Any]], str] = default_reply,
        latency: float = 0.0,
        hang_seconds: float = 2.0,
    ):
        self.key = key
        self.reply = reply
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.plan: list[Action] = []  # actions for the next requests, in order; then "ok"
        self.decide: Callable[[dict[str, Any], int], Action | None] | None = None  # (body, n) -> action
        self.log: list[tuple[str, Action]] = []  # (user message, action) per request
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests handled at once
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if server.key is not None and self.headers.get("Authorization") != f"Bearer {server.key}":
                    server._record(body, "401")
                    return self._send(401, {"error": {"message": "invalid key"}})
                action = server._next(body)
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                self._counted = True
                try:
                    self._act(body, action)
                finally:
                    self._release()

            def _release(self) -> None:
                """The request is no longer in flight once its answer starts to go out: the client
                may send its next request as soon as it has read it, before this thread ends."""
                if getattr(self, "_counted", False):
                    self._counted = False
                    with server.lock:
                        server.in_flight -= 1

            def _act(self, body: dict[str, Any], action: Action) -> None:
                if server.latency:
                    time.sleep(server.latency)
                if action == "hang":
                    time.sleep(server.hang_seconds)
                    return None
                if action.startswith("429"):
                    wait = action.partition(":")[2] or "0"
                    return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": wait})
                if action == "400":  # echoes the key, as careless servers do: hybridft must redact it
                    echoed = f"scripted 400 for {self.headers.get('Authorization')}"
                    return self._send(400, {"error": {"message": echoed}})
                if action == "500":
                    return self._send(500, {"error": {"message": "scripted 500"}})
                content = server.reply(body)
                usage = {"prompt_tokens": len(user_text(body).split()), "completion_tokens": len(content.split())}
                message = {"role": "assistant", "content": content}
                self._send(200, {"choices": [{"index": 0, "message": message}], "usage": usage})

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self._release()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _next(self, body: dict[str, Any]) -> Action:
        with self.lock:
            n = len(self.log)
            action = self.plan.pop(0) if self.plan else None
            if action is None and self.decide is not None:
                action = self.decide(body, n)
            action = action or "ok"
            self.log.append((user_text(body), action))
            return action

    def _record(self, body: dict[str, Any], action: Action) -> None:
        with self.lock:
            self.log.append((user_text(body), action))

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no request is in flight and none has arrived for ``quiet`` seconds, so that
        what a client sent just before it was interrupted is in the log before a test reads it."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                count, busy = len(self.log), self.in_flight
            if count != seen or busy:
                seen, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.02)

    def answered(self) -> list[str]:
        """User messages that got a 200."""
        return [text for text, action in self.log if action == "ok"]

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
