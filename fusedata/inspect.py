"""Look at a run before publishing it: counts, who wins, how rewards are spread.

:func:`inspect_run` summarises a :class:`~fusedata.store.RunStore` — prompts per
domain, responses per domain and model, each source model's *win share* (the share of
prompts where it wrote the best-reward response; tied best responses split the prompt
evenly, so shares add up to 1), verifier pass rates and reward histograms.
:func:`plot_inspect` draws that summary; :func:`examples` picks a few prompts with
their scored responses. Both read the store a page of prompts at a time
(:class:`~fusedata.dataset.StoreCandidates`) and keep counters, one float per reward and the few
examples picked so far: never the run's texts.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .dataset import StoreCandidates, run_reward_scorer
from .pairs import Candidate, median, unit_hash
from .records import Prompt
from .store import RunStore

N_BINS = 10
_ALL = "all"


def _candidates(store: RunStore, reward_scorer: str | None) -> StoreCandidates:
    # Every stored response, failures too: inspect counts them among the dropped.
    return StoreCandidates(store, reward_scorer or run_reward_scorer(store), ok_only=False)


def _edges(lo: float, hi: float, n_bins: int) -> list[float]:
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / n_bins
    return [lo + i * step for i in range(n_bins)] + [hi]


def _histogram(values: Iterable[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    lo, hi = edges[0], edges[-1]
    for v in values:
        i = int((v - lo) / (hi - lo) * (len(edges) - 1)) if hi > lo else 0
        counts[min(max(i, 0), len(counts) - 1)] += 1
    return counts


class _WinShares:
    """:func:`win_shares`, one prompt's candidates at a time (in the order given: the sums are of floats)."""

    def __init__(self) -> None:
        self.wins: dict[str, Counter] = defaultdict(Counter)
        self.n: Counter = Counter()
        self.models: dict[str, set[str]] = defaultdict(set)

    def add(self, lst: list[Candidate]) -> None:
        for c in lst:
            self.models[c.domain].add(c.model)
            self.models[_ALL].add(c.model)
        rewarded = [c for c in lst if c.reward is not None]
        if not rewarded:
            return
        top = max(c.reward for c in rewarded)
        winners = sorted({c.model for c in rewarded if c.reward == top})
        for dom in (rewarded[0].domain, _ALL):
            self.n[dom] += 1
            for m in winners:
                self.wins[dom][m] += 1.0 / len(winners)

    def result(self) -> dict[str, Any]:
        out = {}
        for dom in sorted(self.models, key=lambda d: (d == _ALL, d)):
            total, wins, models = self.n[dom], self.wins[dom], sorted(self.models[dom])
            out[dom] = {"prompts": total, "wins": {m: wins[m] for m in models},
                        "shares": {m: (wins[m] / total if total else 0.0) for m in models}}
        return out


def win_shares(cands: dict[str, list[Candidate]]) -> dict[str, Any]:
    """Per domain and over all prompts: {"prompts": n, "shares": {model: share}, "wins": {model: wins}}.

    Only prompts with at least one rewarded candidate count; a tie for the best reward
    splits that prompt evenly between the tied models.
    """
    shares = _WinShares()
    for lst in cands.values():
        shares.add(lst)
    return shares.result()


