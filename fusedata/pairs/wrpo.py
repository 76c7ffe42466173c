"""WRPO data construction (``docs/algorithms.md#wrpo-pipeline``): SFT on y_ws, then (x, y_ws, y_wt, y_l).

* **Split.** ``unit_hash(seed, "wrpo", prompt_id) < 1/3`` → SFT prompts, else preference
  prompts (the paper's random 1/3 : 2/3 split, made deterministic).
* **y_ws** = the single best response across all source models by reward; for
  math/code, verified-correct responses rank first (``require_verified=True`` drops
  prompts with no correct response instead of falling back to the best-reward one).
* **SFT** examples are (x, y_ws) on the SFT split.
* **Preference** prompts need the target model's own samples (``target_cands``, same
  :class:`Candidate` type, e.g. sampled from Target-SFT): y_wt = the target's best,
  y_l = the target's worst, two distinct samples. A prompt is dropped when the target
  has fewer than 2 scored samples or its best and worst score the same.

Output follows the original WRPO layout: ``chosen = [y_ws, y_wt]`` (order matters),
``rejected = [y_l]``. :func:`wrpo_quadruple_rows` gives the same data as named columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..records import Pair
from .candidates import VERIFIED_DOMAINS, BuildReport, Candidate, base_meta, best, prompt_messages, unit_hash, worst

SFT_SHARE = 1 / 3


def _part(pid: str, seed: int) -> str:
    return "sft" if unit_hash(seed, "wrpo", pid) < SFT_SHARE else "preference"


def split_wrpo(prompt_ids: Iterable[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Prompt ids (or a candidate dict, keyed by them) → (sft_prompts, pref_prompts), 1/3 : 2/3 by
    hash, in input order. Known before any candidate exists: the target samples only the second list."""
    sft, pref = [], []
    for pid in prompt_ids:
        (sft if _part(pid, seed) == "sft" else pref).append(pid)
    return sft, pref


def _y_ws(lst: list[Candidate], domain: str, require_verified: bool) -> tuple[Candidate | None, str]:
    scored = [c for c in lst if c.reward is not None]
    if not lst:
        return None, "no_candidates"
    if not scored:
        return None, "no_reward"
    vf = domain in VERIFIED_DOMAINS
    if vf and require_verified:
        if all(c.verified is False for c in lst):
            return None, "all_fail"
        scored = [c for c in scored if c.verified]
        if not scored:
            return None, "no_verified_correct"
    return best(scored, verified_first=vf), "ok"


class WRPOBuilder:
    """The rules of the module docstring one prompt at a time, into one report: :meth:`add` takes a
    prompt's source candidates and the target's, and returns its ``("sft" | "preference", Pair)`` item."""

    parts = ("sft", "preference")

    def __init__(self, *, seed: int = 0, require_verified: bool = False):
        self.seed, self.require_verified = seed, require_verified
        self.report = BuildReport("wrpo", params={"seed": seed, "sft_share": SFT_SHARE,
                                                  "require_verified": require_verified}, parts=self.parts)

    def add(self, pid: str, lst: list[Candidate], target: list[Candidate] | None = None) -> list[tuple[str, Pair]]:
        rep = self.report
        domain = lst[0].domain if lst else "unknown"
        part = _part(pid, self.seed)
        rep.assign(domain, part)
        ws, why = _y_ws(lst, domain, self.require_verified)
        if ws is None:
            rep.drop(part, domain, why)
            return []
        meta: dict[str, Any] = {**base_meta(ws), "split": part, "seed": self.seed, "y_ws": ws.describe(),
                                "why_y_ws": "best reward across all sources"
                                + (" (verified-correct first)" if domain in VERIFIED_DOMAINS else ""),
                                "n_source_candidates": len(lst)}
        if part == "sft":
            rep.keep(part, domain)
            return [(part, Pair(prompt_id=pid, domain=domain, method="wrpo-sft", prompt=prompt_messages(ws.prompt),
                                chosen=[ws.message()], chosen_models=[ws.model], chosen_scores=[float(ws.reward)],
                                meta={**meta, "source_models": [ws.model], "sample_idx": [ws.sample_idx]}))]
        pair, why = _preference(pid, domain, ws, [c for c in target or [] if c.reward is not None], meta)
        if pair is None:
            rep.drop(part, domain, why)
            return []
        rep.keep(part, domain)
        return [(part, pair)]


def _preference(pid: str, domain: str, ws: Candidate, tgt: list[Candidate],
                meta: dict[str, Any]) -> tuple[Pair | None, str]:
    """(x, [y_ws, y_wt], [y_l]) from the target's scored samples, or None and why not."""
    if len(tgt) < 2:
        return None, "target_lt_2_samples"
    vf = domain in VERIFIED_DOMAINS
    wt, lo = best(tgt, verified_first=vf), worst(tgt, verified_first=vf)
    if wt is lo or (wt.reward == lo.reward and (not vf or bool(wt.verified) == bool(lo.verified))):
        return None, "target_equal_scores"
    meta.update({"y_wt": wt.describe(), "y_l": lo.describe(), "target_model": wt.model,
                 "n_target_samples": len(tgt), "source_models": [ws.model],
                 "sample_idx": [ws.sample_idx, wt.sample_idx, lo.sample_idx],
                 "why": "y_wt/y_l = target's best/worst sample"})
    return Pair(prompt_id=pid, domain=domain, method="wrpo", prompt=prompt_messages(ws.prompt),
                chosen=[ws.message(), wt.message()], rejected=[lo.message()],
                chosen_models=[ws.model, wt.model], rejected_models=[lo.model],
                chosen_scores=[float(ws.reward), float(wt.reward)],
                rejected_scores=[float(lo.reward)], meta=meta), "kept"


def build_wrpo(
    cands: dict[str, list[Candidate]],
    target_cands: dict[str, list[Candidate]],
    *,
    seed: int = 0,
    require_verified: bool = False,
) -> tuple[list[Pair], list[Pair], BuildReport]:
    """Build WRPO SFT examples (x, y_ws) and preference examples (x, [y_ws, y_wt], [y_l])."""
    builder = WRPOBuilder(seed=seed, require_verified=require_verified)
    builder.report.responses_dropped = dict(getattr(cands, "dropped", {}) or {})
    out: dict[str, list[Pair]] = {"sft": [], "preference": []}
    for pid, lst in cands.items():
        for part, ex in builder.add(pid, lst, target_cands.get(pid, [])):
            out[part].append(ex)
    return out["sft"], out["preference"], builder.report


def wrpo_quadruple_rows(pairs: list[Pair]) -> list[dict[str, Any]]:
    """WRPO pairs → rows with named columns: prompt, chosen_source (y_ws), chosen_target (y_wt), rejected (y_l).

    Each response column is a one-message list (TRL conversational); scores and models ride along.
    """
    rows = []
    for p in pairs:
        if len(p.chosen) != 2 or len(p.rejected) != 1:
            raise ValueError(f"{p.prompt_id}: a WRPO pair needs 2 chosen and 1 rejected, "
                             f"got {len(p.chosen)}/{len(p.rejected)}")
        rows.append({
            "prompt_id": p.prompt_id, "domain": p.domain,
            "prompt": [dict(m) for m in p.prompt],
            "chosen_source": [dict(p.chosen[0])], "chosen_target": [dict(p.chosen[1])],
            "rejected": [dict(p.rejected[0])],
            "source_model": p.chosen_models[0], "target_model": p.chosen_models[1],
            "score_source": p.chosen_scores[0], "score_target": p.chosen_scores[1],
            "score_rejected": p.rejected_scores[0],
        })
    return rows
