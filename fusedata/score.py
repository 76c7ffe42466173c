"""Scoring stage of ``fusedata build`` (or ``fusedata score RUN_DIR``): responses → scores.

Each response gets one score per scorer its domain lists — ``math`` (final answer vs
gold, math-verify), ``code`` (tests run in the sandbox), ``reward`` (the recipe's reward
model or generative judge). Scores are stored in the run store keyed by (response key,
scorer); a re-run scores only what is missing. Items that cannot be scored (a math
prompt with no gold, a code task with no tests) are stored as ``skipped`` with their
reason, never retried and never silently dropped; transient failures (a timeout in
math-verify, a judge that returned nothing) are stored with ``error`` and retried.

Pending work is read from the store a page at a time in key order (``RunStore.unscored``) and the
statistics from a stream of score values, so memory stays flat however large the run.
"""

from __future__ import annotations

import functools
import math
import statistics
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from .cluster import Executor, LocalExecutor
from .errors import FusekitError
from .recipe import ScoringConfig, verifier_kwargs
from .records import DOMAINS, Prompt, Response, Score
from .store import RunStore

if TYPE_CHECKING:
    from .rewards import RewardConfig


@dataclass
class ScoreReport:
    new: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    reward_error: str | None = None
    isolation: str = ""


class _Chunks:
    """``items`` in chunks of ``size``, read as they are consumed; ``len`` is known up front (``total``
    items) for the executor and the progress bar."""

    def __init__(self, items: Iterable, total: int, size: int):
        self.items, self.total, self.size = items, total, size

    def __len__(self) -> int:
        return -(-self.total // self.size)

    def __iter__(self) -> Iterator[list]:
        chunk: list = []
        for x in self.items:
            chunk.append(x)
            if len(chunk) == self.size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _score(r: Response, scorer: str, value: float | None, label: str | None, detail: dict,
           error: str | None = None) -> Score:
    return Score(r.prompt_id, r.model, r.settings_hash, r.sample_idx, scorer, value, label, detail, error)


def _math_scores(batch: list[Response], prompts: dict[str, Prompt], cfg: ScoringConfig) -> list[Score]:
    from .verifiers import verify_math_batch

    results = verify_math_batch([(r.text, prompts[r.prompt_id].gold) for r in batch], **verifier_kwargs(cfg.math))
    out = []
    for r, res in zip(batch, results):
        d = res.to_dict()
        if res.label == "error" and prompts[r.prompt_id].gold is None:
            out.append(_score(r, "math", None, "skipped", d))
        elif res.label == "timeout":
            out.append(_score(r, "math", None, "timeout", d, error=res.reason or "math-verify timed out"))
        else:
            out.append(_score(r, "math", 1.0 if res.correct else 0.0, res.label, d))
    return out


def _code_scores(batch: list[Response], prompts: dict[str, Prompt], cfg: ScoringConfig) -> list[Score]:
    from .verifiers import verify_code_batch

    results = verify_code_batch([(r.text, prompts[r.prompt_id].tests) for r in batch], **verifier_kwargs(cfg.code))
    out = []
    for r, res in zip(batch, results):
        d = res.to_dict()
        if res.label == "error" and not prompts[r.prompt_id].tests:
            out.append(_score(r, "code", None, "skipped", d))
        else:
            # A timeout is the program's fault (it looped): a final failing score, not an error to retry.
            ran = res.label in ("passed", "failed") and res.tests_total
            out.append(_score(r, "code", res.tests_passed / res.tests_total if ran else 0.0, res.label, d))
    return out


class VerifierWorker:
    """Math or code verification of a chunk of (response, prompt) pairs."""

    def __init__(self, kind: str, cfg: ScoringConfig):
        self.fn = _math_scores if kind == "math" else _code_scores
        self.cfg = cfg

    def __call__(self, chunk: list[tuple[Response, Prompt]]) -> list[Score]:
        return self.fn([r for r, _ in chunk], {p.id: p for _, p in chunk}, self.cfg)

    def close(self) -> None:
        pass


class RewardWorker:
    """One replica of the reward model, loaded where the worker runs."""

    def __init__(self, spec: RewardConfig, name: str):
        from .rewards import make_reward

        self.rm = make_reward(spec)
        self.name = name

    def __call__(self, chunk: list[tuple[Response, Prompt]]) -> list[Score]:
        vals = self.rm.score_many([(p.messages, r.text) for r, p in chunk])
        errs = getattr(self.rm, "last_errors", {}) or {}
        return [
            _score(r, self.name, None, None, {}, error=errs.get(i, "no score"))
            if v is None or math.isnan(v) else _score(r, self.name, float(v), None, {})
            for i, ((r, _), v) in enumerate(zip(chunk, vals))
        ]

    def close(self) -> None:
        self.rm.close()


def score_run(store: RunStore, cfg: ScoringConfig, console: Console, executor: Executor | None = None) -> ScoreReport:
    """Score every response that is missing a score from a scorer its domain lists."""
    from .generate import progress_bar
    from .rewards import scorer_name

    executor = executor or LocalExecutor()
    rep = ScoreReport()
    domains_seen: set[str] = set()
    for p in store.iter_prompts():
        domains_seen.add(p.domain)
        for s in cfg.domains.get(p.domain, []):
            if s == "math" and p.gold is None:
                rep.errors.append(f"math prompt {p.id[:12]} ({p.source}) has no gold answer: its responses are skipped")
            if s == "code" and not p.tests:
                rep.errors.append(f"code prompt {p.id[:12]} ({p.source}) has no tests: its responses are skipped")

    def run(kind: str, name: str, make_worker) -> None:
        # In key order, not store order: a cluster run stores responses as they land, and the same
        # chunks (hence the same padding in a reward model's batches) must give the same scores.
        domains = [d for d, v in cfg.domains.items() if kind in v]
        total = store.count_unscored(name, domains)
        if not total:
            return
        if kind == "code":
            from .verifiers import sandbox_isolation

            rep.isolation = sandbox_isolation(detail=True)
        task = bar.add_task(f"score: {name}", total=total, tokens=0, failed=0)
        chunks = _Chunks(store.unscored(name, domains), total, cfg.batch_size)
        stream = executor.map(make_worker, chunks, cfg.resources(kind))
        try:
            for scores in stream:
                store.put_scores(scores)
                rep.new[kind] += len(scores)
                bar.update(task, advance=len(scores),
                           failed=bar.tasks[task].fields["failed"] + sum(s.error is not None for s in scores))
        finally:
            stream.close()

    with progress_bar(console) as bar:
        for kind in ("math", "code"):
            run(kind, kind, functools.partial(VerifierWorker, kind, cfg))
        reward_domains = {d for d, v in cfg.domains.items() if "reward" in v}
        if reward_domains & domains_seen:
            try:
                name = scorer_name(cfg.reward_config)
                if name:
                    run("reward", name, functools.partial(RewardWorker, cfg.reward_config, name))
            except FusekitError as e:  # the model would not load: the run goes on without rewards
                rep.reward_error = f"reward scores not computed: {e}"
    store.set_meta("scoring", {"reward": cfg.reward, "domains": cfg.domains, "isolation": rep.isolation})
    return rep


def domain_stats(store: RunStore) -> dict[str, dict[str, Any]]:
    """Per domain: responses, math accuracy, code pass rate, reward distribution."""
    by_dom: dict[str, dict[str, Any]] = {}
    n_resp = store.response_counts()
    verdicts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (domain, scorer) -> [correct, n]
    rewards: dict[str, array] = defaultdict(lambda: array("d"))
    skipped: dict[str, int] = defaultdict(int)
    for domain, scorer, value, label in store.iter_score_values(ok_only=True):
        if label == "skipped":
            skipped[domain] += 1
        elif scorer in ("math", "code"):
            v = verdicts[(domain, scorer)]
            v[0] += label in ("correct", "passed")
            v[1] += 1
        elif value is not None:
            rewards[domain].append(value)
    for d in sorted(n_resp, key=lambda d: DOMAINS.index(d)):
        v = rewards.get(d, array("d"))
        acc = verdicts.get((d, "math")) or verdicts.get((d, "code"))
        by_dom[d] = {
            "responses": n_resp[d],
            "verified": acc[1] if acc else 0,
            "accuracy": acc[0] / acc[1] if acc else None,
            "skipped": skipped.get(d, 0),
            "reward_n": len(v),
            "reward_mean": statistics.fmean(v) if v else None,
            "reward_std": statistics.pstdev(v) if len(v) > 1 else None,
            "reward_min": min(v) if v else None,
            "reward_max": max(v) if v else None,
        }
    return by_dom


def score_table(stats: dict[str, dict[str, Any]]) -> Table:
    def f(x: float | None, pct: bool = False) -> str:
        return "–" if x is None else f"{100 * x:.1f}%" if pct else f"{x:.3f}"

    t = Table(title="fusedata build — scores")
    for col in ("domain", "responses", "verified", "correct / passed", "skipped", "reward mean", "std", "min", "max"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    for d, s in stats.items():
        t.add_row(d, str(s["responses"]), str(s["verified"]), f(s["accuracy"], True), str(s["skipped"]),
                  f(s["reward_mean"]), f(s["reward_std"]), f(s["reward_min"]), f(s["reward_max"]))
    return t


def plot_rewards(store: RunStore, path: Path) -> Path | None:
    """Histogram of reward scores per domain (PNG); None when nothing was scored."""
    vals: dict[str, array] = defaultdict(lambda: array("d"))
    for domain, scorer, value, _ in store.iter_score_values():
        if scorer not in ("math", "code") and value is not None:
            vals[domain].append(value)
    if not vals:
        return None
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for d, v in vals.items():
        # An ndarray (a view, no copy): given any other sequence, hist makes an array per value.
        ax.hist(np.frombuffer(v), bins=20, alpha=0.5, label=f"{d} (n={len(v)})")
    ax.set_xlabel("reward")
    ax.set_ylabel("responses")
    ax.set_title("reward distribution per domain")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
