"""The judge prompts shipped with evals: one YAML file per prompt under ``evals/judges/prompts/``.

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

__all__ = ["JudgePrompt", "load_prompt", "prompt_names", "placeholders", "render"]


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
