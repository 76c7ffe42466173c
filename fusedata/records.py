"""The typed records every fusekit package shares: Prompt → Response → Score → Pair.

Records are plain dataclasses whose fields are JSON values, so a record is one
``dataclasses.asdict`` away from a JSON line or a SQLite row; ``to_row``/``from_row``
convert to and from the flat row the run store keeps (dict fields as JSON text).

Chat messages follow the Hugging Face / TRL convention: ``[{"role": "user",
"content": "..."}]``.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .errors import FusekitError

Message = dict[str, str]
Domain = Literal["instruction", "math", "code", "zh"]
DOMAINS: tuple[str, ...] = ("instruction", "math", "code", "zh")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every hash in fusekit is taken over."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_id_for(messages: list[Message]) -> str:
    """Stable id of a prompt: sha256 of its NFKC-normalised, whitespace-collapsed messages.

    Two sources carrying the same question with different spacing collapse to one id,
    which is what deduplication across sources relies on.
    """
    norm = [
        {"role": m["role"], "content": " ".join(unicodedata.normalize("NFKC", m["content"]).split())}
        for m in messages
    ]
    return sha256_hex(canonical_json(norm))


@dataclass(frozen=True)
class Prompt:
    """One prompt to send to every source model.

    ``gold`` is the reference final answer (math); ``tests`` is Python test code,
    typically ``assert`` lines, run against a response's code (code). ``meta`` keeps
    whatever else the source row carried that is worth keeping (difficulty, slug...).
    """

    id: str
    domain: str
    source: str
    messages: list[Message]
    gold: str | None = None
    tests: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, domain: str, source: str, messages: list[Message], **kw: Any) -> "Prompt":
        return cls(id=prompt_id_for(messages), domain=domain, source=source, messages=messages, **kw)


@dataclass(frozen=True)
class SamplingParams:
    """Per-source-model sampling settings; ``hash()`` is part of every response key.

    ``n`` is left out of the hash: raising n from 5 to 8 keeps samples 0–4 and draws 3 more.
    """

    temperature: float = 0.8
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    max_tokens: int = 512
    n: int = 1
    seed: int = 0

    def hash(self) -> str:
        d = asdict(self)
        del d["n"]
        return sha256_hex(canonical_json(d))[:16]


@dataclass(frozen=True)
class Response:
    """One sample from one source model for one prompt, or the failure to get it.

    The key is (prompt_id, model, settings_hash, sample_idx). A failed request has
    ``error`` set and ``text`` None; it is never stored as an empty answer.
    """

    prompt_id: str
    model: str
    settings_hash: str
    sample_idx: int
    text: str | None
    finish_reason: str | None = None
    n_input_tokens: int = 0
    n_output_tokens: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.prompt_id, self.model, self.settings_hash, self.sample_idx)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@dataclass(frozen=True)
class Score:
    """What one scorer said about one response.

    ``value`` is the scalar used for ranking (reward, or 1.0/0.0 for a verifier);
    ``label`` is a verifier's verdict (correct/wrong, pass/fail/error/timeout...);
    ``detail`` holds the evidence (extracted answer, tests passed, stderr tail...).
    """

    prompt_id: str
    model: str
    settings_hash: str
    sample_idx: int
    scorer: str
    value: float | None
    label: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Pair:
    """One training example built from scored responses (TRL conversational layout).

    ``chosen`` holds one or more assistant turns (WRPO: [y_ws, y_wt]), ``rejected``
    zero or more; ``weights`` carries per-response weights for weighted methods.
    """

    prompt_id: str
    domain: str
    method: str
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message] = field(default_factory=list)
    chosen_models: list[str] = field(default_factory=list)
    rejected_models: list[str] = field(default_factory=list)
    chosen_scores: list[float] = field(default_factory=list)
    rejected_scores: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


_JSON_FIELDS = {"meta", "detail"}


def to_row(record: Any) -> dict[str, Any]:
    """Record → flat row (dict fields as JSON text)."""
    row = asdict(record)
    for k in _JSON_FIELDS & row.keys():
        row[k] = canonical_json(row[k])
    return row


def from_row(cls: type, row: dict[str, Any]) -> Any:
    """Inverse of ``to_row``; unknown keys in ``row`` are ignored."""
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in row.items() if k in names}
    for k in _JSON_FIELDS & kw.keys():
        if isinstance(kw[k], str):
            kw[k] = json.loads(kw[k])
    return cls(**kw)


def jsonl_rows(lines: Iterable[str], where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank JSONL line; ``where`` names the file in errors."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FusekitError(f"{where}: line {n}: malformed JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise FusekitError(f"{where}: line {n}: expected a JSON object, got {type(row).__name__}")
        yield n, row
