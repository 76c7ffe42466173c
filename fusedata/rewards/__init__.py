"""Reward models behind one interface: score (prompt, response) pairs with a float.

Three kinds, chosen by a small spec dict (the recipe's ``reward:`` block), checked into a typed
config (``SeqclsRewardConfig``, ``JudgeRewardConfig``, ``NoRewardConfig``) by ``validate_spec``::

    {"kind": "seqcls", "model": REF}                   # HF sequence-classification RM (Skywork, ArmoRM…)
    {"kind": "judge", "model": REF}                    # LLM judge in-process (transformers)
    {"kind": "judge", "model": NAME, "base_url": URL}  # LLM judge over any OpenAI-compatible endpoint
    {"kind": "none"}                                   # no reward model: make_reward returns None

Every reward model has:

- ``name`` — a stable id used as the scorer name (``rm:<model>``, ``judge:<model>``; a
  spec's ``name`` key overrides it);
- ``score(prompt, responses) -> list[float]`` — one prompt, several responses;
- ``score_many(items) -> list[float]`` — ``(prompt, response)`` pairs across prompts,
  batched; gives the same values as ``score`` item by item;
- ``last_errors: dict[int, str]`` — after each ``score``/``score_many`` call, the reason
  for every item that could not be scored, keyed by its index in that call. Such an
  item's value is ``float('nan')``; it is never dropped, so indices always line up.
  A sequence classifier scores every item (over-long ones are truncated, see
  ``seqcls``), except ArmoRM pairs whose truncation cut off the assistant header its
  gate reads; a judge fails an item when the endpoint keeps failing or its reply holds
  no rating;
- ``close()`` — free the model / HTTP client (also a context manager).

Bad specs raise ``FusekitError`` naming the offending kind or keys; so does a model that
won't load or a judge endpoint that cannot be reached at construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..config import build, did_you_mean
from ..endpoint import ENDPOINT_KEYS, EndpointSettings, endpoint_settings
from ..errors import FusekitError
from ..records import Message

KINDS = ("seqcls", "judge", "none")


@dataclass(frozen=True)
class SeqclsRewardConfig:
    """A ``kind: seqcls`` reward block."""

    model: str
    kind: Literal["seqcls"] = "seqcls"
    name: str | None = None
    batch_size: int = 8
    max_length: int = 4096
    trust_remote_code: bool = False
    output: Literal["auto", "logits", "score"] = "auto"
    device: str | None = None  # None: cuda when available, else cpu
    attn_implementation: str | None = None  # e.g. "eager" for Skywork-Gemma-2-27B (sdpa degrades it)


@dataclass(frozen=True)
class JudgeRewardConfig:
    """A ``kind: judge`` reward block: in-process without ``base_url``, over an endpoint with one.
    Unset endpoint keys keep ``EndpointSettings``' defaults."""

    model: str
    kind: Literal["judge"] = "judge"
    name: str | None = None
    # in-process only
    batch_size: int = 8
    max_length: int | None = None
    device: str | None = None
    # endpoint only
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    rpm: float | None = None  # requests per minute (rate-limited APIs)

    def endpoint(self, where: str = "reward") -> EndpointSettings | None:
        """The endpoint the judge talks to; ``None`` for an in-process judge."""
        if self.base_url is None:
            return None
        return endpoint_settings(self.base_url, self.model, where, **{k: getattr(self, k) for k in ENDPOINT_KEYS})


@dataclass(frozen=True)
class NoRewardConfig:
    """``kind: none``: no reward model."""

    kind: Literal["none"] = "none"


RewardConfig = SeqclsRewardConfig | JudgeRewardConfig | NoRewardConfig
_CONFIGS: dict[str, type] = {"seqcls": SeqclsRewardConfig, "judge": JudgeRewardConfig, "none": NoRewardConfig}
_JUDGE_LOCAL_KEYS = ("batch_size", "max_length", "device")
_JUDGE_ENDPOINT_KEYS = ("base_url", *ENDPOINT_KEYS)


