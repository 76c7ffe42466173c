"""Judge prompts: one YAML file per prompt under ``evals/judges/prompts/``, rendered without ``str.format``.

A prompt file holds ``name`` (its file name), ``version``, ``description``, ``system`` (may be
empty), ``user`` and optionally ``labels`` (the verdict strings the judge is told to write). Its
``version`` goes into every ``JudgeRequest`` and hence into the judge cache key, so editing a
prompt's wording must come with a new version.

Templates name their slots ``{identifier}``; any other brace is literal text (AlpacaEval's
template embeds a pseudo-JSON list). :func:`render` substitutes plain strings in a single pass
over the template, so a value that itself contains ``{answer_b}`` is never substituted again.
Every occurrence of a slot is filled, not just the first: MT-Bench's maths multi-turn prompts
show each question twice, once above the reference answers and once in the conversation.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import yaml

from fusedata.errors import FusekitError
from fusedata.records import Message

from ..records import JudgeRequest

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["JudgePrompt", "load_prompt", "prompt_names", "placeholders", "render"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FIELDS = ("name", "version", "description", "system", "user")


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

    def request(
        self,
        values: Mapping[str, str],
        *,
        temperature: float,
        max_tokens: int,
        top_logprobs: int = 0,
    ) -> JudgeRequest:
        """A judge request from everything a protocol can offer; the prompt takes what it uses.

        Protocols pass all the values they have, so that a prompt chosen by name may use any
        subset of them. A slot nothing fills means the prompt does not fit the protocol or the
        question (say a maths prompt for a question without reference answers): ``FusekitError``.
        """
        missing = [n for n in self.placeholders if n not in values]
        if missing:
            offered = ", ".join(sorted(values)) or "nothing"
            raise FusekitError(
                f"judge prompt {self.name!r} needs {', '.join(missing)}, which this request cannot "
                f"provide (it has: {offered})"
            )
        used = {n: values[n] for n in self.placeholders}
        return JudgeRequest(
            messages=self.messages(**used),
            prompt=self.name,
            prompt_version=self.version,
            temperature=temperature,
            max_tokens=max_tokens,
            top_logprobs=top_logprobs,
        )


def _prompt_dir() -> Traversable:
    return resources.files("evals.judges").joinpath("prompts")


def prompt_names() -> list[str]:
    """Names of the shipped judge prompts, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _prompt_dir().iterdir() if p.name.endswith(".yaml"))


def _from_yaml(name: str, data: object) -> JudgePrompt:
    # A malformed shipped file is a packaging bug, hence ValueError rather than FusekitError.
    where = f"judge prompt file {name}.yaml"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - {*_FIELDS, "labels"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in _FIELDS:
        if not isinstance(data.get(key), str):
            raise ValueError(f"{where}: {key!r} must be a string")
    if data["name"] != name:
        raise ValueError(f"{where}: 'name' is {data['name']!r}, expected the file name {name!r}")
    if not data["user"]:
        raise ValueError(f"{where}: 'user' must not be empty")
    labels = data.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{where}: 'labels' must be a list of strings")
    return JudgePrompt(
        name=name,
        version=data["version"],
        system=data["system"],
        user=data["user"],
        labels=tuple(labels),
        description=data["description"],
    )


@functools.lru_cache(maxsize=None)
def load_prompt(name: str) -> JudgePrompt:
    """The judge prompt called ``name``; ``FusekitError`` naming the known ones when there is none."""
    names = prompt_names()
    if name not in names:
        near = difflib.get_close_matches(name, names, n=1)
        tip = f" (did you mean '{near[0]}'?)" if near else ""
        raise FusekitError(f"unknown judge prompt '{name}'{tip}; available: {', '.join(names)}")
    text = _prompt_dir().joinpath(f"{name}.yaml").read_text("utf-8")
    return _from_yaml(name, yaml.safe_load(text))
