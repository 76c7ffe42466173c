"""The one OpenAI-compatible endpoint client of fusekit (fusedata engines, reward judge, evals).

Settings live in one type, :class:`EndpointSettings`; every path that talks to an
OpenAI-compatible server (``vllm serve``, llama.cpp server, TGI, the OpenAI API) takes one and
goes through one :class:`Endpoint`:

- it is reachable or the run does not start: ``GET /models`` first, an unreachable URL or a
  rejected key is a ``FusekitError`` naming the URL or the key variable (any other status goes
  on: some servers have no ``/models``);
- 408, 409, 429, 5xx, timeouts and dropped connections are retried by the openai client itself
  (``max_retries``, exponential backoff, ``Retry-After`` honoured);
- at most ``concurrency`` requests are on the wire at once. The bound sits on the HTTP client's
  ``send``, inside the openai client's retry loop, so a request waiting out its backoff holds no
  slot and the slots never idle while work is queued;
- ``rpm`` (optional) spaces the sends evenly so that no more than that many leave in any minute,
  retries included: a rate-limited API counts those too;
- requests flow through a sliding window (:meth:`Endpoint.stream`): a new one is submitted the
  moment one completes, with no batch barrier, so one slow request never holds up the others and a
  caller that writes each reply as it arrives loses at most the window when killed. The client's
  event loop runs in its own thread, so several endpoints (one per source model) are busy at once;
- every per-request failure comes back as a :class:`ChatReply` with ``error`` set, never as an
  exception: an HTTP error after the retries, a 200 whose body is not JSON, a reply with no
  choices or ``content: null``, a reset connection. Callers store it and the next run retries it.

What the openai client retries, and what it does not, is in docs/data.md ("OpenAI-compatible endpoints").
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import FusekitError
from .records import Message


@dataclass(frozen=True)
class EndpointSettings:
    """How to reach one served model."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    # One default for generation and judging: a long judge verdict or a 2k-token answer from a
    # busy 70B server can take minutes, and a timeout that fires early wastes the work via retries.
    timeout: float = 300.0
    max_retries: int = 4
    rpm: float | None = None  # requests per minute, retries included; None: no limit

    @property
    def window(self) -> int:
        """Requests submitted at once: twice the slots, so that requests waiting out a retry's backoff
        (which hold no slot) never leave a slot idle."""
        return 2 * self.concurrency


#: the keys a recipe block may set besides base_url and model; unset (None) keeps the default above
ENDPOINT_KEYS = ("api_key_env", "concurrency", "timeout", "max_retries", "rpm")


def endpoint_settings(base_url: str, model: str, where: str, **keys: Any) -> EndpointSettings:
    """Settings from a recipe block's flat keys (``where`` names the block in errors)."""
    given = {k: v for k, v in keys.items() if v is not None}
    unknown = set(given) - set(ENDPOINT_KEYS)
    if unknown:
        raise FusekitError(f"{where}: unknown endpoint key(s) {', '.join(sorted(unknown))}")
    if given.get("concurrency", 1) < 1:
        raise FusekitError(f"{where}.concurrency must be >= 1, got {given['concurrency']}")
    if given.get("max_retries", 0) < 0:
        raise FusekitError(f"{where}.max_retries must be >= 0, got {given['max_retries']}")
    rpm = given.get("rpm", 1.0)
    if not (isinstance(rpm, (int, float)) and rpm > 0 and math.isfinite(rpm)):
        raise FusekitError(f"{where}.rpm must be a positive number of requests per minute, got {rpm}")
    timeout = given.get("timeout", 1.0)
    if not (timeout > 0 and math.isfinite(timeout)):
        raise FusekitError(f"{where}.timeout must be a positive number of seconds, got {timeout}")
    return EndpointSettings(base_url, model, **given)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to ask for. ``top_logprobs > 0`` also asks for the first generated
    token's most likely alternatives; ``extra_body`` carries server-specific parameters."""

    messages: list[Message]
    max_tokens: int
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0
    extra_body: dict[str, Any] | None = None
    n: int = 1  # completions drawn from one request (vLLM shares the prompt's prefill among them)


