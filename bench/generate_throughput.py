"""`openai:` generator: requests/s at concurrency 1 against 16, on a local endpoint with a fixed latency.

A ThreadingHTTPServer on 127.0.0.1 answers every chat-completions request after sleeping
``--latency`` seconds (a stand-in for a model server's time per request). hybridft's OpenAI
backend (httpx + asyncio, the code `build-data` uses, without the cache) sends ``--requests``
distinct prompts at each concurrency, ``--repeats`` times alternating; the script prints the best
requests/s of each side and their ratio (target >= 10x at 16). The server runs in a process of
its own, as a real endpoint would not share the client's CPU time. Nothing leaves the machine.

  python bench/generate_throughput.py [--requests 160] [--latency 0.05] [--concurrency 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(latency: float, port: Any) -> None:
    """Run the endpoint (in its own process: its CPU time is not the client's) until killed."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints
        disable_nagle_algorithm = True  # else headers and body in two writes wait on delayed ACKs (~40 ms)

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(latency)
            content = "Reworded: " + body["messages"][-1]["content"][-40:]
            payload = {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 8},
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer.request_queue_size = 128  # 16 connections opening at once overflow the default 5
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port.put(server.server_address[1])
    server.serve_forever()


def requests_per_second(base_url: str, concurrency: int, count: int) -> float:
    from hybridft.generators.backends import Completion, GenerationParams, OpenAIBackend

    backend = OpenAIBackend(
        "bench-model",
        base_url,
        api_key=None,
        api_key_env=None,
        concurrency=concurrency,
        max_retries=0,
        request_timeout=30,
        log=print,
    )
    items = [[{"role": "user", "content": f"Reword query number {n}."}] for n in range(count)]
    done: list[int] = []

    def on_done(index: int, result: Any) -> None:
        assert isinstance(result, Completion), result
        done.append(index)

    started = time.perf_counter()
    backend.generate(items, GenerationParams(32, 0.0, 0), on_done)
    elapsed = time.perf_counter() - started
    assert sorted(done) == list(range(count))
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side; the best counts (noisy machines)")
    args = parser.parse_args()

    port: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(args.latency, port), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{port.get(timeout=30)}/v1"
    try:
        requests_per_second(base_url, 2, 4)  # warm-up: imports, first connections
        serial, parallel = [], []
        for _ in range(args.repeats):  # alternating, so a busy moment of the machine hits both sides
            serial.append(requests_per_second(base_url, 1, args.requests))
            parallel.append(requests_per_second(base_url, args.concurrency, args.requests))
    finally:
        server.terminate()
        server.join()
    print(f"{args.requests} requests, server latency {args.latency * 1000:.0f} ms, best of {args.repeats}")
    print(f"concurrency 1:  {max(serial):7.1f} requests/s (ideal {1 / args.latency:.1f}); all: {_show(serial)}")
    print(f"concurrency {args.concurrency}: {max(parallel):7.1f} requests/s; all: {_show(parallel)}")
    print(f"ratio: {max(parallel) / max(serial):.1f}x (target >= 10x)")


def _show(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
