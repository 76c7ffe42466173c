"""FuseChat-3.0 data construction: SFT on the best response, DPO on same-source best/worst.

Rules (``docs/algorithms.md#fusechat-pair-selection``, FuseChat-3.0 README), applied per prompt:

* **Split.** Each prompt goes to SFT or DPO by ``unit_hash(seed, prompt_id) < sft_ratio``
  (default 0.4, i.e. SFT:DPO = 4:6). ``zh`` prompts always go to SFT (the release has
  no Chinese DPO data).
* **SFT.** The highest-reward response over all source models. For ``math``/``code``
  only verified-correct responses are eligible (code: passes all tests); a prompt
  where every response fails is dropped with reason ``all_fail``.
* **DPO.** A pair from ONE source model, never mixing models: that model's best
  response (for math/code: correct, highest reward) vs its worst (for math/code:
  incorrect, lowest reward; otherwise lowest reward). The pair is kept only when
  ``lo <= reward(chosen) - reward(rejected) <= hi`` (inclusive, default 0.01–0.1).
  When several sources qualify, one pair per prompt is kept (the released counts
  imply one pair per DPO prompt), chosen by ``pick``:

  - ``"largest_gap"`` (default): the largest in-window gap; ties → model name order;
  - ``"random"``: a seeded choice, ``unit_hash(seed, "pick", prompt_id)`` over the
    qualifying models sorted by name.

  Which source to keep is not published; both rules are documented choices.

Not published either, and therefore configurable: the gap window for code (the
README gives none; ``gap`` may be a dict ``{domain: (lo, hi) | None}``, None
meaning no window). Pairs whose chosen and rejected texts are identical are skipped.
Responses without a reward score are not eligible (every rule ranks by reward).
"""

from __future__ import annotations

from typing import Literal

from ..records import Pair
from .candidates import VERIFIED_DOMAINS, BuildReport, Candidate, base_meta, best, prompt_messages, unit_hash, worst

Window = tuple[float, float] | None
# Float slack so that a gap computed as e.g. 0.51 - 0.50 = 0.010000000000000009 counts as 0.01.
_EPS = 1e-9


def _window(gap: Window | dict[str, Window], domain: str) -> Window:
    if isinstance(gap, dict):
        return gap.get(domain, gap.get("default"))
    return gap


def in_window(g: float, win: Window) -> bool:
    return win is None or (win[0] - _EPS <= g <= win[1] + _EPS)


def _part(pid: str, domain: str | None, seed: int, sft_ratio: float) -> str:
    return "sft" if domain == "zh" or unit_hash(seed, pid) < sft_ratio else "dpo"


