"""Look at a run before publishing it: counts, who wins, how rewards are spread.

:func:`inspect_run` summarises a :class:`~fusedata.store.RunStore` — prompts per
domain, responses per domain and model, each source model's *win share* (the share of
prompts where it wrote the best-reward response; tied best responses split the prompt
evenly, so shares add up to 1), verifier pass rates and reward histograms.
:func:`plot_inspect` draws that summary; :func:`examples` picks a few prompts with
their scored responses.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .pairs import Candidate, gather, unit_hash
from .store import RunStore

N_BINS = 10
_ALL = "all"


def _candidates(store: RunStore, reward_scorer: str | None) -> tuple[Any, dict[str, str]]:
    prompts = store.prompts()
    cands = gather(prompts, store.responses(), store.scores(), reward_scorer=reward_scorer)
    return cands, {p.id: p.domain for p in prompts}


def _edges(values: list[float], n_bins: int) -> list[float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / n_bins
    return [lo + i * step for i in range(n_bins)] + [hi]


def _histogram(values: list[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    lo, hi = edges[0], edges[-1]
    for v in values:
        i = int((v - lo) / (hi - lo) * (len(edges) - 1)) if hi > lo else 0
        counts[min(max(i, 0), len(counts) - 1)] += 1
    return counts


def win_shares(cands: dict[str, list[Candidate]]) -> dict[str, Any]:
    """Per domain and over all prompts: {"prompts": n, "shares": {model: share}, "wins": {model: wins}}.

    Only prompts with at least one rewarded candidate count; a tie for the best reward
    splits that prompt evenly between the tied models.
    """
    wins: dict[str, Counter] = defaultdict(Counter)
    n: Counter = Counter()
    models: dict[str, set[str]] = defaultdict(set)
    for lst in cands.values():
        for c in lst:
            models[c.domain].add(c.model)
            models[_ALL].add(c.model)
        rewarded = [c for c in lst if c.reward is not None]
        if not rewarded:
            continue
        top = max(c.reward for c in rewarded)
        winners = sorted({c.model for c in rewarded if c.reward == top})
        for dom in (rewarded[0].domain, _ALL):
            n[dom] += 1
            for m in winners:
                wins[dom][m] += 1.0 / len(winners)
    out = {}
    for dom in sorted(models, key=lambda d: (d == _ALL, d)):
        total = n[dom]
        out[dom] = {"prompts": total,
                    "wins": {m: wins[dom][m] for m in sorted(models[dom])},
                    "shares": {m: (wins[dom][m] / total if total else 0.0) for m in sorted(models[dom])}}
    return out


def inspect_run(store: RunStore, *, reward_scorer: str | None = None, n_bins: int = N_BINS) -> dict[str, Any]:
    """Summary of a run: see the module docstring. JSON-serialisable."""
    cands, domain_of = _candidates(store, reward_scorer)
    prompts = Counter(domain_of.values())
    responses: dict[str, Counter] = defaultdict(Counter)
    rewards: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    verified: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for lst in cands.values():
        for c in lst:
            responses[c.domain][c.model] += 1
            if c.reward is not None:
                rewards[c.domain][c.model].append(c.reward)
            if c.verified is not None:
                verified[c.domain][c.model].append(c.verified)
    failures = Counter(r.model for r, _ in store.failures())
    hist: dict[str, Any] = {}
    for dom in sorted(rewards):
        values = [v for vs in rewards[dom].values() for v in vs]
        edges = _edges(values, n_bins)
        hist[dom] = {"edges": edges, "counts": {m: _histogram(vs, edges) for m, vs in sorted(rewards[dom].items())},
                     "n": len(values), "mean": statistics.fmean(values), "min": min(values),
                     "p50": statistics.median(values), "max": max(values)}
    return {
        "reward_scorer": cands.reward_scorer,
        "prompts": dict(sorted(prompts.items())),
        "responses": {d: dict(sorted(c.items())) for d, c in sorted(responses.items())},
        "failures": dict(sorted(failures.items())),
        "dropped": dict(sorted(cands.dropped.items())),
        "win_share": win_shares(cands),
        "verified_rate": {d: {m: sum(v) / len(v) for m, v in sorted(per.items())}
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
    cands, domain_of = _candidates(store, reward_scorer)
    ids = sorted((pid for pid, lst in cands.items() if lst), key=lambda pid: unit_hash("examples", seed, pid))
    # Round-robin over domains so that a few examples show every domain.
    by_dom: dict[str, list[str]] = defaultdict(list)
    for pid in ids:
        by_dom[domain_of[pid]].append(pid)
    picked: list[str] = []
    queues = [by_dom[d] for d in sorted(by_dom)]
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))

    def clip(t: str) -> str:
        return t if len(t) <= max_chars else t[:max_chars] + "…"

    out = []
    for pid in picked:
        lst = sorted(cands[pid], key=lambda c: (c.reward is None, -(c.reward or 0.0), c.model, c.sample_idx))
        p = lst[0].prompt
        out.append({"prompt_id": pid, "domain": p.domain,
                    "prompt": clip(p.messages[-1]["content"] if p.messages else ""),
                    "responses": [{"model": c.model, "sample_idx": c.sample_idx, "text": clip(c.text),
                                   "reward": c.reward, "verified": c.verified} for c in lst]})
    return out
