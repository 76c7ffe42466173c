"""Loopback HTTP servers that fail on purpose — the one thing a real server here can't be made to do.

All speak just enough of the OpenAI chat API and listen on 127.0.0.1 only. ``FlakyOpenAI``
fails its first ``fail_first`` chat requests with ``status`` (503 by default) and answers later
ones with a fixed completion; ``ScriptedOpenAI`` answers each call as a script says;
``SyntheticOpenAI`` stands in for a busy vLLM server: heavy-tailed latency, a share of faults and
completions that honour ``seed``, every draw repeatable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from statistics import NormalDist
from typing import Any


class FlakyOpenAI:
    def __init__(self, fail_first: int = 2, status: int = 503, text: str = "The answer is \\boxed{12}."):
        self.fail_first, self.status, self.text = fail_first, status, text
        self.chat_calls = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if code == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "flaky", "object": "model"}]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.chat_calls += 1
                    fail = outer.chat_calls <= outer.fail_first
                if fail:
                    self._send(outer.status, {"error": {"message": "failing on purpose", "type": "server_error"}})
                    return
                self._send(200, {
                    "id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": outer.text}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FlakyOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedOpenAI:
    """An OpenAI chat endpoint on 127.0.0.1 that answers chat call number ``n`` (from 0) as
    ``script(n)`` says: an HTTP status code (``429`` comes with ``Retry-After: retry_after``) or one
    of ``"ok"`` (a completion), ``"nonjson"`` / ``"html"`` (a 200 whose body is not JSON),
    ``"no-choices"``, ``"null-content"``, ``"reset"`` (the connection reset) and ``"slow"`` (a
    completion after ``slow_seconds``).

    Faked on purpose: no real server can be made to fail in these ways on demand. Every answer
    waits ``delay`` seconds first, so that requests overlap; ``max_in_flight`` is the most chat
    calls it was ever serving at once and ``times`` when each call arrived (``time.monotonic``).
    """

    def __init__(self, script, *, delay: float = 0.0, retry_after: str = "1", slow_seconds: float = 2.0,
                 text: str = "The answer is \\boxed{12}."):
        self.script, self.delay, self.text = script, delay, text
        self.calls = self.ok = self.in_flight = self.max_in_flight = self.busy = self.max_busy = 0
        self.times: list[float] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def _send(self, code: int, data: bytes, content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if code == 429:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(data)

            def _completion(self, req: dict, content: str | None, choices: bool = True) -> bytes:
                choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                return json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [choice] if choices else [],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
                }).encode()

            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    n = outer.calls
                    outer.calls += 1
                    outer.times.append(time.monotonic())
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    self._answer(outer.script(n), req)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def _answer(self, action, req: dict) -> None:
                time.sleep(outer.delay)
                if isinstance(action, int):
                    self._send(action, json.dumps({"error": {"message": f"{action} on purpose"}}).encode())
                elif action == "reset":
                    # SO_LINGER 0: close() sends a TCP reset instead of a clean end of stream.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                elif action == "nonjson":
                    self._send(200, b'{"id": "x", "choices": [')
                elif action == "html":
                    self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                elif action == "no-choices":
                    self._send(200, self._completion(req, outer.text, choices=False))
                elif action == "null-content":
                    self._send(200, self._completion(req, None))
                else:
                    if action == "slow":
                        time.sleep(slow_seconds)
                    self._send(200, self._completion(req, outer.text))
                    with outer.lock:
                        outer.ok += 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client killed mid-request leaves a broken pipe here; that is the point, not an error.
        self.server.handle_error = lambda request, client_address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "ScriptedOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _draw(*parts: Any) -> int:
    """A 64-bit number that depends on ``parts`` only: what makes every synthetic draw repeatable."""
    key = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _unit(*parts: Any) -> float:
    """A number in (0, 1) that depends on ``parts`` only (53 bits: a float holds them exactly)."""
    return ((_draw(*parts) >> 11) + 0.5) / 2**53


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # Two sources at concurrency 32 open 64 connections at once; the default backlog of 5 would drop
    # SYNs and add the kernel's 1 s retransmit to some requests, which is not the latency under test.
    request_queue_size = 512

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-request leaves a broken pipe here; that is the point, not an error


class SyntheticOpenAI:
    """An OpenAI-compatible chat server on 127.0.0.1 that behaves like a busy vLLM server, repeatably.

    - latency: lognormal with ``median`` seconds and shape ``sigma`` (median 0: answer at once), one
      draw per choice; a request for ``n`` choices takes as long as its slowest choice;
    - ``slots``: at most this many choices are generated at once (vLLM's ``max_num_seqs``); the rest
      wait their turn, so more requests in flight than slots buy nothing (None: no limit);
    - faults: a ``fault_rate`` share of chat requests is answered with 429 (``Retry-After: 0``, at
      once, as a rate limiter does), 500, 502, 503 or a 200 whose body is not JSON (after the latency);
    - completions: :meth:`completion` of (model, messages, seed, choice index), so the server honours
      ``seed``; ``n`` choices come back when asked, or one when ``honour_n`` is False (llama.cpp);
    - ``judges``: models that answer like a reward judge, one digit 1-9 drawn from the request
      (:meth:`rating`), so a build can score with ``reward: {kind: judge, base_url: ...}``;
    - ``models`` and ``judges`` are listed by ``GET /v1/models``; a chat request for another model is a 404.

    Latency and faults are drawn from (``seed``, the request, how often this request was seen
    before): a fresh server replays a run exactly, whatever order the requests arrive in, and a
    retried request gets a new draw, so no fault repeats for ever.

    Records: ``calls`` (chat requests), ``ok``, ``faults`` (count per kind), ``latencies`` (seconds
    each choice actually slept in its slot: one per request unless n > 1; none for a 429),
    ``max_in_flight`` (most chat requests on the wire at once, waiting for a slot or not),
    ``max_busy`` (most choices generated at once: never above ``slots``), and
    ``first_call`` / ``last_reply`` (``time.monotonic`` of the first request and the last answer).
    """

    FAULTS: tuple[int | str, ...] = (429, 500, 502, 503, "nonjson")

    def __init__(self, models: tuple[str, ...] | list[str] = ("synthetic",), *, judges: tuple[str, ...] = (),
                 median: float = 0.0, sigma: float = 0.0, fault_rate: float = 0.0, seed: int = 0,
                 honour_n: bool = True, slots: int | None = None):
        if median < 0 or sigma < 0 or not 0 <= fault_rate <= 1:
            raise ValueError(f"need median >= 0, sigma >= 0, 0 <= fault_rate <= 1; got {median}, {sigma}, "
                             f"{fault_rate}")
        self.models, self.judges, self.median, self.sigma = tuple(models), tuple(judges), median, sigma
        self.fault_rate, self.seed, self.honour_n = fault_rate, seed, honour_n
        self.calls = self.ok = self.in_flight = self.max_in_flight = self.busy = self.max_busy = 0
        self.faults: Counter = Counter()
        self.latencies: list[float] = []
        self.first_call: float | None = None
        self.last_reply: float | None = None
        self._seen: Counter = Counter()
        self._slots = threading.Semaphore(slots) if slots else None
        self.lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def completion(model: str, messages: list[dict], seed: int | None, index: int) -> str:
        """The text of choice ``index``: the sum of the integers in the question's first line on about
        half the draws, that sum plus 1-9 on the others. Right on additions ("What is 7 + 5?"),
        wrong otherwise, so the math verifier sees both."""
        user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        numbers = [int(x) for x in re.findall(r"-?\d+", user.split("\n", 1)[0])]
        h = _draw("text", model, messages, seed, index)
        answer = sum(numbers) + (0 if h % 2 == 0 else 1 + (h >> 1) % 9)
        return f"Sample {index} of seed {seed}: adding {numbers} gives {answer}. The answer is \\boxed{{{answer}}}."

    @staticmethod
    def rating(model: str, messages: list[dict]) -> str:
        """A judge's verdict: one digit 1-9 that depends on the judge and what it reads only."""
        return str(1 + _draw("rating", model, messages) % 9)

    def latency(self, request: dict, seen: int, index: int) -> float:
        if self.median == 0:
            return 0.0
        z = NormalDist().inv_cdf(_unit("latency", self.seed, request, seen, index))
        return self.median * math.exp(self.sigma * z)

    def fault(self, request: dict, seen: int) -> int | str | None:
        h = _draw("fault", self.seed, request, seen)
        if (h >> 8) / 2**56 >= self.fault_rate:
            return None
        return self.FAULTS[h % len(self.FAULTS)]

    @property
    def busy_seconds(self) -> float:
        """Seconds of latency slept in all: the work this server did."""
        with self.lock:
            return sum(self.latencies)

    def _begin(self, request: dict) -> int:
        """Count one chat request in; how many times this same request was seen before."""
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.first_call is None:
                self.first_call = time.monotonic()
            key = json.dumps(request, sort_keys=True)
            self._seen[key] += 1
            return self._seen[key] - 1

    def _serve(self, waits: list[float]) -> list[float]:
        """Sleep each choice's latency in a slot of its own, the choices side by side; the seconds each slept."""
        slept = [0.0] * len(waits)

        def one(i: int) -> None:
            with self._slots or contextlib.nullcontext():
                with self.lock:
                    self.busy += 1
                    self.max_busy = max(self.max_busy, self.busy)
                t0 = time.perf_counter()
                time.sleep(waits[i])
                slept[i] = time.perf_counter() - t0
                with self.lock:
                    self.busy -= 1

        others = [threading.Thread(target=one, args=(i,)) for i in range(1, len(waits))]
        for t in others:
            t.start()
        one(0)
        for t in others:
            t.join()
        return slept

    def _end(self, slept: list[float], fault: int | str | None) -> None:
        with self.lock:
            self.in_flight -= 1
            self.latencies.extend(slept)
            self.last_reply = time.monotonic()
            if fault is None:
                self.ok += 1
            else:
                self.faults[fault] += 1

    def choices(self, req: dict) -> int:
        """How many choices the answer to ``req`` carries."""
        return (req.get("n") or 1) if self.honour_n else 1

    def _body(self, req: dict) -> bytes:
        n = self.choices(req)
        model, messages = req["model"], req["messages"]
        if model in self.judges:
            texts = [self.rating(model, messages)] * n
        else:
            texts = [self.completion(model, messages, req.get("seed"), i) for i in range(n)]
        tokens = sum(len(t.split()) for t in texts)
        return json.dumps({
            "id": "synthetic", "object": "chat.completion", "created": 0, "model": req["model"],
            "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": 20 + tokens},
        }).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as clients of a real server get
            # Headers and body go out in two writes; with Nagle on, a kept-alive connection holds the
            # second until the client's delayed ACK, adding 40 ms to every request.
            disable_nagle_algorithm = True

            def log_message(self, *a: Any) -> None:  # keep test output clean
                pass

            def _send(self, code: int, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if code == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def _error(self, code: int, message: str) -> None:
                self._send(code, json.dumps({"error": {"message": message, "type": "synthetic", "code": code}})
                           .encode())

            def do_GET(self) -> None:
                if not self.path.rstrip("/").endswith("/models"):
                    self._error(404, f"no route {self.path}")
                    return
                self._send(200, json.dumps({"object": "list", "data": [
                    {"id": m, "object": "model", "owned_by": "synthetic"} for m in outer.models + outer.judges]})
                    .encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._error(404, f"no route {self.path}")
                    return
                try:
                    req = json.loads(body)
                except ValueError:
                    req = None
                if not isinstance(req, dict) or not isinstance(req.get("messages"), list) \
                        or req.get("n") is not None and (type(req["n"]) is not int or req["n"] < 1):
                    self._error(400, "a chat request is a JSON object with a list of messages and n >= 1 if any")
                    return
                if req.get("model") not in outer.models + outer.judges:
                    self._error(404, f"the model {req.get('model')!r} does not exist")
                    return
                request = {k: req.get(k) for k in ("model", "messages", "seed", "n")}
                self._answer(req, request, outer._begin(request))

            def _answer(self, req: dict, request: dict, seen: int) -> None:
                fault = outer.fault(request, seen)
                slept: list[float] = []
                if fault != 429:
                    choices = outer.choices(req) if fault is None else 1
                    slept = outer._serve([outer.latency(request, seen, i) for i in range(choices)])
                try:
                    if fault is None:
                        self._send(200, outer._body(req))
                    elif fault == "nonjson":
                        self._send(200, b'{"id": "synthetic", "choices": [')
                    else:
                        self._error(int(fault), f"{fault} on purpose")
                finally:
                    outer._end(slept, fault)

        return Handler

    def __enter__(self) -> "SyntheticOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
