"""Join prompts, responses and scores into per-prompt candidate lists (pure, no I/O).

A :class:`Candidate` is one usable response with what the scorers said about it:
``reward`` from the reward scorer (an ``rm:...`` or ``judge:...`` scorer), and
``verified`` from the domain's verifier (math: value 1.0 = correct; code: label
"passed" / all tests pass). ``verified`` is None where no verdict exists (an
unverified domain, a "skipped" verifier, or a score that carries an error).

The builders in this package (FuseChat-3.0, WRPO, FuseRL) all start from the
``dict[prompt_id, list[Candidate]]`` that :func:`gather` returns.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..records import Message, Prompt, Response, Score

VERIFIED_DOMAINS: frozenset[str] = frozenset({"math", "code"})
REWARD_PREFIXES: tuple[str, ...] = ("rm:", "judge:")


@dataclass(frozen=True)
class Candidate:
    """One usable response to ``prompt`` with its reward and verifier verdict."""

    prompt: Prompt
    model: str
    sample_idx: int
    text: str
    reward: float | None = None
    verified: bool | None = None
    finish_reason: str | None = None
    settings_hash: str = ""
    verifier_label: str | None = None

    @property
    def domain(self) -> str:
        return self.prompt.domain

    @property
    def prompt_id(self) -> str:
        return self.prompt.id

    def message(self) -> Message:
        """The response as a fresh assistant message (never shares a dict with another row)."""
        return {"role": "assistant", "content": self.text}

    def describe(self) -> dict[str, Any]:
        """What an example's ``meta`` records about this response."""
        return {"model": self.model, "sample_idx": self.sample_idx, "reward": self.reward,
                "verified": self.verified, "verifier_label": self.verifier_label,
                "settings_hash": self.settings_hash}


class CandidateSet(dict):
    """``dict[prompt_id, list[Candidate]]`` plus ``dropped``: response counts per drop reason.

    Every prompt passed to :func:`gather` is a key, possibly with an empty list, so that
    builders can report prompts that had no usable response.
    """

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.dropped: Counter[str] = Counter()
        self.reward_scorer: str | None = None


def reward_scorer_of(scores: Iterable[Score]) -> str | None:
    """The single reward scorer name (``rm:``/``judge:`` prefix) present in ``scores``.

    Raises ValueError when several are present: the caller must choose one.
    """
    return reward_scorer_among(s.scorer for s in scores)


def reward_scorer_among(scorers: Iterable[str]) -> str | None:
    """:func:`reward_scorer_of` from scorer names alone."""
    names = sorted({s for s in scorers if s.startswith(REWARD_PREFIXES)})
    if len(names) > 1:
        raise ValueError(f"several reward scorers present, pass reward_scorer= one of {names}")
    return names[0] if names else None


def _verdict(domain: str, s: Score | None) -> bool | None:
    if s is None or s.error is not None or s.value is None or s.label == "skipped":
        return None
    if domain == "math":
        return s.value >= 1.0
    if domain == "code":
        return s.label == "passed" or s.value >= 1.0
    return None


ScoreIndex = dict[tuple[str, str, str, int, str], Score]


def index_scores(scores: Iterable[Score]) -> ScoreIndex:
    """Scores without an error, by (response key, scorer)."""
    return {(s.prompt_id, s.model, s.settings_hash, s.sample_idx, s.scorer): s for s in scores if s.error is None}


def make_candidate(p: Prompt, r: Response, scores: ScoreIndex, reward_scorer: str | None, *,
                   keep_truncated: bool = False) -> Candidate | str:
    """Response ``r`` to ``p`` as a candidate, or the reason it is dropped (see :func:`gather`)."""
    if not r.ok:
        return "error"
    if r.finish_reason == "length" and not keep_truncated:
        return "truncated"
    if not (r.text or "").strip():
        return "empty"
    key = (r.prompt_id, r.model, r.settings_hash, r.sample_idx)
    rs = scores.get((*key, reward_scorer)) if reward_scorer else None
    reward = rs.value if rs is not None and rs.value is not None and math.isfinite(rs.value) else None
    vs = scores.get((*key, p.domain)) if p.domain in VERIFIED_DOMAINS else None
    return Candidate(
        prompt=p, model=r.model, sample_idx=r.sample_idx, text=r.text or "", reward=reward,
        verified=_verdict(p.domain, vs), finish_reason=r.finish_reason, settings_hash=r.settings_hash,
        verifier_label=vs.label if vs is not None else None,
    )


def candidate_order(c: Candidate) -> tuple[str, int, str]:
    """The order of a prompt's candidates: (model, sample_idx, settings_hash)."""
    return (c.model, c.sample_idx, c.settings_hash)