def split_fusechat3(cands: dict[str, list[Candidate]], seed: int = 0, sft_ratio: float = 0.4,
                    domains: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Prompt ids → (sft, dpo), in input order. zh always SFT. ``domains`` overrides prompt_id → domain."""
    sft, dpo = [], []
    for pid, lst in cands.items():
        dom = (domains or {}).get(pid) or (lst[0].domain if lst else None)
        (sft if _part(pid, dom, seed, sft_ratio) == "sft" else dpo).append(pid)
    return sft, dpo


def _sft_example(lst: list[Candidate], domain: str, seed: int) -> tuple[Pair | None, str]:
    scored = [c for c in lst if c.reward is not None]
    if domain in VERIFIED_DOMAINS:
        if lst and all(c.verified is False for c in lst):
            return None, "all_fail"
        ok = [c for c in scored if c.verified]
        if not ok:
            if any(c.verified for c in lst):
                return None, "no_reward"
            return None, "no_verified_correct" if any(c.verified is False for c in lst) else "unverified"
        why = f"highest reward among {len(ok)} verified-correct of {len(lst)} responses"
    else:
        ok = scored
        if not ok:
            return None, "no_reward"
        why = f"highest reward among {len(ok)} responses"
    c = best(ok)
    p = c.prompt
    meta = {**base_meta(c), "split": "sft", "seed": seed, "why": why, "source_models": [c.model],
            "sample_idx": [c.sample_idx], "chosen": c.describe(), "n_candidates": len(lst),
            "n_models": len({x.model for x in lst})}
    return Pair(prompt_id=p.id, domain=domain, method="fusechat3-sft", prompt=prompt_messages(p),
                chosen=[c.message()], chosen_models=[c.model], chosen_scores=[float(c.reward)],
                meta=meta), "kept"


def source_pair(lst: list[Candidate], domain: str) -> tuple[tuple[Candidate, Candidate] | None, str]:
    """One source model's (best, worst) pair, or None with the reason it has none."""
    scored = [c for c in lst if c.reward is not None]
    if len(scored) < 2:
        return None, "lt_2_scored"
    if domain in VERIFIED_DOMAINS:
        good = [c for c in scored if c.verified is True]
        bad = [c for c in scored if c.verified is False]
        if not good:
            return None, "no_correct"
        if not bad:
            return None, "no_incorrect"
        ch, rj = best(good), worst(bad)
    else:
        ch, rj = best(scored), worst(scored)
        if ch.reward == rj.reward:
            return None, "equal_rewards"
    if ch.text == rj.text:
        return None, "identical_text"
    return (ch, rj), "ok"


def _dpo_example(lst: list[Candidate], domain: str, seed: int, win: Window,
                 pick: str) -> tuple[Pair | None, str]:
    if not lst:
        return None, "no_candidates"
    if domain in VERIFIED_DOMAINS and all(c.verified is False for c in lst):
        return None, "all_fail"
    models = sorted({c.model for c in lst})
    pairs: dict[str, tuple[Candidate, Candidate, float]] = {}
    why_not: dict[str, str] = {}
    for m in models:
        pr, why = source_pair([c for c in lst if c.model == m], domain)
        if pr is None:
            why_not[m] = why
            continue
        g = pr[0].reward - pr[1].reward
        if not in_window(g, win):
            why_not[m] = "gap_below_window" if win is not None and g < win[0] else "gap_above_window"
            continue
        pairs[m] = (pr[0], pr[1], g)
    if not pairs:
        reasons = set(why_not.values())
        if reasons & {"gap_below_window", "gap_above_window"}:
            return None, "gap_out_of_window"
        return None, "no_same_source_pair" if len(reasons) != 1 else f"no_same_source_pair:{reasons.pop()}"
    qual = sorted(pairs)
    if pick == "largest_gap":
        top = max(pairs[m][2] for m in qual)
        chosen_model = next(m for m in qual if pairs[m][2] == top)
        why = f"largest in-window gap among {len(qual)} qualifying source(s)"
    elif pick == "random":
        chosen_model = qual[int(unit_hash(seed, "pick", lst[0].prompt_id) * len(qual))]
        why = f"seeded random choice among {len(qual)} qualifying source(s)"
    else:
        raise ValueError(f"pick must be 'largest_gap' or 'random', not {pick!r}")
    ch, rj, g = pairs[chosen_model]
    p = ch.prompt
    meta = {**base_meta(ch), "split": "dpo", "seed": seed, "why": why, "pick": pick,
            "gap_window": list(win) if win is not None else None, "margin": g,
            "source_models": [chosen_model], "sample_idx": [ch.sample_idx, rj.sample_idx],
            "chosen": ch.describe(), "rejected": rj.describe(),
            "qualifying": {m: pairs[m][2] for m in qual}, "not_qualifying": why_not}
    return Pair(prompt_id=p.id, domain=domain, method="fusechat3-dpo", prompt=prompt_messages(p),
                chosen=[ch.message()], rejected=[rj.message()], chosen_models=[ch.model],
                rejected_models=[rj.model], chosen_scores=[float(ch.reward)],
                rejected_scores=[float(rj.reward)], meta=meta), "kept"


class FuseChat3Builder:
    """The rules of the module docstring applied one prompt at a time, into one report: a run's
    candidates can stream through it. :meth:`add` returns the prompt's ``(part, Pair)`` items."""

    parts = ("sft", "dpo")

    def __init__(self, *, seed: int = 0, sft_ratio: float = 0.4, gap: Window | dict[str, Window] = (0.01, 0.1),
                 pick: Literal["largest_gap", "random"] = "largest_gap"):
        if pick not in ("largest_gap", "random"):
            raise ValueError(f"pick must be 'largest_gap' or 'random', not {pick!r}")
        self.seed, self.sft_ratio, self.gap, self.pick = seed, sft_ratio, gap, pick
        self.report = BuildReport("fusechat3", params={"seed": seed, "sft_ratio": sft_ratio, "pick": pick,
                                                       "gap": gap if not isinstance(gap, tuple) else list(gap)},
                                  parts=self.parts)

    def add(self, pid: str, lst: list[Candidate], target: list[Candidate] | None = None) -> list[tuple[str, Pair]]:
        domain = lst[0].domain if lst else "unknown"
        part = _part(pid, lst[0].domain if lst else None, self.seed, self.sft_ratio)
        self.report.assign(domain, part)
        if part == "sft":
            ex, why = _sft_example(lst, domain, self.seed) if lst else (None, "no_candidates")
        else:
            ex, why = _dpo_example(lst, domain, self.seed, _window(self.gap, domain), self.pick)
        if ex is None:
            self.report.drop(part, domain, why)
            return []
        self.report.keep(part, domain)
        return [(part, ex)]


def build_fusechat3(
    cands: dict[str, list[Candidate]],
    *,
    seed: int = 0,
    sft_ratio: float = 0.4,
    gap: Window | dict[str, Window] = (0.01, 0.1),
    pick: Literal["largest_gap", "random"] = "largest_gap",
) -> tuple[list[Pair], list[Pair], BuildReport]:
    """Build FuseChat-3.0 SFT examples and same-source DPO pairs (see module docstring).

    Returns ``(sft, dpo, report)``; ``report.to_dict()`` has per-domain split sizes,
    kept counts and drop reasons for each stage.
    """
    builder = FuseChat3Builder(seed=seed, sft_ratio=sft_ratio, gap=gap, pick=pick)
    builder.report.responses_dropped = dict(getattr(cands, "dropped", {}) or {})
    out: dict[str, list[Pair]] = {"sft": [], "dpo": []}
    for pid, lst in cands.items():
        for part, ex in builder.add(pid, lst):
            out[part].append(ex)
    return out["sft"], out["dpo"], builder.report


__all__ = ["FuseChat3Builder", "build_fusechat3", "split_fusechat3", "source_pair", "in_window"]