def inspect_run(store: RunStore, *, reward_scorer: str | None = None, n_bins: int = N_BINS) -> dict[str, Any]:
    """Summary of a run: see the module docstring. JSON-serialisable."""
    cands = _candidates(store, reward_scorer)
    prompts: Counter = Counter()
    responses: dict[str, Counter] = defaultdict(Counter)
    rewards: dict[str, dict[str, array]] = defaultdict(lambda: defaultdict(lambda: array("d")))
    verified: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))  # [true, n]
    shares = _WinShares()
    for p, lst in cands.groups():
        prompts[p.domain] += 1
        shares.add(lst)
        for c in lst:
            responses[c.domain][c.model] += 1
            if c.reward is not None:
                rewards[c.domain][c.model].append(c.reward)
            if c.verified is not None:
                v = verified[c.domain][c.model]
                v[0] += c.verified
                v[1] += 1
    hist: dict[str, Any] = {}
    for dom in sorted(rewards):
        per = rewards[dom]
        lo, hi = min(min(vs) for vs in per.values()), max(max(vs) for vs in per.values())
        edges = _edges(lo, hi, n_bins)
        hist[dom] = {"edges": edges, "counts": {m: _histogram(vs, edges) for m, vs in sorted(per.items())},
                     "n": sum(len(vs) for vs in per.values()),
                     "mean": statistics.fmean(itertools.chain.from_iterable(per.values())), "min": lo,
                     "p50": median(*per.values()), "max": hi}
    return {
        "reward_scorer": cands.reward_scorer,
        "prompts": dict(sorted(prompts.items())),
        "responses": {d: dict(sorted(c.items())) for d, c in sorted(responses.items())},
        "failures": store.failure_counts(),
        "dropped": dict(sorted(cands.dropped.items())),
        "win_share": shares.result(),
        "verified_rate": {d: {m: v[0] / v[1] for m, v in sorted(per.items())}
                          for d, per in sorted(verified.items())},
        "rewards": hist,
    }


def plot_inspect(stats: dict[str, Any], path: str | Path) -> Path:
    """PNG: win-share bars per source model (over all prompts), then a reward histogram per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doms = list(stats.get("rewards") or {})
    n = 1 + len(doms)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    ax = flat[0]
    overall = (stats.get("win_share") or {}).get(_ALL, {"shares": {}, "prompts": 0})
    models = list(overall["shares"])
    ax.bar(range(len(models)), [overall["shares"][m] for m in models], color="tab:blue")
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win share")
    ax.set_title(f"best-reward share ({overall['prompts']} prompts)")
    for ax, dom in zip(flat[1:], doms):
        h = stats["rewards"][dom]
        edges = h["edges"]
        width = edges[1] - edges[0]
        bottom = [0] * (len(edges) - 1)
        for m, counts in h["counts"].items():
            ax.bar(edges[:-1], counts, width=width, bottom=bottom, align="edge", label=m, edgecolor="white")
            bottom = [b + c for b, c in zip(bottom, counts)]
        ax.set_title(f"{dom}: rewards (n={h['n']}, mean={h['mean']:.3g})")
        ax.set_xlabel("reward")
        ax.legend(fontsize=7)
    for ax in flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def examples(store: RunStore, n: int = 3, *, seed: int = 0, reward_scorer: str | None = None,
             max_chars: int = 600) -> list[dict[str, Any]]:
    """Up to ``n`` prompts (a deterministic pick, spread over domains) with every usable
    response, best reward first: {prompt_id, domain, prompt, responses: [{model, sample_idx,
    text, reward, verified}]}."""
    if n <= 0:
        return []
    # Round-robin over domains, each domain's prompts in hash order: no domain gives more than n,
    # so the n first of each (with their example, clipped) is all a pass has to keep.
    first: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    built: dict[str, dict[str, Any]] = {}
    for i, (p, lst) in enumerate(_candidates(store, reward_scorer).groups()):
        if not lst:
            continue
        top = first[p.domain]
        entry = (unit_hash("examples", seed, p.id), i, p.id)
        if len(top) == n and entry >= top[-1]:
            continue
        bisect.insort(top, entry)
        built[p.id] = _example(p, lst, max_chars)
        if len(top) > n:
            built.pop(top.pop()[2])
    queues = [[pid for _, _, pid in first[d]] for d in sorted(first)]
    picked: list[str] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return [built[pid] for pid in picked]


def _example(p: Prompt, cands: list[Candidate], max_chars: int) -> dict[str, Any]:
    def clip(t: str) -> str:
        return t if len(t) <= max_chars else t[:max_chars] + "…"

    lst = sorted(cands, key=lambda c: (c.reward is None, -(c.reward or 0.0), c.model, c.sample_idx))
    return {"prompt_id": p.id, "domain": p.domain,
            "prompt": clip(p.messages[-1]["content"] if p.messages else ""),
            "responses": [{"model": c.model, "sample_idx": c.sample_idx, "text": clip(c.text),
                           "reward": c.reward, "verified": c.verified} for c in lst]}