@dataclass(frozen=True)
class ChatReply:
    """The completion's text, or why there is none (``text`` None, ``error`` set).

    ``top_logprobs`` maps each alternative for the first generated token, as the server spelled
    it, to its log-prob; None unless the request asked for them and the server sent some.
    """

    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    top_logprobs: dict[str, float] | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


OnChatReply = Callable[[int, ChatReply], None]
K = TypeVar("K")


class Endpoint:
    """A connection to one served model: one ``openai.AsyncOpenAI`` on an event loop of its own thread.

    ``label`` names the user of the endpoint in errors (``"model 'qwen'"``, ``"judge 'gpt-4o'"``).
    """

    def __init__(self, settings: EndpointSettings, label: str):
        self.settings, self.label = settings, label
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"endpoint {label}", daemon=True)
        self._thread.start()
        self._client = self._run(self._connect())
        self._probe()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _connect(self) -> Any:
        import openai

        s = self.settings
        # Local servers accept any key; the openai client refuses to start without one.
        key = os.environ.get(s.api_key_env) or "EMPTY"
        return openai.AsyncOpenAI(base_url=s.base_url, api_key=key, timeout=s.timeout, max_retries=s.max_retries,
                                  http_client=_slotted_http_client(max(1, s.concurrency), s.rpm))

    def _probe(self) -> None:
        """Fail before any work when the endpoint cannot be reached at all."""
        import openai

        s = self.settings

        async def probe() -> Any:
            # One try, short: retrying a refused connection would only delay the error.
            return await self._client.with_options(max_retries=0).models.list(timeout=min(s.timeout, 15.0))

        try:
            self._run(probe())
        except openai.APIConnectionError as e:
            self.close()
            raise FusekitError(f"{self.label}: endpoint {s.base_url} is unreachable ({e.__cause__ or e})") from None
        except openai.AuthenticationError:
            self.close()
            raise FusekitError(f"{self.label}: endpoint {s.base_url} rejected the API key (set {s.api_key_env})") \
                from None
        except (openai.APIError, ValueError):
            pass  # some servers have no (or an odd) /models; the chat calls will tell

    def chat(self, requests: Sequence[ChatRequest], on_reply: OnChatReply) -> None:
        """Send every request and hand each reply (its first choice) to ``on_reply(index, reply)`` the
        moment it completes, in the calling thread. Raises only what ``on_reply`` raises."""
        for done in self.stream(enumerate(requests)):
            for i, replies in done:
                on_reply(i, replies[0])

    def stream(self, requests: Iterable[tuple[K, ChatRequest]]) -> Iterator[list[tuple[K, list[ChatReply]]]]:
        """Send ``(key, request)`` pairs through the sliding window; yield, as they complete, the finished
        ``(key, replies)`` — one reply per choice the server sent (a failure is one reply with ``error``).

        The requests are drawn lazily, so a caller can stream millions of them. Stopping the iteration
        early cancels what is still in flight.
        """
        todo = iter(requests)
        pending: dict[Future, K] = {}

        def refill() -> None:
            while len(pending) < self.settings.window:
                item = next(todo, None)
                if item is None:
                    return
                pending[asyncio.run_coroutine_threadsafe(self._chat_one(item[1]), self._loop)] = item[0]

        try:
            refill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                done = [(pending.pop(f), f.result()) for f in finished]
                refill()  # before the caller's write, so the slots stay busy meanwhile
                yield done
        finally:
            for f in pending:
                f.cancel()

    async def _chat_one(self, req: ChatRequest) -> list[ChatReply]:
        t0 = time.perf_counter()
        try:
            completion = await self._client.chat.completions.create(**self._arguments(req))
        except Exception as e:  # noqa: BLE001 - one failed request is a failure record, the run goes on
            return [ChatReply(None, error=describe_error(e), seconds=time.perf_counter() - t0)]
        return read_completion(completion, time.perf_counter() - t0)

    def _arguments(self, req: ChatRequest) -> dict[str, Any]:
        kw: dict[str, Any] = dict(model=self.settings.model, messages=req.messages, temperature=req.temperature,
                                  max_tokens=req.max_tokens)
        if req.n != 1:
            kw["n"] = req.n
        if req.top_p is not None:
            kw["top_p"] = req.top_p
        if req.seed is not None:
            kw["seed"] = req.seed
        if req.stop:
            kw["stop"] = list(req.stop)
        if req.top_logprobs:
            kw.update(logprobs=True, top_logprobs=req.top_logprobs)
        if req.extra_body:
            kw["extra_body"] = req.extra_body
        return kw

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if hasattr(self, "_client"):
            self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _slotted_http_client(concurrency: int, rpm: float | None) -> Any:
    """The openai client's default HTTP client, letting at most ``concurrency`` requests be sent at once
    and, with ``rpm``, starting them at least 60/rpm seconds apart."""
    import openai

    class SlottedClient(openai.DefaultAsyncHttpxClient):
        def __init__(self) -> None:
            super().__init__()
            self.slots = asyncio.Semaphore(concurrency)
            self.gap = 60.0 / rpm if rpm else 0.0
            self.next_start = 0.0

        async def send(self, request: Any, **kwargs: Any) -> Any:
            # The openai client retries around send() and sleeps between tries outside it.
            async with self.slots:
                if self.gap:
                    # Reserved while holding a slot, so sends leave in reservation order, each at its time.
                    now = asyncio.get_running_loop().time()
                    start, self.next_start = max(now, self.next_start), max(now, self.next_start) + self.gap
                    await asyncio.sleep(start - now)
                return await super().send(request, **kwargs)

    return SlottedClient()


