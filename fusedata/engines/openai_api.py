"""Any OpenAI-compatible chat endpoint (OpenAI, ``vllm serve``, llama.cpp server, TGI…).

One request per sample: several servers (llama.cpp among them) answer ``n>1`` with a
single choice, and per-sample requests give every sample its own seed and its own
failure record. Requests run concurrently under a semaphore; 429, 5xx, timeouts and
dropped connections are retried with exponential backoff (honouring ``Retry-After``);
other errors (400, 401, 404) fail the sample at once. A failure is returned as a
``Response`` with ``error`` set, so the run store keeps it and the next run retries it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from ..errors import FusekitError
from ..records import Response, SamplingParams
from . import EngineConfig, GenRequest, chat_messages, sample_seed

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


def api_key(config: EngineConfig) -> str:
    env = config.api_key_env or "OPENAI_API_KEY"
    # Local servers accept any key; the openai client refuses to start without one.
    return os.environ.get(env) or "EMPTY"


class OpenAIEngine:
    def __init__(self, config: EngineConfig):
        import openai

        self.config = config
        self._openai = openai
        self.loop = asyncio.new_event_loop()
        self.client = self.loop.run_until_complete(self._make_client())
        self._check_reachable()

    async def _make_client(self):
        return self._openai.AsyncOpenAI(
            base_url=self.config.base_url, api_key=api_key(self.config), timeout=self.config.timeout, max_retries=0
        )

    def _check_reachable(self) -> None:
        """Fail before generating anything when the endpoint cannot be reached at all."""

        async def probe():
            return await self.client.models.list(timeout=min(self.config.timeout, 15.0))

        try:
            self.loop.run_until_complete(probe())
        except self._openai.APIConnectionError as e:
            self.close()
            raise FusekitError(
                f"model '{self.config.name}': endpoint {self.config.base_url} is unreachable ({e.__cause__ or e})"
            ) from None
        except self._openai.AuthenticationError:
            self.close()
            env = self.config.api_key_env or "OPENAI_API_KEY"
            raise FusekitError(f"model '{self.config.name}': endpoint {self.config.base_url} rejected the API key (set {env})") from None
        except self._openai.APIStatusError:
            pass  # some servers have no /models; the chat calls will tell

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]:
        return self.loop.run_until_complete(self._generate(requests, params))

    async def _generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]:
        sem = asyncio.Semaphore(max(1, self.config.concurrency))
        jobs = [self._one(sem, req, i, params) for req in requests for i in req.sample_indices]
        return list(await asyncio.gather(*jobs))

    async def _one(self, sem: asyncio.Semaphore, req: GenRequest, idx: int, params: SamplingParams) -> Response:
        kw = dict(
            model=self.config.model,
            messages=chat_messages(req.prompt, self.config),
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=sample_seed(params, req.prompt.id, idx),
        )
        if self.config.stop:
            kw["stop"] = list(self.config.stop)
        if params.repetition_penalty != 1.0:
            # Not in the OpenAI API; vLLM reads repetition_penalty, llama.cpp repeat_penalty.
            kw["extra_body"] = {"repetition_penalty": params.repetition_penalty, "repeat_penalty": params.repetition_penalty}
        t0 = time.perf_counter()
        r, err = await create_with_retries(self.client, sem, kw, self.config.max_retries)
        if r is not None:
            choice = r.choices[0] if r.choices else None
            if choice is None or choice.message.content is None:
                err = "endpoint returned no message content"
            else:
                usage = r.usage
                return Response(
                    req.prompt.id, self.config.name, params.hash(), idx, choice.message.content.strip(),
                    choice.finish_reason, usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0, None, time.perf_counter() - t0,
                )
        return Response(req.prompt.id, self.config.name, params.hash(), idx, None, error=err)

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.client.close())
            self.loop.close()


async def create_with_retries(client: Any, sem: asyncio.Semaphore, kw: dict, max_retries: int) -> tuple[Any, str]:
    """``chat.completions.create`` under the retry policy: (response, "") or (None, the last error)."""
    import openai as o

    last_err = "no attempt made"
    for attempt in range(max_retries + 1):
        delay = None
        try:
            async with sem:
                return await client.chat.completions.create(**kw), ""
        except (o.APITimeoutError, o.APIConnectionError) as e:
            last_err = f"{type(e).__name__}: {e}" + (f" ({e.__cause__})" if e.__cause__ else "")
        except o.APIStatusError as e:
            body = e.body if isinstance(e.body, dict) else {}
            last_err = f"HTTP {e.status_code}: {body.get('message') or e.message}"
            if e.status_code not in RETRYABLE_STATUS:
                break
            delay = _retry_after(e)
        if attempt < max_retries:
            await asyncio.sleep(delay if delay is not None else min(20.0, 0.5 * 2**attempt) * (0.5 + random.random()))
    return None, last_err


def _retry_after(e: Exception) -> float | None:
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    try:
        return min(60.0, float(headers.get("retry-after")))
    except (TypeError, ValueError):
        return None
