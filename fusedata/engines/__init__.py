"""Generation engines behind one interface.

An engine turns a batch of ``GenRequest`` (a prompt and which sample indices of it are
still missing) into exactly one ``Response`` per (request, sample index) — a failure
is a ``Response`` with ``error`` set, never an exception that loses the batch and never
an empty text. Engines know nothing of the run store; ``fusedata.generate`` drives them.

- ``transformers`` (``hf.py``): in-process, batched with left padding, the CPU default;
- ``vllm`` (``vllm.py``): offline ``LLM.chat`` with ``SamplingParams(n=…)``, imported lazily;
- ``openai`` (``openai_api.py``): any OpenAI-compatible endpoint through ``fusedata.endpoint``
  (bounded concurrency, retries on 429/5xx/timeouts, a per-request timeout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..endpoint import EndpointSettings
from ..errors import FusekitError
from ..records import Message, Prompt, Response, SamplingParams

ENGINES = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class GenRequest:
    """A prompt and which of its sample indices are still missing. ``prefill`` starts the
    assistant's reply with fixed text that the model continues (in-process engine only); the
    returned text includes it."""

    prompt: Prompt
    sample_indices: tuple[int, ...]
    prefill: str = ""


@dataclass(frozen=True)
class EngineConfig:
    """How to reach one source model; the recipe's per-model block minus its sampling.
    ``endpoint`` is set for ``engine: openai`` only."""

    name: str
    model: str
    engine: str = "transformers"
    endpoint: EndpointSettings | None = None
    batch_size: int = 8
    system_prompt: str | None = None
    fold_system: bool = False
    stop: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    # engine: openai: a prompt's samples in one request with n (None: as long as the server honours it)
    n_per_request: bool | None = None

    @property
    def chunk_size(self) -> int:
        """How many requests to hand the engine at once where work goes in chunks (evals' answers, Ray):
        an endpoint gets enough to keep all its slots busy, an in-process engine one batch."""
        if self.endpoint is None:
            return self.batch_size
        return max(self.batch_size, 4 * self.endpoint.concurrency)


class Engine(Protocol):
    config: EngineConfig

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]: ...

    def close(self) -> None: ...


def chat_messages(prompt: Prompt, config: EngineConfig) -> list[Message]:
    """The messages a model actually sees: optional system prompt, folded into the user
    turn for models whose template rejects the system role (Gemma-2)."""
    msgs = list(prompt.messages)
    if config.system_prompt and not any(m["role"] == "system" for m in msgs):
        msgs = [{"role": "system", "content": config.system_prompt}] + msgs
    if config.fold_system and msgs and msgs[0]["role"] == "system":
        sys_text, rest = msgs[0]["content"], msgs[1:]
        if rest and rest[0]["role"] == "user":
            rest = [{"role": "user", "content": f"{sys_text}\n\n{rest[0]['content']}"}] + rest[1:]
        msgs = rest
    return msgs


def sample_seed(params: SamplingParams, prompt_id: str, sample_idx: int) -> int:
    """A per-sample seed derived from the recipe seed, so a resumed sample is drawn the same way."""
    return (params.seed * 1_000_003 + int(prompt_id[:8], 16) + sample_idx) % (2**31 - 1)


def make_engine(config: EngineConfig) -> Engine:
    if config.engine == "transformers":
        from .hf import TransformersEngine

        return TransformersEngine(config)
    if config.engine == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(config)
    if config.engine == "openai":
        from .openai_api import OpenAIEngine

        return OpenAIEngine(config)
    raise FusekitError(f"model '{config.name}': unknown engine '{config.engine}'; choose one of {', '.join(ENGINES)}")