class RewardModel:
    """Base class: subclasses implement ``score_many`` (and ``close`` when they hold resources)."""

    name: str = "reward"

    def __init__(self) -> None:
        self.last_errors: dict[int, str] = {}

    def score(self, prompt: list[Message], responses: list[str]) -> list[float]:
        return self.score_many([(prompt, r) for r in responses])

    def score_many(self, items: list[tuple[list[Message], str]]) -> list[float]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "RewardModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _check_judge_keys(spec: dict, where: str) -> None:
    """Refuse keys of the other judge form: an endpoint judge has no batch size, an in-process one no URL."""
    http = "base_url" in spec
    misplaced = sorted(k for k in spec if k in (_JUDGE_LOCAL_KEYS if http else _JUDGE_ENDPOINT_KEYS))
    if misplaced:
        form = "an in-process judge (no 'base_url')" if http else "a judge with a 'base_url'"
        raise FusekitError(f"{where}: judge reward spec key{'s' if len(misplaced) > 1 else ''} "
                           f"{', '.join(map(repr, misplaced))} only apply to {form}")


def _check_values(cfg: SeqclsRewardConfig | JudgeRewardConfig, where: str) -> None:
    for key, minimum in (("batch_size", 1), ("max_length", 8)):
        value = getattr(cfg, key)
        if value is not None and value < minimum:
            raise FusekitError(f"{where}: '{key}' must be an integer >= {minimum}, got {value!r}")
    for key in ("model", "name", "base_url", "api_key_env"):
        value = getattr(cfg, key, None)
        if value is not None and not value.strip():
            raise FusekitError(f"{where}: '{key}' must be a non-empty string")
    if isinstance(cfg, JudgeRewardConfig):
        cfg.endpoint(where)  # checks its numbers


def validate_spec(spec: Any, where: str = "reward") -> RewardConfig:
    """The typed config of a reward block (loads nothing); an already typed config is returned as is.
    ``where`` names the block in errors."""
    if isinstance(spec, (SeqclsRewardConfig, JudgeRewardConfig, NoRewardConfig)):
        return spec
    if not isinstance(spec, dict):
        raise FusekitError(f"{where}: a reward spec must be a mapping with a 'kind', got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FusekitError(f"{where}: unknown reward kind {kind!r}{did_you_mean(kind, KINDS) if kind else ''}; "
                           f"known: {', '.join(KINDS)}")
    if kind == "judge":
        _check_judge_keys(spec, where)
    cfg = build(_CONFIGS[kind], spec, where)
    if not isinstance(cfg, NoRewardConfig):
        _check_values(cfg, where)
    return cfg


def scorer_name(spec: dict | RewardConfig) -> str | None:
    """The name a reward model's scores carry in the run store, known without loading it (the
    driver of a cluster run needs it to find pending work). A judge's prompt version is part of
    the name: a new prompt means new scores."""
    cfg = validate_spec(spec)
    if isinstance(cfg, NoRewardConfig):
        return None
    if isinstance(cfg, SeqclsRewardConfig):
        from .seqcls import seqcls_name

        return seqcls_name(cfg)
    from .judge import judge_name, reward_prompt

    return f"{judge_name(cfg)}@{reward_prompt().version}"


def make_reward(spec: dict | RewardConfig) -> RewardModel | None:
    """Build the reward model a spec describes; ``None`` for ``{"kind": "none"}``."""
    cfg = validate_spec(spec)
    if isinstance(cfg, NoRewardConfig):
        return None
    if isinstance(cfg, SeqclsRewardConfig):
        from .seqcls import SeqClsReward

        return SeqClsReward(cfg)
    from .judge import JudgeReward

    return JudgeReward(cfg)


__all__ = ["KINDS", "JudgeRewardConfig", "NoRewardConfig", "RewardConfig", "RewardModel", "SeqclsRewardConfig",
           "make_reward", "scorer_name", "validate_spec"]