def gather(
    prompts: Iterable[Prompt],
    responses: Iterable[Response],
    scores: Iterable[Score],
    reward_scorer: str | None = None,
    *,
    keep_truncated: bool = False,
) -> CandidateSet:
    """Join records into ``{prompt_id: [Candidate, ...]}`` sorted by (model, sample_idx).

    Dropped responses are counted in ``result.dropped`` by reason: ``error`` (failed
    request), ``truncated`` (finish_reason "length"), ``empty`` (blank text),
    ``unknown_prompt`` (no such prompt). Scores with ``error`` set are ignored (not
    scored; ``keep_truncated`` keeps "length" finishes). ``reward_scorer=None`` picks the one
    ``rm:``/``judge:`` scorer present.
    The verifier for a prompt is the scorer named like its domain ("math", "code").
    """
    scores = list(scores)
    if reward_scorer is None:
        reward_scorer = reward_scorer_of(scores)
    by_key = index_scores(scores)
    out = CandidateSet()
    out.reward_scorer = reward_scorer
    pmap: dict[str, Prompt] = {}
    for p in prompts:
        pmap[p.id] = p
        out.setdefault(p.id, [])
    for r in responses:
        p = pmap.get(r.prompt_id)
        c = ("unknown_prompt" if p is None
             else make_candidate(p, r, by_key, reward_scorer, keep_truncated=keep_truncated))
        if isinstance(c, str):
            out.dropped[c] += 1
        else:
            out[p.id].append(c)
    for lst in out.values():
        lst.sort(key=candidate_order)
    return out


# -- helpers shared by the builders ----------------------------------------------------------

def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (sha256; independent of PYTHONHASHSEED)."""
    h = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _r(c: Candidate, missing: float) -> float:
    return c.reward if c.reward is not None else missing


def best(cands: list[Candidate], *, verified_first: bool = False) -> Candidate:
    """Highest (verified, reward); ties → alphabetically first model, then lowest sample index."""
    return min(cands, key=lambda c: (-(1 if verified_first and c.verified else 0), -_r(c, -math.inf),
                                     c.model, c.sample_idx))


def worst(cands: list[Candidate], *, verified_first: bool = False) -> Candidate:
    """Lowest (verified, reward); ties → alphabetically first model, then lowest sample index."""
    return min(cands, key=lambda c: ((1 if verified_first and c.verified else 0), _r(c, math.inf),
                                     c.model, c.sample_idx))


def softmax(values: list[float], tau: float = 1.0) -> list[float]:
    """Numerically stable softmax(values / tau); sums to 1."""
    if tau <= 0:
        raise ValueError("tau must be > 0")
    if not values:
        return []
    z = [v / tau for v in values]
    mx = max(z)
    e = [math.exp(x - mx) for x in z]
    s = sum(e)
    return [x / s for x in e]


def median(*parts: array) -> float:
    """``statistics.median`` of the values of ``parts`` one after the other (the same float, ties kept in
    order) without a list of Python floats: the sorted copy is one numpy array, 8 bytes a value."""
    import numpy as np

    s = np.concatenate([np.frombuffer(p) for p in parts])
    s.sort(kind="stable")
    i = len(s) // 2
    return float(s[i]) if len(s) % 2 else (float(s[i - 1]) + float(s[i])) / 2


@dataclass
class BuildReport:
    """Kept/dropped counts per stage and domain, with drop reasons; JSON via ``to_dict``."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, Counter] = field(default_factory=dict)
    dropped: dict[str, dict[str, Counter]] = field(default_factory=dict)
    split: dict[str, Counter] = field(default_factory=dict)
    responses_dropped: dict[str, int] = field(default_factory=dict)
    #: the builder's parts in the order it lists them: each domain's ``split`` follows it whatever order
    #: the prompts came in (a builder that takes all SFT prompts first and one that streams agree)
    parts: tuple[str, ...] = ()

    def keep(self, stage: str, domain: str, n: int = 1) -> None:
        self.kept.setdefault(stage, Counter())[domain] += n

    def drop(self, stage: str, domain: str, reason: str, n: int = 1) -> None:
        self.dropped.setdefault(stage, {}).setdefault(domain, Counter())[reason] += n

    def assign(self, domain: str, part: str) -> None:
        self.split.setdefault(domain, Counter())[part] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "split": {d: self._in_part_order(c) for d, c in sorted(self.split.items())},
            "kept": {s: dict(sorted(c.items())) for s, c in sorted(self.kept.items())},
            "dropped": {s: {d: dict(sorted(c.items())) for d, c in sorted(v.items())}
                        for s, v in sorted(self.dropped.items())},
            "responses_dropped": dict(self.responses_dropped),
        }

    def _in_part_order(self, c: Counter) -> dict[str, int]:
        rank = {p: i for i, p in enumerate(self.parts)}
        return dict(sorted(c.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def base_meta(c: Candidate) -> dict[str, Any]:
    return {"source_dataset": c.prompt.source}


def prompt_messages(p: Prompt) -> list[Message]:
    """A fresh copy of the prompt's messages (rows never share dicts)."""
    return [dict(m) for m in p.messages]
