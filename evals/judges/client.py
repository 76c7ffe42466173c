"""Where judge requests go: any OpenAI-compatible endpoint, or a transformers model in-process.

Both backends take a list of ``JudgeRequest`` and hand each ``JudgeReply`` to a callback as soon
as it (or its batch) is done, so that the caller stores it at once and a killed run loses only
what was in flight. A failure is a reply with ``error`` set, never an exception that loses the
batch; only an endpoint that cannot be reached at all raises ``FusekitError`` (before any call).

- ``OpenAIJudge``: the ``openai`` client (OpenAI, ``vllm serve``, llama.cpp server…) on top of
  fusedata's OpenAI engine — same reachability check, same retry policy (429/5xx/timeouts with
  exponential backoff and ``Retry-After``), bounded concurrency.
- ``LocalJudge``: text replies through fusedata's transformers engine (greedy when the
  temperature is 0); a request with ``top_logprobs`` gets one forward pass instead, whose
  last-position distribution gives the first token's alternatives, exactly what an endpoint
  returns for ``max_tokens=1, logprobs=True``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fusedata.engines import EngineConfig, GenRequest
from fusedata.errors import FusekitError
from fusedata.records import Prompt, SamplingParams

from ..records import JudgeReply, JudgeRequest

OnReply = Callable[[int, JudgeReply], None]


@dataclass(frozen=True)
class JudgeSpec:
    """A judge: ``model`` is a model reference for the in-process judge, or the served model's
    name when ``base_url`` points to an OpenAI-compatible endpoint."""

    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 8
    timeout: float = 300.0
    max_retries: int = 4
    batch_size: int = 4
    max_tokens: int | None = None  # caps every request's max_tokens (cheap smoke runs); recorded
    prefill: str = ""              # starts every reply (in-process judges only); recorded

    @property
    def name(self) -> str:
        return self.model

    @property
    def kind(self) -> str:
        return "openai" if self.base_url else "transformers"


def make_judge(spec: JudgeSpec) -> "OpenAIJudge | LocalJudge":
    return OpenAIJudge(spec) if spec.base_url else LocalJudge(spec)


def as_sent(req: JudgeRequest, spec: JudgeSpec) -> JudgeRequest:
    """The request as this judge gets it: ``spec.max_tokens`` lowers its budget and
    ``spec.prefill`` starts the reply. Both are part of the cache key, so a capped or
    prefilled smoke run never passes for a full one."""
    max_tokens = min(req.max_tokens, spec.max_tokens) if spec.max_tokens is not None else req.max_tokens
    return dataclasses.replace(req, max_tokens=max_tokens, prefill=spec.prefill or req.prefill)


def first_token_logprobs(choice: Any) -> dict[str, float] | None:
    """token → logprob of the first generated token's alternatives, None when none came back."""
    entries = list(getattr(getattr(choice, "logprobs", None), "content", None) or [])
    if not entries:
        return None
    first = entries[0]
    out: dict[str, float] = {}
    for cand in [*(getattr(first, "top_logprobs", None) or []), first]:
        tok, val = getattr(cand, "token", None), getattr(cand, "logprob", None)
        if isinstance(tok, str) and isinstance(val, (int, float)) and tok not in out:
            out[tok] = float(val)
    return out


