"""FuseRL data construction — FuseSFT and FusePO examples with reward-softmax weights.

**Reconstruction, not the authors' specification.** The FuseRL paper's exact
weighting is not public (loss normalisation, softmax temperature, data split, gap
filters); this module is a documented reconstruction consistent with the OpenReview
reviews (``docs/algorithms.md#fuserl-reconstruction``). Outputs are labelled "FuseRL (reconstructed)".

* **FuseSFT**: per prompt, the top-``m`` responses over all sources by reward (ties →
  model name, then sample index); weights ``w_i = softmax(score_i / tau)`` over those
  ``m`` (sum to 1). One :class:`Pair` per selected response, ``weights=[w_i]``; the
  group is recovered by ``prompt_id`` (``meta["rank"]``, ``meta["group_size"]``).
* **FusePO**: per source model, its max-reward vs min-reward response (a same-source
  pair). A source is skipped when it has fewer than 2 scored responses or its max and
  min rewards are equal. Per-source weight ``w_k = softmax_k(max_j s_{k,j} / tau)``
  over the qualifying sources of the prompt (sum to 1). One Pair per source, ``weights=[w_k]``.

Responses without a reward are ignored. Verifier verdicts are recorded in meta but do
not change selection (the reviews describe a reward-only rule).
"""

from __future__ import annotations

from ..records import Pair
from .candidates import BuildReport, Candidate, base_meta, best, prompt_messages, softmax, worst

LABEL = "FuseRL (reconstructed)"


class FuseRLBuilder:
    """FuseSFT and FusePO (module docstring) one prompt at a time, into one report; :meth:`add` returns
    the prompt's ``("sft" | "po", Pair)`` items: its FuseSFT group, then its FusePO pairs."""

    parts = ("sft", "po")

    def __init__(self, *, m: int = 4, tau: float = 1.0):
        if m < 1:
            raise ValueError("m must be >= 1")
        if tau <= 0:
            raise ValueError("tau must be > 0")
        self.m, self.tau = m, tau
        self.report = BuildReport("fuserl", params={"m": m, "tau": tau, "label": LABEL}, parts=self.parts)

    def add(self, pid: str, lst: list[Candidate], target: list[Candidate] | None = None) -> list[tuple[str, Pair]]:
        rep = self.report
        domain = lst[0].domain if lst else "unknown"
        scored = [c for c in lst if c.reward is not None]
        if not scored:
            rep.drop("sft", domain, "no_candidates" if not lst else "no_reward")
            rep.drop("po", domain, "no_candidates" if not lst else "no_reward")
            return []
        sft = self._sft(pid, domain, scored)
        rep.keep("sft", domain, len(sft))
        po = self._po(pid, domain, scored)
        if not po:
            rep.drop("po", domain, "no_qualifying_source")
        else:
            rep.keep("po", domain, len(po))
        return [("sft", p) for p in sft] + [("po", p) for p in po]

    def _sft(self, pid: str, domain: str, scored: list[Candidate]) -> list[Pair]:
        m, tau = self.m, self.tau
        prompt = scored[0].prompt
        ranked = sorted(scored, key=lambda c: (-c.reward, c.model, c.sample_idx))[:m]
        ws = softmax([c.reward for c in ranked], tau)
        group = [c.describe() for c in ranked]
        return [Pair(prompt_id=pid, domain=domain, method="fuserl-sft", prompt=prompt_messages(prompt),
                     chosen=[c.message()], chosen_models=[c.model], chosen_scores=[float(c.reward)],
                     weights=[w], meta={**base_meta(c), "label": LABEL, "rank": i, "group_size": len(ranked),
                                        "m": m, "tau": tau, "source_models": [c.model],
                                        "sample_idx": [c.sample_idx], "group": group,
                                        "why": f"top-{m} by reward across sources; weight = softmax(r/tau)"})
                for i, (c, w) in enumerate(zip(ranked, ws))]

    def _po(self, pid: str, domain: str, scored: list[Candidate]) -> list[Pair]:
        tau = self.tau
        prompt = scored[0].prompt
        qual: list[tuple[str, Candidate, Candidate]] = []
        for model in sorted({c.model for c in scored}):
            mine = [c for c in scored if c.model == model]
            if len(mine) < 2:
                self.report.drop("po_source", domain, "lt_2_scored")
                continue
            hi, lo = best(mine), worst(mine)
            if hi.reward == lo.reward:
                self.report.drop("po_source", domain, "equal_rewards")
                continue
            qual.append((model, hi, lo))
        wk = softmax([hi.reward for _, hi, _ in qual], tau)
        return [Pair(prompt_id=pid, domain=domain, method="fuserl-po", prompt=prompt_messages(prompt),
                     chosen=[hi.message()], rejected=[lo.message()], chosen_models=[model],
                     rejected_models=[model], chosen_scores=[float(hi.reward)],
                     rejected_scores=[float(lo.reward)], weights=[w],
                     meta={**base_meta(hi), "label": LABEL, "tau": tau, "source_models": [model],
                           "sample_idx": [hi.sample_idx, lo.sample_idx], "chosen": hi.describe(),
                           "rejected": lo.describe(), "n_sources": len(qual), "margin": hi.reward - lo.reward,
                           "why": "source's max- vs min-reward response; weight = softmax(max r/tau) "
                                  "over qualifying sources"})
                for (model, hi, lo), w in zip(qual, wk)]


def build_fuserl(
    cands: dict[str, list[Candidate]],
    *,
    m: int = 4,
    tau: float = 1.0,
) -> tuple[list[Pair], list[Pair], BuildReport]:
    """Build FuseSFT (weighted top-m) and FusePO (weighted per-source pairs); see module docstring.

    The FuseRL paper's exact weighting is not public; this is a documented reconstruction:
    FuseSFT weights = softmax(reward / tau) over the top-m responses of a prompt, FusePO
    weights = softmax(max reward of the source / tau) over the prompt's qualifying sources.
    Both sum to 1 per prompt. Returns ``(sft, po, report)``.
    """
    builder = FuseRLBuilder(m=m, tau=tau)
    builder.report.responses_dropped = dict(getattr(cands, "dropped", {}) or {})
    out: dict[str, list[Pair]] = {"sft": [], "po": []}
    for pid, lst in cands.items():
        for part, ex in builder.add(pid, lst):
            out[part].append(ex)
    return out["sft"], out["po"], builder.report
