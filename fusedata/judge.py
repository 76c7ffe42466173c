"""The one LLM judge client of fusekit: evals' judges and fusedata's generative reward both use it.

A judge is a model plus a prompt file. Prompt files are YAML (``name``, ``version``,
``description``, ``system``, ``user``, optional ``labels``), rendered without ``str.format``:
slots are ``{identifier}``, any other brace is literal text, and :func:`render` fills them in a
single pass, so a value holding ``{answer_b}`` is never substituted again. A prompt's
``version`` goes into every :class:`JudgeRequest` and hence into its cache key: editing the
wording must come with a new version.

:func:`make_judge` gives one of two backends behind one call, ``complete(requests, on_reply)``,
which hands each :class:`JudgeReply` to ``on_reply(index, reply)`` as soon as it (or its batch)
is done, so callers store it at once and a killed run loses only what was in flight. A failure
is a reply with ``error`` set, never an exception; only a judge that cannot be loaded or
reached at all raises ``FusekitError`` (before any call).

- :class:`EndpointJudge`: any OpenAI-compatible endpoint through ``fusedata.endpoint``
  (bounded concurrency, retries, failure records); a request with ``top_logprobs`` gets the
  first token's alternatives as the server returns them (``logprobs=True``).
- :class:`LocalJudge`: a transformers model in-process. Text replies go through the
  transformers engine (greedy at temperature 0). Requests with ``top_logprobs`` or
  ``candidates`` are answered by one forward pass per length-sorted, right-padded batch
  instead: the distribution after the prompt is exactly what an endpoint samples the first
  token from (``max_tokens=1, logprobs=True``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import yaml

from .endpoint import ChatReply, ChatRequest, Endpoint, EndpointSettings
from .engines import EngineConfig, GenRequest
from .errors import FusekitError
from .records import Message, Prompt, SamplingParams, canonical_json, sha256_hex

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


# ====================================================================== records
@dataclass(frozen=True)
class JudgeRequest:
    """One call to a judge: the rendered messages plus sampling settings and the prompt used.

    ``top_logprobs > 0`` asks for the first generated token's most likely alternatives
    (AlpacaEval's weighted judge reads the preference from them). ``candidates`` asks instead
    for the full first-token log-prob of each given text: an in-process judge adds up every
    vocabulary token that reads as it (whitespace stripped), while an endpoint, which can only
    return its top alternatives, answers with those. ``prefill`` starts the judge's reply with
    fixed text it continues (in-process judges), e.g. ``"Rating: [["`` for a small model that
    otherwise never writes the verdict format; the reply text includes it.
    """

    messages: list[Message]
    prompt: str
    prompt_version: str
    temperature: float = 0.0
    max_tokens: int = 2048
    top_logprobs: int = 0
    prefill: str = ""
    candidates: tuple[str, ...] = ()

    def key(self, judge: str) -> str:
        """Cache key: a hash of (judge model, messages, sampling settings, prompt name and version)."""
        fields = asdict(self)
        if not self.candidates:  # added after caches were first written: absent when unused, so their keys hold
            del fields["candidates"]
        return sha256_hex(canonical_json({"judge": judge, **fields}))


@dataclass(frozen=True)
class JudgeReply:
    """What a judge returned for one request, or why it failed (``text`` None, ``error`` set).

    ``top_logprobs`` maps each candidate first token (as the judge spelled it) to its log-prob.
    """

    text: str | None
    top_logprobs: dict[str, float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


OnReply = Callable[[int, JudgeReply], None]


# ====================================================================== prompt files
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PROMPT_FIELDS = ("name", "version", "description", "system", "user")


def placeholders(template: str) -> tuple[str, ...]:
    """The slot names of a template, in order of first appearance."""
    return tuple(dict.fromkeys(_PLACEHOLDER.findall(template)))


def render(template: str, **values: str) -> str:
    """Fill every ``{name}`` slot of ``template`` with ``values[name]``; other braces stay as they are.

    ``ValueError`` when a slot has no value or a value has no slot: both are mistakes in the
    calling code, not in user input.
    """
    names = placeholders(template)
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"no value for placeholder(s) {', '.join(missing)} of the template")
    unused = sorted(set(values) - set(names))
    if unused:
        raise ValueError(f"the template has no placeholder(s) {', '.join(unused)}")
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"placeholder {name} needs a str, got {type(value).__name__}")
    # One pass over the template: substituted text is never scanned again.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class JudgePrompt:
    """One judge prompt as loaded from its YAML file."""

    name: str
    version: str
    system: str
    user: str
    labels: tuple[str, ...] = ()
    description: str = ""

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Slot names used by the system and user templates together."""
        return tuple(dict.fromkeys(placeholders(self.system) + placeholders(self.user)))

    def messages(self, **values: str) -> list[Message]:
        """Chat messages with the slots filled: a system message only when the prompt has one.

        Every value must fill a slot of the system or the user template, and every slot needs
        a value (``ValueError`` otherwise).
        """
        unused = sorted(set(values) - set(self.placeholders))
        if unused:
            raise ValueError(f"judge prompt {self.name!r} has no placeholder(s) {', '.join(unused)}")
        messages: list[Message] = []
        if self.system:
            system_values = {k: values[k] for k in placeholders(self.system) if k in values}
            messages.append({"role": "system", "content": render(self.system, **system_values)})
        user_values = {k: values[k] for k in placeholders(self.user) if k in values}
        messages.append({"role": "user", "content": render(self.user, **user_values)})
        return messages

    def request(self, values: Mapping[str, str], *, temperature: float, max_tokens: int, top_logprobs: int = 0,
                candidates: tuple[str, ...] = ()) -> JudgeRequest:
        """A judge request from everything a protocol can offer; the prompt takes what it uses.

        Protocols pass all the values they have, so that a prompt chosen by name may use any
        subset of them. A slot nothing fills means the prompt does not fit the protocol or the
        question (say a maths prompt for a question without reference answers): ``FusekitError``.
        """
        missing = [n for n in self.placeholders if n not in values]
        if missing:
            offered = ", ".join(sorted(values)) or "nothing"
            raise FusekitError(f"judge prompt {self.name!r} needs {', '.join(missing)}, which this request cannot "
                               f"provide (it has: {offered})")
        used = {n: values[n] for n in self.placeholders}
        return JudgeRequest(messages=self.messages(**used), prompt=self.name, prompt_version=self.version,
                            temperature=temperature, max_tokens=max_tokens, top_logprobs=top_logprobs,
                            candidates=candidates)


def read_prompt(folder: Traversable, name: str) -> JudgePrompt:
    """The prompt file ``folder/name.yaml``. A malformed shipped file is a packaging bug, hence
    ``ValueError`` rather than ``FusekitError``."""
    data = yaml.safe_load(folder.joinpath(f"{name}.yaml").read_text("utf-8"))
    where = f"judge prompt file {name}.yaml"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - {*_PROMPT_FIELDS, "labels"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in _PROMPT_FIELDS:
        if not isinstance(data.get(key), str):
            raise ValueError(f"{where}: {key!r} must be a string")
    if data["name"] != name:
        raise ValueError(f"{where}: 'name' is {data['name']!r}, expected the file name {name!r}")
    if not data["user"]:
        raise ValueError(f"{where}: 'user' must not be empty")
    labels = data.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{where}: 'labels' must be a list of strings")
    return JudgePrompt(name=name, version=data["version"], system=data["system"], user=data["user"],
                       labels=tuple(labels), description=data["description"])


# ====================================================================== settings
@dataclass(frozen=True)
class JudgeSettings:
    """A judge: ``model`` is a model reference for the in-process judge, or the served model's
    name when ``endpoint`` points to an OpenAI-compatible server.

    ``max_tokens`` caps every request's budget (cheap smoke runs) and ``prefill`` starts every
    reply (in-process judges only); both are recorded. ``batch_size``, ``max_length`` (longest
    judge input in tokens; default the model's context) and ``device`` apply in-process.
    """

    model: str
    endpoint: EndpointSettings | None = None
    batch_size: int = 4
    max_tokens: int | None = None
    prefill: str = ""
    max_length: int | None = None
    device: str | None = None

    @property
    def name(self) -> str:
        return self.model


def as_sent(req: JudgeRequest, settings: JudgeSettings) -> JudgeRequest:
    """The request as this judge gets it: ``settings.max_tokens`` lowers its budget and
    ``settings.prefill`` starts the reply. Both are part of the cache key, so a capped or
    prefilled smoke run never passes for a full one."""
    max_tokens = req.max_tokens if settings.max_tokens is None else min(req.max_tokens, settings.max_tokens)
    return dataclasses.replace(req, max_tokens=max_tokens, prefill=settings.prefill or req.prefill)


# ====================================================================== backends
class EndpointJudge:
    def __init__(self, settings: JudgeSettings, endpoint: EndpointSettings):
        self.settings, self.name = settings, settings.name
        self.endpoint = Endpoint(endpoint, f"judge '{settings.model}'")

    def complete(self, requests: list[JudgeRequest], on_reply: OnReply) -> None:
        if any(r.prefill for r in requests):
            raise FusekitError("a judge reply prefill needs an in-process judge; endpoints do not continue it")
        chats = [ChatRequest(r.messages, r.max_tokens, r.temperature, top_logprobs=r.top_logprobs) for r in requests]

        def keep(i: int, c: ChatReply) -> None:
            logprobs = c.top_logprobs if requests[i].top_logprobs else None
            on_reply(i, JudgeReply(c.text, logprobs, c.prompt_tokens, c.completion_tokens, c.error, c.seconds))

        self.endpoint.chat(chats, keep)

    def close(self) -> None:
        self.endpoint.close()


class LocalJudge:
    def __init__(self, settings: JudgeSettings):
        from .engines.hf import TransformersEngine

        self.settings, self.name = settings, settings.name
        extra = {"device": settings.device} if settings.device else {}
        try:
            self.engine = TransformersEngine(EngineConfig(name=settings.name, model=settings.model,
                                                          batch_size=settings.batch_size, extra=extra))
        except (FusekitError, OSError, ValueError) as e:
            raise FusekitError(f"cannot load judge {settings.model}: {e}") from None
        if not self.engine.has_chat_template:
            raise FusekitError(f"judge model {settings.model} has no chat template")
        self.max_length = settings.max_length or self.engine.max_length

    def complete(self, requests: list[JudgeRequest], on_reply: OnReply) -> None:
        first_token = {i for i, r in enumerate(requests) if r.top_logprobs or r.candidates}
        self._first_tokens(requests, sorted(first_token), on_reply)
        self._texts(requests, [i for i in range(len(requests)) if i not in first_token], on_reply)

    def _texts(self, requests: list[JudgeRequest], idx: list[int], on_reply: OnReply) -> None:
        """Text replies through the engine, batched per (temperature, max_tokens)."""
        text_jobs: dict[tuple[float, int], list[int]] = {}
        for i in idx:
            text_jobs.setdefault((requests[i].temperature, requests[i].max_tokens), []).append(i)
        size = max(1, self.settings.batch_size)
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

    def _first_tokens(self, requests: list[JudgeRequest], idx: list[int], on_reply: OnReply) -> None:
        """The first-token distribution of each request, batched; an over-long prompt fails alone."""
        encoded: dict[int, list[int]] = {}
        for i in idx:
            try:
                ids = self.engine.encode_chat(requests[i].messages, requests[i].prefill)
            except Exception as e:  # noqa: BLE001 - e.g. a template that refuses these roles: this item fails
                on_reply(i, JudgeReply(None, error=f"{type(e).__name__}: {e}"))
                continue
            if len(ids) > self.max_length:
                on_reply(i, JudgeReply(None, error=f"judge prompt is {len(ids)} tokens, over "
                                                   f"max_length={self.max_length}"))
            else:
                encoded[i] = ids
        order = sorted(encoded, key=lambda i: -len(encoded[i]))
        size = max(1, self.settings.batch_size)
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            t0 = time.perf_counter()
            try:
                logprobs = self.engine.next_token_logprobs([encoded[i] for i in chunk])
            except Exception as e:  # noqa: BLE001 - the batch fails as replies, the run goes on
                for i in chunk:
                    on_reply(i, JudgeReply(None, error=f"{type(e).__name__}: {e}"))
                continue
            secs = (time.perf_counter() - t0) / len(chunk)
            for row, i in enumerate(chunk):
                on_reply(i, self._first_token_reply(requests[i], logprobs[row], len(encoded[i]), secs))

    def _first_token_reply(self, req: JudgeRequest, logprobs: Any, n_input: int, seconds: float) -> JudgeReply:
        import torch

        alternatives: dict[str, float] = {}
        if req.candidates:
            for text in req.candidates:
                ids = [t for t in self.engine.token_ids_reading(text) if t < logprobs.shape[0]]
                if ids:
                    alternatives[text] = float(torch.logsumexp(logprobs[ids], dim=0))
        else:
            top = torch.topk(logprobs, k=req.top_logprobs)
            for tid, lp in zip(top.indices.tolist(), top.values.tolist()):
                alternatives.setdefault(self.engine.token_text(tid), float(lp))
        first = self.engine.token_text(int(torch.argmax(logprobs)))
        return JudgeReply(first, alternatives, n_input, 1, None, seconds)

    def close(self) -> None:
        self.engine.close()


Judge = EndpointJudge | LocalJudge


def make_judge(settings: JudgeSettings) -> Judge:
    """The judge ``settings`` describe, loaded or reached (``FusekitError`` when it can't be)."""
    return EndpointJudge(settings, settings.endpoint) if settings.endpoint else LocalJudge(settings)
