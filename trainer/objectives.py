"""Which log-prob columns of a micro-batch feed which loss in ``losses.py``, per method.

:func:`micro_batch_loss` takes the per-sequence statistics of one micro-batch (policy sums,
means, counts; reference sums where the method has one) and returns this micro-batch's
**share** of the step's loss plus logging sums. Every share is divided by the step's global
denominator (:func:`denominator`, summed over micro-batches and ranks), so gradient
accumulation and data parallelism give exactly the large-batch loss (docs/trainer.md#loss-normalisation):

* pairwise / group methods: mean over the step's examples;
* SFT, ``token``: Σ weight·token NLL over Σ weight·tokens;
* SFT, ``response`` (FuseSFT): Σ weight·mean NLL over Σ weight.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import Config
from .data import Example
from .losses import (
    dpo_loss,
    fusepo_loss,
    response_nll,
    rloo_advantages,
    rloo_loss,
    simpo_loss,
    weighted_sft_loss,
    wrpo_loss,
    wrpo_rewards,
    wrpo_simpo_loss,
)

Metrics = dict[str, list[float]]  # name -> [sum, count]


@dataclass
class MicroBatch:
    """One micro-batch's per-sequence statistics, flat in the order of its examples' responses."""

    examples: list[Example]
    sums: torch.Tensor  # summed response log-probs of the policy
    means: torch.Tensor  # per-token mean log-probs of the policy
    policy: torch.Tensor  # sums or means, as loss.normalize says
    ref: torch.Tensor | None  # the reference's log-probs, reduced like ``policy``
    alpha: float  # WRPO fusion coefficient at this step


def denominator(cfg: Config, examples: list[Example]) -> float:
    """These examples' share of the step's loss denominator."""
    if cfg.method in ("sft", "fusesft"):
        if cfg.sft_normalize == "token":
            return float(sum(w * len(r) for ex in examples for w, r in zip(ex.weights, ex.responses)))
        return float(sum(sum(ex.weights) for ex in examples))
    return float(len(examples))


def micro_batch_loss(cfg: Config, examples: list[Example], sums: torch.Tensor, means: torch.Tensor,
                     counts: torch.Tensor, ref_sums: torch.Tensor | None, alpha: float, step_denominator: float
                     ) -> tuple[torch.Tensor, Metrics]:
    """(this micro-batch's share of the step loss, with gradient; metric sums)."""
    m: Metrics = defaultdict(lambda: [0.0, 0])
    if cfg.method in ("sft", "fusesft"):
        weights = torch.tensor([x for ex in examples for x in ex.weights], dtype=sums.dtype, device=sums.device)
        _add(m, "nll", response_nll(sums, counts))
        _add(m, "logps/response", sums)
        return weighted_sft_loss(sums, counts, weights, cfg.sft_normalize, step_denominator), m
    per_example = _PER_EXAMPLE.get(cfg.method)
    if per_example is None:
        raise ValueError(f"unknown method {cfg.method!r}")
    mean_mode = cfg.loss.normalize == "mean"
    ref = None
    if ref_sums is not None:
        ref = ref_sums / counts.clamp_min(1) if mean_mode else ref_sums
    mb = MicroBatch(examples, sums, means, means if mean_mode else sums, ref, alpha)
    return per_example(cfg, mb, m).sum() / step_denominator, m


def _preference(cfg: Config, mb: MicroBatch, m: Metrics) -> torch.Tensor:
    beta, ls = cfg.loss.beta, cfg.loss.label_smoothing
    if cfg.method == "dpo":
        out = dpo_loss(*_columns(mb.policy, 2), *_columns(mb.ref, 2), beta, ls)
    else:
        out = simpo_loss(*_columns(mb.means, 2), beta, cfg.gamma, ls)
    chosen, rejected = _columns(mb.sums, 2)
    _pair_metrics(m, out.chosen_rewards, out.rejected_rewards)
    _add(m, "logps/chosen", chosen)
    _add(m, "logps/rejected", rejected)
    return out.losses


def _wrpo(cfg: Config, mb: MicroBatch, m: Metrics) -> torch.Tensor:
    beta, ls = cfg.loss.beta, cfg.loss.label_smoothing
    if cfg.loss.base == "dpo":
        args = (*_columns(mb.policy, 3), *_columns(mb.ref, 3), mb.alpha, beta)
        out = wrpo_loss(*args, ls)
    else:
        args = (*_columns(mb.means, 3), None, None, None, mb.alpha, beta)
        out = wrpo_simpo_loss(*_columns(mb.means, 3), mb.alpha, beta, cfg.gamma, ls)
    cols = wrpo_rewards(*args)
    _pair_metrics(m, cols.chosen, cols.rejected)
    _add(m, "rewards/source_chosen", cols.source)
    _add(m, "rewards/target_chosen", cols.target)
    _add(m, "rewards/source_accuracies", (cols.source > cols.rejected).float())
    _add(m, "rewards/pivot_accuracies", (cols.target > cols.rejected).float())
    source, target, rejected = _columns(mb.sums, 3)
    _add(m, "logps/source_chosen", source)
    _add(m, "logps/target_chosen", target)
    _add(m, "logps/rejected", rejected)
    return out.losses


def _fusepo(cfg: Config, mb: MicroBatch, m: Metrics) -> torch.Tensor:
    k = max(len(ex.weights) for ex in mb.examples)
    w = torch.zeros(len(mb.examples), k, dtype=mb.sums.dtype, device=mb.sums.device)
    for b, ex in enumerate(mb.examples):
        w[b, :len(ex.weights)] = torch.tensor(ex.weights, dtype=mb.sums.dtype)
    simpo = cfg.loss.base == "simpo"
    x = mb.means if simpo else mb.policy

    def grid(t: torch.Tensor | None, col: int) -> torch.Tensor | None:
        return None if t is None else _pair_grid(t, mb.examples, k, col)

    out = fusepo_loss(grid(x, 0), grid(x, 1), grid(mb.ref, 0), grid(mb.ref, 1), w, cfg.loss.beta,
                      form="simpo" if simpo else "dpo", gamma=cfg.gamma if simpo else 0.0,
                      label_smoothing=cfg.loss.label_smoothing)
    valid = w > 0
    _pair_metrics(m, out.chosen_rewards[valid], out.rejected_rewards[valid])
    _add(m, "logps/chosen", grid(mb.sums, 0)[valid])
    _add(m, "logps/rejected", grid(mb.sums, 1)[valid])
    return out.losses


def _pair_grid(x: torch.Tensor, examples: list[Example], k: int, col: int) -> torch.Tensor:
    """``[B, k]`` of column ``col`` (0 chosen, 1 rejected) of each example's interleaved pairs.

    Prompts with fewer than k pairs are padded with 0: finite log-probs that fusepo_loss weighs by 0.
    """
    g = x.new_zeros(len(examples), k)
    at = 0
    for b, ex in enumerate(examples):
        n = len(ex.weights)
        g[b, :n] = x[at + col: at + 2 * n: 2]
        at += 2 * n
    return g


def _rloo(cfg: Config, mb: MicroBatch, m: Metrics) -> torch.Tensor:
    losses, at = [], 0
    for ex in mb.examples:
        n = len(ex.responses)
        rewards = torch.tensor([ex.weights], dtype=mb.sums.dtype, device=mb.sums.device)
        adv = rloo_advantages(rewards)
        losses.append(rloo_loss(mb.sums[at:at + n].unsqueeze(0), adv))
        _add(m, "reward", rewards)
        _add(m, "advantage_abs", adv.abs())
        at += n
    _add(m, "logps/response", mb.sums)
    return torch.cat(losses)


# Methods whose losses.py function returns one loss per example; the step's mean is taken above.
_PER_EXAMPLE: dict[str, Callable[[Config, MicroBatch, Metrics], torch.Tensor]] = {
    "dpo": _preference, "simpo": _preference, "wrpo": _wrpo, "fusepo": _fusepo, "rloo": _rloo}


def _add(m: Metrics, key: str, values: torch.Tensor) -> None:
    v = values.detach().float()
    m[key][0] += float(v.sum())
    m[key][1] += v.numel()


def _columns(x: torch.Tensor, width: int) -> list[torch.Tensor]:
    return list(x.view(-1, width).unbind(-1))


def _pair_metrics(m: Metrics, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    _add(m, "rewards/chosen", chosen)
    _add(m, "rewards/rejected", rejected)
    _add(m, "rewards/margins", chosen - rejected)
    _add(m, "rewards/accuracies", (chosen > rejected).float())
