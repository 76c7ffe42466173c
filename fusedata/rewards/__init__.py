"""Reward models behind one interface: score (prompt, response) pairs with a float.

Three kinds, chosen by a small spec dict (the recipe's ``reward:`` block)::

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
  ``seqcls``), so its ``last_errors`` stays empty; a judge fails an item when the
  endpoint keeps failing or its reply holds no rating;
- ``close()`` — free the model / HTTP client (also a context manager).

Bad specs raise ``FusekitError`` naming the offending kind or keys; so does a model that
won't load or a judge endpoint that cannot be reached at construction.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from ..endpoint import EndpointSettings
from ..errors import FusekitError
from ..records import Message

KINDS = ("seqcls", "judge", "none")

# key -> default (None: no default; REQUIRED: must be given)
REQUIRED = object()
SEQCLS_KEYS: dict[str, Any] = {
    "kind": REQUIRED,
    "model": REQUIRED,
    "name": None,
    "batch_size": 8,
    "max_length": 4096,
    "trust_remote_code": False,
    "output": "auto",
    "device": None,  # None: cuda when available, else cpu
    "attn_implementation": None,  # e.g. "eager" for Skywork-Gemma-2-27B (sdpa degrades it)
}
JUDGE_COMMON_KEYS: dict[str, Any] = {"kind": REQUIRED, "model": REQUIRED, "name": None}
JUDGE_LOCAL_KEYS: dict[str, Any] = {"batch_size": 8, "max_length": None, "device": None}
# A judge over an endpoint takes EndpointSettings' keys (its model is the spec's); unset ones keep
# that type's defaults.
JUDGE_HTTP_KEYS: dict[str, Any] = {
    f.name: REQUIRED if f.name == "base_url" else None for f in fields(EndpointSettings) if f.name != "model"
}
SEQCLS_OUTPUTS = ("auto", "logits", "score")


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


def _check_keys(spec: dict, allowed: dict[str, Any], what: str) -> dict[str, Any]:
    unknown = sorted(k for k in spec if k not in allowed)
    if unknown:
        raise FusekitError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {what} reward spec; "
            f"allowed: {', '.join(allowed)}"
        )
    missing = [k for k, v in allowed.items() if v is REQUIRED and k not in spec]
    if missing:
        raise FusekitError(f"{what} reward spec needs {', '.join(map(repr, missing))}")
    return {k: spec.get(k, None if v is REQUIRED else v) for k, v in allowed.items()}


def _positive_int(spec: dict, key: str, minimum: int = 1) -> None:
    v = spec.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise FusekitError(f"reward spec key '{key}' must be an integer >= {minimum}, got {v!r}")


def validate_spec(spec: Any) -> dict[str, Any]:
    """Check a reward spec and return it with defaults filled in (loads nothing)."""
    if not isinstance(spec, dict):
        raise FusekitError(f"a reward spec must be a mapping with a 'kind', got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FusekitError(f"unknown reward kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "none":
        return _check_keys(spec, {"kind": REQUIRED}, "'none'")
    if kind == "seqcls":
        out = _check_keys(spec, SEQCLS_KEYS, "'seqcls'")
        if out["output"] not in SEQCLS_OUTPUTS:
            raise FusekitError(f"seqcls 'output' must be one of {', '.join(SEQCLS_OUTPUTS)}, got {out['output']!r}")
        if not isinstance(out["trust_remote_code"], bool):
            raise FusekitError(f"seqcls 'trust_remote_code' must be true or false, got {out['trust_remote_code']!r}")
        _positive_int(out, "batch_size")
        _positive_int(out, "max_length", 8)
    else:  # judge
        http = "base_url" in spec
        allowed = {**JUDGE_COMMON_KEYS, **(JUDGE_HTTP_KEYS if http else JUDGE_LOCAL_KEYS)}
        other = JUDGE_LOCAL_KEYS if http else JUDGE_HTTP_KEYS
        misplaced = sorted(k for k in spec if k in other and k not in allowed)
        if misplaced:
            where = "an in-process judge (no 'base_url')" if http else "a judge with a 'base_url'"
            raise FusekitError(
                f"judge reward spec key{'s' if len(misplaced) > 1 else ''} {', '.join(map(repr, misplaced))} "
                f"only apply to {where}"
            )
        out = _check_keys(spec, allowed, "'judge'")
        for key in ("batch_size", "concurrency"):
            _positive_int(out, key)
        _positive_int(out, "max_length", 8)
        _positive_int(out, "max_retries", 0)
        if http:
            t = out["timeout"]
            if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0
                                  or not math.isfinite(t)):
                raise FusekitError(f"judge 'timeout' must be a positive number of seconds, got {t!r}")
            if not isinstance(out["base_url"], str) or not out["base_url"]:
                raise FusekitError(f"judge 'base_url' must be a URL, got {out['base_url']!r}")
            key_env = out["api_key_env"]
            if key_env is not None and (not isinstance(key_env, str) or not key_env):
                raise FusekitError(f"judge 'api_key_env' must name an environment variable, got {key_env!r}")
    if not isinstance(out["model"], str) or not out["model"].strip():
        raise FusekitError(f"{kind} reward spec 'model' must be a non-empty string, got {out['model']!r}")
    if out["name"] is not None and (not isinstance(out["name"], str) or not out["name"]):
        raise FusekitError(f"reward spec 'name' must be a non-empty string, got {out['name']!r}")
    return out


def scorer_name(spec: dict) -> str | None:
    """The name a reward model's scores carry in the run store, known without loading it (the
    driver of a cluster run needs it to find pending work). A judge's prompt version is part of
    the name: a new prompt means new scores."""
    cfg = validate_spec(spec)
    if cfg["kind"] == "none":
        return None
    if cfg["kind"] == "seqcls":
        from .seqcls import seqcls_name

        return seqcls_name(cfg)
    from .judge import judge_name, reward_prompt

    return f"{judge_name(cfg)}@{reward_prompt().version}"


def make_reward(spec: dict) -> RewardModel | None:
    """Build the reward model a spec describes; ``None`` for ``{"kind": "none"}``."""
    cfg = validate_spec(spec)
    if cfg["kind"] == "none":
        return None
    if cfg["kind"] == "seqcls":
        from .seqcls import SeqClsReward

        return SeqClsReward(cfg)
    from .judge import JudgeReward

    return JudgeReward(cfg)


__all__ = ["KINDS", "RewardModel", "make_reward", "scorer_name", "validate_spec"]
