"""Whether a bench's numbers can stand next to the published leaderboard, and if not, what differs.

A score is leaderboard-comparable only when everything upstream fixes is upstream's: the judge
prompts (read from upstream and pinned), the judge model (uncapped, no prefill), the baseline,
the benchmark data (every file a pinned upstream file, no subset), the generation settings (the
bench's own, no per-model override) and the verdict parser. The verdict is computed from what the
run stored, so ``evals score`` re-derives it; the report, the manifest and the summary table show it.

The judges and their successors are in ``docs/evals.md#judges-and-successors``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusedata.errors import FusekitError

from .judges import alpaca_eval, arena_hard, mt_bench


@dataclass(frozen=True)
class UpstreamJudge:
    """The judge a bench's published leaderboard was scored with, and what to use once it is gone."""

    model: str
    retired: bool = False  # no longer served by its provider's API
    successor: str | None = None  # what `--judge upstream` sends instead of a retired judge
    successor_by: str = ""  # who names the successor: upstream's newer version, or fusekit's choice

    def current(self) -> str:
        return self.successor if self.retired and self.successor else self.model


JUDGES: dict[str, UpstreamJudge] = {
    # FastChat's default judge; MT-Bench's published tables use it.
    "mt-bench": UpstreamJudge(mt_bench.UPSTREAM_JUDGE),
    # gpt-4-1106-preview is retired from the OpenAI API; arena-hard-auto v2.0 names gpt-4.1.
    arena_hard.BENCH_V01: UpstreamJudge(arena_hard.UPSTREAM_JUDGE[arena_hard.BENCH_V01].model, retired=True,
                                        successor=arena_hard.UPSTREAM_JUDGE[arena_hard.BENCH_V2].model,
                                        successor_by="arena-hard-auto v2.0's judge"),
    arena_hard.BENCH_V2: UpstreamJudge(arena_hard.UPSTREAM_JUDGE[arena_hard.BENCH_V2].model),
    # LC's GLM was calibrated with gpt-4-1106-preview; upstream names no successor (alpaca_eval#452).
    "alpaca-eval": UpstreamJudge(alpaca_eval.JUDGE_MODEL, retired=True, successor="gpt-4.1",
                                 successor_by="fusekit's choice (upstream names none)"),
}
# What `--judge upstream` (or no --judge with an API key in the environment) means.
UPSTREAM_JUDGE = "upstream"
OPENAI_URL = "https://api.openai.com/v1"
# Bare names of API models: without an endpoint they cannot be loaded in-process.
_API_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-", "gemini-", "claude-")


@dataclass
class Verdict:
    """``differs`` empty means leaderboard-comparable; each entry names one thing that is not upstream's."""

    differs: list[str] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        return not self.differs

    def text(self) -> str:
        return "yes" if self.comparable else "no: " + "; ".join(self.differs)

    def record(self) -> dict[str, Any]:
        return {"comparable": self.comparable, "differs": list(self.differs)}


def _judge_differs(bench: str, judge: dict[str, Any]) -> list[str]:
    up = JUDGES[bench]
    model = judge.get("model")
    out = []
    if model != up.model:
        why = f"judge {model} (upstream: {up.model}"
        why += ", retired" if up.retired else ""
        why += f"; {model} is its successor by {up.successor_by}" if model == up.successor else ""
        out.append(why + ")")
    if judge.get("max_tokens"):
        out.append(f"judge max_tokens capped at {judge['max_tokens']}")
    if judge.get("prefill"):
        out.append("judge replies prefilled")
    return out


def _prompt_differs(run: dict[str, Any], prompts: dict[str, dict[str, str]]) -> list[str]:
    choice = run.get("prompt") or "upstream"
    if choice != "upstream":
        return [f"judge prompt {choice} (not upstream's text)"]
    other = sorted(role for role, src in prompts.items() if src.get("set") != "upstream")
    return [f"judge prompt(s) {', '.join(other)} not upstream's"] if other else []


def _data_differs(run: dict[str, Any], data: dict[str, str], pins: set[str]) -> list[str]:
    out = []
    if run.get("limit") is not None:
        out.append(f"subset: limit {run['limit']}")
    if run.get("categories"):
        out.append(f"subset: categories {', '.join(run['categories'])}")
    unpinned = sorted(name for name, sha in data.items() if sha not in pins)
    if unpinned:
        out.append(f"data not verified against the pins: {', '.join(unpinned)}")
    return out


def _generation_differs(models: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for name, s in models.items():
        changed = [k for k in ("temperature", "max_tokens", "system_prompt") if s.get(k) is not None]
        if changed:
            out.append(f"{name}: generation {', '.join(changed)} overridden")
    return out


def verdict(bench: str, run: dict[str, Any], judge: dict[str, Any], data: dict[str, str],
            prompts: dict[str, dict[str, str]], models: dict[str, dict[str, Any]], pins: set[str],
            *, parser: str, baseline_ok: bool = True, extra: list[str] | None = None) -> Verdict:
    """The verdict for one scored bench from what its run stored.

    ``pins`` are the sha256 pins of the bench's upstream data files; ``baseline_ok`` is False when the
    run judged against another baseline than upstream's; ``extra`` adds bench-specific differences
    (AlpacaEval's LC not computed, MT-Bench's corrected references).
    """
    differs = [*_prompt_differs(run, prompts), *_judge_differs(bench, judge)]
    if not baseline_ok:
        differs.append("baseline is not upstream's")
    differs += _data_differs(run, data, pins) + _generation_differs(models)
    if parser != "upstream":
        differs.append(f"parser {parser}")
    return Verdict(differs + list(extra or []))


def _is_bare_name(model: str) -> bool:
    return (not model.startswith("embedded:") and "/" not in model and not model.endswith(".gguf")
            and not Path(model).expanduser().exists())


def route_judge(bench: str, model: str, base_url: str | None, env: dict[str, str] | None = None
                ) -> tuple[str, str | None, str]:
    """(model, base_url, how it was routed) for the judge as users of alpaca_eval and arena-hard-auto
    expect: ``upstream`` is the bench's judge (or its successor once retired); an explicit base URL
    wins; a bare model name goes to ``OPENAI_BASE_URL``, else the OpenAI API when ``OPENAI_API_KEY``
    is set; an API model's name without either is refused instead of being looked up on the Hub."""
    env = dict(os.environ) if env is None else env
    if model == UPSTREAM_JUDGE:
        model = JUDGES[bench].current()
    if base_url:
        return model, base_url, "--judge-base-url"
    if not _is_bare_name(model):
        return model, None, "in-process"
    if env.get("OPENAI_BASE_URL"):
        return model, env["OPENAI_BASE_URL"], "OPENAI_BASE_URL"
    if env.get("OPENAI_API_KEY"):
        return model, OPENAI_URL, "OPENAI_API_KEY (OpenAI API)"
    if model.startswith(_API_PREFIXES):
        raise FusekitError(f"judge {model!r} is an API model: set OPENAI_API_KEY for the OpenAI API, or "
                           "OPENAI_BASE_URL (and its key in OPENAI_API_KEY) for another OpenAI-compatible provider, "
                           "or pass --judge-base-url")
    return model, None, "in-process"


def has_api_env(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return bool(env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL"))