class OpenAIJudge:
    def __init__(self, spec: JudgeSpec):
        from fusedata.engines.openai_api import OpenAIEngine

        self.spec = spec
        self.name = spec.name
        try:
            self.engine = OpenAIEngine(EngineConfig(
                name=f"judge {spec.model}", model=spec.model, engine="openai", base_url=spec.base_url,
                api_key_env=spec.api_key_env, concurrency=spec.concurrency, timeout=spec.timeout,
                max_retries=spec.max_retries,
            ))
        except FusekitError as e:
            raise FusekitError(str(e).replace("model 'judge", "judge '", 1)) from None

    def complete(self, requests: list[JudgeRequest], on_reply: OnReply) -> None:
        if any(r.prefill for r in requests):
            raise FusekitError("a judge reply prefill needs an in-process judge; endpoints do not continue it")
        self.engine.loop.run_until_complete(self._complete(requests, on_reply))

    async def _complete(self, requests: list[JudgeRequest], on_reply: OnReply) -> None:
        sem = asyncio.Semaphore(max(1, self.spec.concurrency))

        async def one(i: int, req: JudgeRequest) -> None:
            on_reply(i, await self._one(sem, req))

        await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))

    async def _one(self, sem: asyncio.Semaphore, req: JudgeRequest) -> JudgeReply:
        from fusedata.engines.openai_api import create_with_retries

        kw: dict[str, Any] = dict(model=self.spec.model, messages=req.messages, temperature=req.temperature,
                                  max_tokens=req.max_tokens, n=1)
        if req.top_logprobs:
            kw.update(logprobs=True, top_logprobs=req.top_logprobs)
        t0 = time.perf_counter()
        r, err = await create_with_retries(self.engine.client, sem, kw, self.spec.max_retries)
        secs = time.perf_counter() - t0
        if r is None:
            return JudgeReply(None, error=err, seconds=secs)
        choice = r.choices[0] if r.choices else None
        if choice is None or choice.message is None or choice.message.content is None:
            return JudgeReply(None, error="judge returned no message content", seconds=secs)
        usage = r.usage
        return JudgeReply(
            choice.message.content,
            first_token_logprobs(choice) if req.top_logprobs else None,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            None,
            secs,
        )

    def close(self) -> None:
        self.engine.close()


class LocalJudge:
    def __init__(self, spec: JudgeSpec):
        from fusedata.engines.hf import TransformersEngine

        self.spec = spec
        self.name = spec.name
        try:
            self.engine = TransformersEngine(EngineConfig(name=spec.name, model=spec.model, batch_size=spec.batch_size))
        except FusekitError as e:
            raise FusekitError(f"cannot load judge {spec.model}: {e}") from None
        except (OSError, ValueError) as e:
            raise FusekitError(f"cannot load judge {spec.model}: {e}") from None

    def complete(self, requests: list[JudgeRequest], on_reply: OnReply) -> None:
        text_jobs: dict[tuple[float, int], list[int]] = {}
        for i, req in enumerate(requests):
            if req.top_logprobs:
                on_reply(i, self._logprobs(req))
            else:
                text_jobs.setdefault((req.temperature, req.max_tokens), []).append(i)
        size = max(1, self.spec.batch_size)
        for (temperature, max_tokens), idx in text_jobs.items():
            params = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=max_tokens, n=1, seed=0)
            # Longest prompts together: less padding per batch.
            idx = sorted(idx, key=lambda i: -sum(len(m["content"]) for m in requests[i].messages))
            for start in range(0, len(idx), size):
                chunk = idx[start:start + size]
                gen = [GenRequest(Prompt.make("instruction", "judge", requests[i].messages), (0,), requests[i].prefill)
                       for i in chunk]
                for i, resp in zip(chunk, self.engine.generate(gen, params)):
                    on_reply(i, JudgeReply(resp.text, None, resp.n_input_tokens, resp.n_output_tokens,
                                           resp.error, resp.seconds))

    def _logprobs(self, req: JudgeRequest) -> JudgeReply:
        import torch

        t0 = time.perf_counter()
        tok, model = self.engine.tokenizer, self.engine.model
        try:
            text = tok.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False) + req.prefill
            ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.engine.device)
            with torch.inference_mode():
                logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            top = torch.topk(logp, k=req.top_logprobs)
        except Exception as e:  # noqa: BLE001 - one failed item, the run goes on
            return JudgeReply(None, error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)
        alternatives: dict[str, float] = {}
        for tid, lp in zip(top.indices.tolist(), top.values.tolist()):
            alternatives.setdefault(tok.decode([tid]), float(lp))
        first = tok.decode([int(top.indices[0])])
        return JudgeReply(first, alternatives, int(ids.shape[1]), 1, None, time.perf_counter() - t0)

    def close(self) -> None:
        self.engine.close()
