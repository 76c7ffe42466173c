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
- every per-request failure comes back as a :class:`ChatReply` with ``error`` set, never as an
  exception: an HTTP error after the retries, a 200 whose body is not JSON, a reply with no
  choices or ``content: null``, a reset connection. Callers store it and the next run retries it.

What the openai client retries, and what it does not, is in docs/data.md ("OpenAI-compatible endpoints").
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


#: the keys a recipe block may set besides base_url and model; unset (None) keeps the default above
ENDPOINT_KEYS = ("api_key_env", "concurrency", "timeout", "max_retries")


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


class Endpoint:
    """A connection to one served model: an asyncio loop and one ``openai.AsyncOpenAI`` on it.

    ``label`` names the user of the endpoint in errors (``"model 'qwen'"``, ``"judge 'gpt-4o'"``).
    """

    def __init__(self, settings: EndpointSettings, label: str):
        self.settings, self.label = settings, label
        self._loop = asyncio.new_event_loop()
        self._client = self._loop.run_until_complete(self._connect())
        self._probe()

    async def _connect(self) -> Any:
        import openai

        s = self.settings
        # Local servers accept any key; the openai client refuses to start without one.
        key = os.environ.get(s.api_key_env) or "EMPTY"
        return openai.AsyncOpenAI(base_url=s.base_url, api_key=key, timeout=s.timeout, max_retries=s.max_retries,
                                  http_client=_slotted_http_client(max(1, s.concurrency)))

    def _probe(self) -> None:
        """Fail before any work when the endpoint cannot be reached at all."""
        import openai

        s = self.settings

        async def probe() -> Any:
            # One try, short: retrying a refused connection would only delay the error.
            return await self._client.with_options(max_retries=0).models.list(timeout=min(s.timeout, 15.0))

        try:
            self._loop.run_until_complete(probe())
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
        """Send every request and hand each reply to ``on_reply(index, reply)`` the moment it
        completes, so that callers keep results as they arrive. Raises only what ``on_reply`` raises."""
        if requests:
            self._loop.run_until_complete(self._chat_all(requests, on_reply))

    async def _chat_all(self, requests: Sequence[ChatRequest], on_reply: OnChatReply) -> None:
        async def one(i: int, req: ChatRequest) -> None:
            on_reply(i, await self._chat_one(req))

        await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))

    async def _chat_one(self, req: ChatRequest) -> ChatReply:
        t0 = time.perf_counter()
        try:
            completion = await self._client.chat.completions.create(**self._arguments(req))
        except Exception as e:  # noqa: BLE001 - one failed request is a failure record, the run goes on
            return ChatReply(None, error=describe_error(e), seconds=time.perf_counter() - t0)
        return read_completion(completion, time.perf_counter() - t0)

    def _arguments(self, req: ChatRequest) -> dict[str, Any]:
        kw: dict[str, Any] = dict(model=self.settings.model, messages=req.messages, temperature=req.temperature,
                                  max_tokens=req.max_tokens)
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
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()


def _slotted_http_client(concurrency: int) -> Any:
    """The openai client's default HTTP client, letting at most ``concurrency`` requests be sent at once."""
    import openai

    class SlottedClient(openai.DefaultAsyncHttpxClient):
        def __init__(self) -> None:
            super().__init__()
            self.slots = asyncio.Semaphore(concurrency)

        async def send(self, request: Any, **kwargs: Any) -> Any:
            # The openai client retries around send() and sleeps between tries outside it.
            async with self.slots:
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


def read_completion(completion: Any, seconds: float) -> ChatReply:
    """A ChatReply from what ``chat.completions.create`` returned. The openai client builds its
    response objects without validating them, so every field is read defensively."""
    if isinstance(completion, str):  # a body that was not JSON, handed back as text
        return ChatReply(None, error=f"endpoint answered with no chat completion: {completion[:200]!r}",
                         seconds=seconds)
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        return ChatReply(None, error="endpoint returned no choices", seconds=seconds)
    choice = choices[0]
    content = getattr(getattr(choice, "message", None), "content", None)
    if not isinstance(content, str):
        return ChatReply(None, error="endpoint returned no message content", seconds=seconds)
    usage = getattr(completion, "usage", None)
    return ChatReply(content, getattr(choice, "finish_reason", None), getattr(usage, "prompt_tokens", None) or 0,
                     getattr(usage, "completion_tokens", None) or 0, first_token_logprobs(choice), None, seconds)


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
