"""Loopback HTTP servers that fail on purpose — the one thing a real server here can't be made to do.

Both speak just enough of the OpenAI chat API and listen on 127.0.0.1 only. ``FlakyOpenAI``
fails its first ``fail_first`` chat requests with ``status`` (503 by default) and answers later
ones with a fixed completion; ``ScriptedOpenAI`` answers each call as a script says.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
        self.calls = self.ok = self.in_flight = self.max_in_flight = 0
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
