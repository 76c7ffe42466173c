"""Judge prompts: upstream's own texts by default, fusekit's paraphrases as a labelled fallback.

:func:`resolve` picks the prompt for a protocol's role (``pair-v2``, ``arena-hard-v0.1``,
``alpaca-eval-weighted`` …) under the run's ``prompt`` choice: ``upstream`` (the default) reads
upstream's text at run time (:mod:`evals.judges.upstream`, each bench's ``upstream_prompt``),
``fusekit-1`` takes the paraphrase shipped under the same name, and any other value names one
shipped prompt used for every call.

The paraphrases: one YAML file per prompt under ``evals/judges/prompts/``.

The file format, the rendering without ``str.format`` and the prompt record are the one judge
client's (``fusedata.judge``): a file holds ``name`` (its file name), ``version``,
``description``, ``system`` (may be empty), ``user`` and optionally ``labels``. Its ``version``
goes into every ``JudgeRequest`` and hence into the judge cache key, so editing a prompt's wording
must come with a new version. Every occurrence of a slot is filled, not just the first: MT-Bench's
maths multi-turn prompts show each question twice, once above the reference answers and once in
the conversation.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING

from fusedata.config import did_you_mean
from fusedata.errors import FusekitError
from fusedata.judge import JudgePrompt, placeholders, read_prompt, render

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["JudgePrompt", "PROMPT_SETS", "load_prompt", "prompt_names", "placeholders", "render", "resolve",
           "check_choice"]

UPSTREAM = "upstream"
PROMPT_SETS: tuple[str, ...] = (UPSTREAM, "fusekit-1")


def _prompt_dir() -> Traversable:
    return resources.files("evals.judges").joinpath("prompts")


def prompt_names() -> list[str]:
    """Names of the shipped judge prompts, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _prompt_dir().iterdir() if p.name.endswith(".yaml"))


@functools.lru_cache(maxsize=None)
def load_prompt(name: str) -> JudgePrompt:
    """The judge prompt called ``name``; ``FusekitError`` naming the known ones when there is none."""
    names = prompt_names()
    if name not in names:
        raise FusekitError(f"unknown judge prompt '{name}'{did_you_mean(name, names)}; available: {', '.join(names)}")
    return read_prompt(_prompt_dir(), name)


def check_choice(choice: str) -> None:
    """A ``prompt`` value is a prompt set or a shipped prompt's name."""
    if choice not in PROMPT_SETS:
        load_prompt(choice)


def resolve(role: str, choice: str = UPSTREAM, data_dir: str | None = None) -> tuple[JudgePrompt, dict[str, str]]:
    """The prompt for ``role`` under ``choice``, and where it came from (for the manifest)."""
    if choice == UPSTREAM:
        prompt, text = _upstream_prompt(role, data_dir)
        return prompt, {"set": UPSTREAM, "version": prompt.version, "path": text.path, "sha256": text.sha256}
    prompt = load_prompt(role if choice in PROMPT_SETS else choice)
    return prompt, {"set": choice if choice in PROMPT_SETS else "custom", "version": prompt.version,
                    "path": f"fusekit:evals/judges/prompts/{prompt.name}.yaml"}


def _upstream_prompt(role: str, data_dir: str | None):  # noqa: ANN202 - (JudgePrompt, UpstreamText)
    # Imported here: each bench's protocol module imports this one.
    from . import alpaca_eval, arena_hard, mt_bench

    module = arena_hard if role.startswith("arena-hard") else alpaca_eval if role.startswith("alpaca") else mt_bench
    return module.upstream_prompt(role, data_dir)