def describe_error(e: Exception) -> str:
    """The text a failure record keeps: ``HTTP 429: …`` for a status error, else the exception and its cause."""
    import openai

    if isinstance(e, openai.APIStatusError):
        body = e.body if isinstance(e.body, dict) else {}
        return f"HTTP {e.status_code}: {body.get('message') or e.message}"
    cause = e.__cause__
    why = f" ({str(cause) or type(cause).__name__})" if cause is not None else ""
    return f"{type(e).__name__}: {e}{why}"


def read_completion(completion: Any, seconds: float) -> list[ChatReply]:
    """One ChatReply per choice of what ``chat.completions.create`` returned (a failure: one reply with
    ``error``). The openai client builds its response objects without validating them, so every field is
    read defensively. Usage counts the whole request: each choice gets an even share of its completion
    tokens and of its latency (so that summed seconds stay the time the request held its slot)."""
    if isinstance(completion, str):  # a body that was not JSON, handed back as text
        return [ChatReply(None, error=f"endpoint answered with no chat completion: {completion[:200]!r}",
                          seconds=seconds)]
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        return [ChatReply(None, error="endpoint returned no choices", seconds=seconds)]
    usage = getattr(completion, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", None) or 0
    completion_tokens = getattr(usage, "completion_tokens", None) or 0
    n = len(choices)
    out = []
    for choice in sorted(choices, key=lambda c: getattr(c, "index", 0) or 0):
        content = getattr(getattr(choice, "message", None), "content", None)
        if not isinstance(content, str):
            out.append(ChatReply(None, error="endpoint returned no message content", seconds=seconds / n))
            continue
        out.append(ChatReply(content, getattr(choice, "finish_reason", None), prompt_tokens,
                             round(completion_tokens / n), first_token_logprobs(choice), None, seconds / n))
    return out


def first_token_logprobs(choice: Any) -> dict[str, float] | None:
    """token → log-prob of the first generated token's top alternatives, or of the token itself when
    the server sent no alternatives; None when it sent no log-probs at all.

    As alpaca_eval's logprob parser reads them: only the top list, a token listed twice keeping its
    later value.
    """
    entries = list(getattr(getattr(choice, "logprobs", None), "content", None) or [])
    if not entries:
        return None
    first = entries[0]
    out: dict[str, float] = {}
    for cand in getattr(first, "top_logprobs", None) or [first]:
        tok, val = getattr(cand, "token", None), getattr(cand, "logprob", None)
        if isinstance(tok, str) and isinstance(val, (int, float)):
            out[tok] = float(val)
    return out
