"""Small prompt sets shipped inside the package (``fusedata/data/*.jsonl``): no network.

Written for fusekit (not taken from any dataset), each a few dozen items easy enough
that a 135M-parameter chat model gets some right and some wrong:

* ``embedded:math``        ``{"id", "question", "answer"}``; gold = ``answer`` (plain string).
* ``embedded:code``        ``{"id", "task", "entry_point", "tests"}``; ``tests`` is a list
  of ``assert`` lines calling ``entry_point``.
* ``embedded:instruction`` ``{"id", "prompt"}``; short English instructions.
* ``embedded:zh``          ``{"id", "prompt"}``; short Chinese instructions.

``data_files`` may point at local JSONL files with the same fields instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Callable, Iterator

from fusedata.errors import FusekitError
from fusedata.records import Prompt, jsonl_rows
from fusedata.sources.hub import Item, RowView, code_prompt, data_file_list, math_prompt, user


def _math(r: RowView) -> Item:
    question = r.text("question")
    answer = r.text("answer")
    if question is None:
        return "empty question"
    if answer is None:
        return "empty answer"
    return Prompt.make("math", r.source, math_prompt(question), gold=answer, meta=r.meta(source_id="id"))


def _code(r: RowView) -> Item:
    task = r.text("task")
    entry_point = r.text("entry_point")
    tests = r.text_list("tests")
    if task is None:
        return "empty task"
    if tests is None:
        return "no tests"
    meta = r.meta(source_id="id")
    if entry_point:
        meta["entry_point"] = entry_point
    return Prompt.make("code", r.source, code_prompt(task, entry_point), tests="\n".join(tests), meta=meta)


def _prompt(domain: str) -> Callable[[RowView], Item]:
    def build(r: RowView) -> Item:
        text = r.text("prompt")
        if text is None:
            return "empty prompt"
        return Prompt.make(domain, r.source, [user(text)], meta=r.meta(source_id="id"))

    return build


@dataclass(frozen=True)
class EmbeddedSource:
    """A prompt set read from the package data (or from ``data_files`` with the same fields)."""

    name: str
    domain: str
    package_file: str
    fields: tuple[str, ...]
    build: Callable[[RowView], Item]
    description: str
    kind: str = "embedded"
    hub_id: None = None
    split: None = None

    def read_package_text(self) -> str:
        return resources.files("fusedata").joinpath("data").joinpath(self.package_file).read_text("utf-8")

    def items(
        self, data_files: str | list[str] | None = None, split: str | None = None
    ) -> Iterator[tuple[int, Item]]:
        if data_files is None:
            texts = [(f"package data fusedata/data/{self.package_file}", self.read_package_text())]
        else:
            texts = []
            for path in data_file_list(self.name, data_files):
                if not path.lower().endswith(".jsonl"):
                    raise FusekitError(f"source {self.name!r}: cannot read {path!r}: expected a .jsonl file")
                with open(path, encoding="utf-8") as f:
                    texts.append((f"file {path}", f.read()))
        index = 0
        for where, text in texts:
            for _, row in jsonl_rows(text.splitlines(), f"source {self.name!r} ({where})"):
                view = RowView(self.name, where, index, row)
                for field in self.fields:  # fail on the first row lacking a field, naming it
                    if field not in row:
                        view.text(field)
                yield index, self.build(view)
                index += 1


EMBEDDED_SOURCES: tuple[EmbeddedSource, ...] = (
    EmbeddedSource(
        "embedded:math", "math", "math.jsonl", ("id", "question", "answer"), _math,
        "One-step arithmetic and word problems with plain-string gold answers.",
    ),
    EmbeddedSource(
        "embedded:code", "code", "code.jsonl", ("id", "task", "entry_point", "tests"), _code,
        "Tiny Python function tasks, each with 3-5 assert lines.",
    ),
    EmbeddedSource(
        "embedded:instruction", "instruction", "instruction.jsonl", ("id", "prompt"), _prompt("instruction"),
        "Short general instructions in English.",
    ),
    EmbeddedSource(
        "embedded:zh", "zh", "zh.jsonl", ("id", "prompt"), _prompt("zh"),
        "Short general instructions in Chinese.",
    ),
)
