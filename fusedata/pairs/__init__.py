"""Training examples from scored candidates: FuseChat-3.0, WRPO and FuseRL builders.

Everything here is pure (no I/O): :func:`gather` joins the store's records into
candidates, a builder turns candidates into :class:`~fusedata.records.Pair` records
plus a report, and :func:`to_trl_rows` turns pairs into TRL conversational rows.
Each ``build_*`` function runs its builder class (``FuseChat3Builder``...) over a dict of
candidates; the class takes one prompt at a time, which is how a whole run streams through it
(``fusedata.dataset``), with :func:`make_candidate` joining one prompt's records.

``Pair.prompt`` is the prompt's messages; ``chosen``/``rejected`` hold assistant
messages only — the prompt is never repeated inside them.
"""

from __future__ import annotations

from typing import Any, Literal

from ..records import Pair, canonical_json
from .candidates import (
    BuildReport,
    Candidate,
    CandidateSet,
    candidate_order,
    gather,
    index_scores,
    make_candidate,
    median,
    reward_scorer_among,
    reward_scorer_of,
    softmax,
    unit_hash,
)
from .fusechat3 import FuseChat3Builder, build_fusechat3, split_fusechat3
from .fuserl import FuseRLBuilder, build_fuserl
from .wrpo import WRPOBuilder, build_wrpo, split_wrpo, wrpo_quadruple_rows


def _first(xs: list, default: Any = None) -> Any:
    return xs[0] if xs else default


def _verified(meta: dict[str, Any], key: str) -> Any:
    d = meta.get(key)
    return d.get("verified") if isinstance(d, dict) else None


def to_trl_rows(pairs: list[Pair], kind: Literal["sft", "preference", "wrpo"] = "sft") -> list[dict[str, Any]]:
    """Pairs → TRL conversational rows (``docs/data.md#dataset-configs-and-columns``).

    * ``"sft"``: ``messages`` = prompt + [chosen[0]], with prompt_id, domain, method,
      source_dataset, model, score, weight (1.0 when the pair has none), verified, meta (JSON).
    * ``"preference"``: explicit-prompt format — ``prompt`` (message list), ``chosen`` and
      ``rejected`` ([one assistant message] each; for WRPO pairs chosen[0] = y_ws), with
      chosen_model, rejected_model, score_chosen, score_rejected, chosen_verified,
      rejected_verified, margin, weight, meta (JSON).
    * ``"wrpo"``: the WRPO code's layout — ``prompt`` as ONE message dict (the prompt must
      be a single message), ``chosen`` = [y_ws, y_wt], ``rejected`` = [y_l].
    """
    rows: list[dict[str, Any]] = []
    for p in pairs:
        common = {"prompt_id": p.prompt_id, "domain": p.domain, "method": p.method,
                  "source_dataset": p.meta.get("source_dataset")}
        if kind == "sft":
            if not p.chosen:
                raise ValueError(f"{p.prompt_id}: no chosen response")
            rows.append({"messages": [dict(m) for m in p.prompt] + [dict(p.chosen[0])], **common,
                         "model": _first(p.chosen_models), "score": _first(p.chosen_scores),
                         "weight": _first(p.weights, 1.0),
                         "verified": _verified(p.meta, "chosen") if "chosen" in p.meta
                         else _verified(p.meta, "y_ws"),
                         "meta": canonical_json(p.meta)})
        elif kind == "preference":
            if not p.chosen or not p.rejected:
                raise ValueError(f"{p.prompt_id}: a preference row needs chosen and rejected")
            sc, sr = _first(p.chosen_scores), _first(p.rejected_scores)
            rows.append({"prompt": [dict(m) for m in p.prompt], "chosen": [dict(p.chosen[0])],
                         "rejected": [dict(p.rejected[0])], **common,
                         "chosen_model": _first(p.chosen_models), "rejected_model": _first(p.rejected_models),
                         "score_chosen": sc, "score_rejected": sr,
                         "chosen_verified": _verified(p.meta, "chosen") if "chosen" in p.meta
                         else _verified(p.meta, "y_ws"),
                         "rejected_verified": _verified(p.meta, "rejected") if "rejected" in p.meta
                         else _verified(p.meta, "y_l"),
                         "margin": sc - sr if sc is not None and sr is not None else None,
                         "weight": _first(p.weights, 1.0), "meta": canonical_json(p.meta)})
        elif kind == "wrpo":
            if len(p.prompt) != 1 or len(p.chosen) != 2 or len(p.rejected) != 1:
                raise ValueError(f"{p.prompt_id}: the WRPO layout needs 1 prompt message, 2 chosen, 1 rejected")
            rows.append({"prompt": dict(p.prompt[0]), "chosen": [dict(m) for m in p.chosen],
                         "rejected": [dict(p.rejected[0])], **common,
                         "chosen_models": list(p.chosen_models), "rejected_models": list(p.rejected_models),
                         "chosen_scores": list(p.chosen_scores), "rejected_scores": list(p.rejected_scores)})
        else:
            raise ValueError(f"kind must be 'sft', 'preference' or 'wrpo', not {kind!r}")
    return rows


__all__ = [
    "BuildReport", "Candidate", "CandidateSet", "FuseChat3Builder", "FuseRLBuilder", "WRPOBuilder",
    "build_fusechat3", "build_fuserl", "build_wrpo", "candidate_order", "gather", "index_scores",
    "make_candidate", "median", "reward_scorer_among", "reward_scorer_of", "softmax", "split_fusechat3", "split_wrpo",
    "to_trl_rows", "unit_hash", "wrpo_quadruple_rows",
]
