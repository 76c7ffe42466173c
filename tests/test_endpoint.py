"""The one endpoint client against loopback servers that fail in set ways (tests/servers.py):
what is retried and what is not, Retry-After, every per-request failure as a record, the
concurrency bound, and the reachability probe."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fusedata.endpoint import ChatReply, ChatRequest, Endpoint, EndpointSettings
from fusedata.errors import FusekitError
from tests.conftest import free_port
from tests.servers import ScriptedOpenAI

ASK = ChatRequest([{"role": "user", "content": "What is 7 + 5?"}], max_tokens=8)


def script(*actions):
    """Chat call n gets actions[n]; calls past the end get a normal completion."""
    return lambda n: actions[n] if n < len(actions) else "ok"


def chat(url: str, requests: list[ChatRequest], **settings) -> list[ChatReply]:
    endpoint = Endpoint(EndpointSettings(url, "m", **settings), "model 'm'")
    replies: list[ChatReply | None] = [None] * len(requests)
    try:
        endpoint.chat(requests, lambda i, r: replies.__setitem__(i, r))
    finally:
        endpoint.close()
    assert all(r is not None for r in replies)
    return replies  # type: ignore[return-value]


def test_429_is_retried_after_the_retry_after_delay():
    with ScriptedOpenAI(script(429), retry_after="1") as srv:
        [reply] = chat(srv.url, [ASK])
    assert reply.ok and reply.text == "The answer is \\boxed{12}." and srv.calls == 2
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (7, 5, "stop")
    assert srv.times[1] - srv.times[0] >= 0.95  # the server asked for a second


@pytest.mark.parametrize("status", [500, 503, 408, 409])
def test_5xx_408_409_are_retried(status):
    with ScriptedOpenAI(script(status)) as srv:
        [reply] = chat(srv.url, [ASK])
    assert reply.ok and srv.calls == 2


def test_retries_stop_when_the_budget_is_spent():
    with ScriptedOpenAI(lambda n: 500) as srv:
        [reply] = chat(srv.url, [ASK], max_retries=1)
    assert not reply.ok and reply.text is None and reply.error == "HTTP 500: 500 on purpose" and srv.calls == 2


def test_400_is_not_retried():
    with ScriptedOpenAI(script(400)) as srv:
        [reply] = chat(srv.url, [ASK], max_retries=3)
    assert reply.error == "HTTP 400: 400 on purpose" and srv.calls == 1


@pytest.mark.parametrize("action, error", [
    ("nonjson", "JSONDecodeError: "),
    ("html", "endpoint answered with no chat completion: '<html>"),
    ("no-choices", "endpoint returned no choices"),
    ("null-content", "endpoint returned no message content"),
])
def test_a_bad_200_is_a_failure_record_and_the_rest_goes_on(action, error):
    questions = [ChatRequest([{"role": "user", "content": f"question {i}"}], max_tokens=8) for i in range(3)]
    with ScriptedOpenAI(script(action)) as srv:
        replies = chat(srv.url, questions, concurrency=1)
    bad = [r for r in replies if not r.ok]
    assert len(bad) == 1 and bad[0].text is None and bad[0].error.startswith(error)
    assert sum(r.ok for r in replies) == 2 and srv.calls == 3  # a 200 is never retried


def test_a_reset_connection_is_retried_then_recorded():
    with ScriptedOpenAI(script("reset")) as srv:
        [reply] = chat(srv.url, [ASK])
    assert reply.ok and srv.calls == 2
    with ScriptedOpenAI(lambda n: "reset") as srv:
        [reply] = chat(srv.url, [ASK], max_retries=1)
    assert reply.error.startswith("APIConnectionError: ") and srv.calls == 2


def test_a_timeout_is_a_failure_record():
    with ScriptedOpenAI(lambda n: "slow", slow_seconds=3.0) as srv:
        [reply] = chat(srv.url, [ASK], timeout=0.5, max_retries=0)
    assert reply.error.startswith("APITimeoutError: ") and srv.calls == 1


def test_concurrency_bound_is_respected_and_reached():
    questions = [ChatRequest([{"role": "user", "content": f"question {i}"}], max_tokens=8) for i in range(12)]
    with ScriptedOpenAI(script(), delay=0.2) as srv:
        replies = chat(srv.url, questions, concurrency=3)
    assert all(r.ok for r in replies) and srv.calls == 12
    assert srv.max_in_flight == 3


def test_a_request_waiting_out_its_backoff_holds_no_slot():
    # One slot: the first request gets a 429 asking for 1 s; the second is sent during that wait.
    questions = [ChatRequest([{"role": "user", "content": f"question {i}"}], max_tokens=8) for i in range(2)]
    with ScriptedOpenAI(script(429), retry_after="1") as srv:
        replies = chat(srv.url, questions, concurrency=1)
    assert all(r.ok for r in replies) and srv.calls == 3
    assert srv.times[1] - srv.times[0] < 0.5 <= srv.times[2] - srv.times[0]


def test_first_token_logprobs_are_read_from_the_reply():
    top = [{"token": " 7", "logprob": -0.5, "bytes": None}, {"token": "8", "logprob": -1.0, "bytes": None}]
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": " 7"},
                         "logprobs": {"content": [{**top[0], "top_logprobs": top}]}}]}
    seen: list[dict] = []
    with _FixedServer(body, seen) as url:
        [reply] = chat(url, [ChatRequest([{"role": "user", "content": "rate"}], 1, top_logprobs=2)])
    assert reply.top_logprobs == {" 7": -0.5, "8": -1.0} and reply.text == " 7"
    assert (seen[0]["logprobs"], seen[0]["top_logprobs"], seen[0]["max_tokens"]) == (True, 2, 1)


def test_first_token_logprobs_read_the_top_list_as_alpaca_eval_does():
    from types import SimpleNamespace as NS

    from fusedata.endpoint import first_token_logprobs

    top = [NS(token="m", logprob=-0.5), NS(token="M", logprob=-1.0), NS(token="m", logprob=-0.7)]
    sampled = NS(token="x", logprob=-3.0, top_logprobs=top)  # sampled outside the top list: not read
    assert first_token_logprobs(NS(logprobs=NS(content=[sampled]))) == {"m": -0.7, "M": -1.0}
    only = NS(token="M", logprob=-0.1, top_logprobs=[])  # a server that sends no alternatives
    assert first_token_logprobs(NS(logprobs=NS(content=[only]))) == {"M": -0.1}
    assert first_token_logprobs(NS(logprobs=None)) is None


def test_unreachable_endpoint_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(FusekitError, match=f"judge 'j': endpoint {url} is unreachable"):
        Endpoint(EndpointSettings(url, "m", timeout=5), "judge 'j'")


def test_rejected_key_names_the_variable_and_a_missing_models_route_goes_on():
    with _FixedServer({"error": {"message": "bad key"}}, [], status=401) as url:
        with pytest.raises(FusekitError, match="rejected the API key \\(set MY_KEY\\)"):
            Endpoint(EndpointSettings(url, "m", api_key_env="MY_KEY"), "model 'm'")
    with _FixedServer({"error": {"message": "no such route"}}, [], status=404) as url:
        Endpoint(EndpointSettings(url, "m"), "model 'm'").close()


class _FixedServer:
    """Answers every request with one fixed JSON body and status; records the chat request bodies."""

    def __init__(self, body: dict, seen: list[dict], status: int = 200):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send()

            def do_POST(self):
                seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self._send()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
