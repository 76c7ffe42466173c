"""Which log-prob columns of a micro-batch feed which loss in ``losses.py``, per method.

:func:`micro_batch_terms` takes the per-sequence statistics of one micro-batch (policy sums,
means, counts; reference sums where the method has one) and returns the **numerator** of the
step's loss plus logging sums. The loop divides every numerator by the step's global
denominator (:func:`denominator`, summed over micro-batches and ranks), so gradient
accumulation and data parallelism give exactly the large-batch loss (trainer.md §8):

* pairwise / group methods: mean over the step's examples;
* SFT, ``token``: Σ weight·token NLL over Σ weight·tokens;
* SFT, ``response`` (FuseSFT): Σ weight·mean NLL over Σ weight.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from .config import Config
from .data import Example
from .losses import (
    dpo_loss,
    fusepo_loss,
    rloo_advantages,
    rloo_loss,
    simpo_loss,
    wrpo_loss,
    wrpo_rewards,
    wrpo_simpo_loss,
)

Metrics = dict[str, list[float]]  # name -> [sum, count]


def denominator(cfg: Config, examples: list[Example]) -> float:
    """This micro-batch's share of the step's loss denominator."""
    if cfg.method in ("sft", "fusesft"):
        if cfg.sft_normalize == "token":
            return float(sum(w * len(r) for ex in examples for w, r in zip(ex.weights, ex.responses)))
        return float(sum(sum(ex.weights) for ex in examples))
    return float(len(examples))


def _add(m: Metrics, key: str, values: torch.Tensor) -> None:
    v = values.detach().float()
    m[key][0] += float(v.sum())
    m[key][1] += v.numel()


def _columns(x: torch.Tensor, width: int) -> list[torch.Tensor]:
    return list(x.view(-1, width).unbind(-1))


def micro_batch_terms(cfg: Config, examples: list[Example], sums: torch.Tensor, means: torch.Tensor,
                      counts: torch.Tensor, ref_sums: torch.Tensor | None, alpha: float
                      ) -> tuple[torch.Tensor, Metrics]:
    """(loss numerator with gradient, metric sums) for one micro-batch."""
    m: Metrics = defaultdict(lambda: [0.0, 0])
    method, beta, ls = cfg.method, cfg.loss.beta, cfg.loss.label_smoothing
    mean_mode = cfg.loss.normalize == "mean"
    ref = None
    if ref_sums is not None:
        ref = ref_sums / counts.clamp_min(1) if mean_mode else ref_sums
    pol = means if mean_mode else sums

    if method in ("sft", "fusesft"):
        w = torch.tensor([x for ex in examples for x in ex.weights], dtype=sums.dtype, device=sums.device)
        nll = -means
        num = (w * -sums).sum() if cfg.sft_normalize == "token" else (w * nll).sum()
        _add(m, "nll", nll)
        _add(m, "logps/response", sums)
        return num, m

    if method in ("dpo", "simpo"):
        if method == "dpo":
            out = dpo_loss(*_columns(pol, 2), *_columns(ref, 2), beta, ls)
        else:
            out = simpo_loss(*_columns(means, 2), beta, cfg.gamma, ls)
        c, r = _columns(sums, 2)
        _pair_metrics(m, out.chosen_rewards, out.rejected_rewards)
        _add(m, "logps/chosen", c)
        _add(m, "logps/rejected", r)
        return out.losses.sum(), m

    if method == "wrpo":
        if cfg.loss.base == "dpo":
            args = (*_columns(pol, 3), *_columns(ref, 3), alpha, beta)
            out = wrpo_loss(*args, ls)
        else:
            args = (*_columns(means, 3), None, None, None, alpha, beta)
            out = wrpo_simpo_loss(*_columns(means, 3), alpha, beta, cfg.gamma, ls)
        cols = wrpo_rewards(*args)
        _pair_metrics(m, cols.chosen, cols.rejected)
        _add(m, "rewards/source_chosen", cols.source)
        _add(m, "rewards/target_chosen", cols.target)
        _add(m, "rewards/source_accuracies", (cols.source > cols.rejected).float())
        _add(m, "rewards/pivot_accuracies", (cols.target > cols.rejected).float())
        s, t, r = _columns(sums, 3)
        _add(m, "logps/source_chosen", s)
        _add(m, "logps/target_chosen", t)
        _add(m, "logps/rejected", r)
        return out.losses.sum(), m

    if method == "fusepo":
        k = max(len(ex.weights) for ex in examples)

        def grid(x: torch.Tensor | None, col: int) -> torch.Tensor | None:
            if x is None:
                return None
            g = x.new_zeros(len(examples), k)  # padded pairs: weight 0, finite log-probs
            at = 0
            for b, ex in enumerate(examples):
                n = len(ex.weights)
                g[b, :n] = x[at + col: at + 2 * n: 2]
                at += 2 * n
            return g
        w = torch.zeros(len(examples), k, dtype=sums.dtype, device=sums.device)
        for b, ex in enumerate(examples):
            w[b, :len(ex.weights)] = torch.tensor(ex.weights, dtype=sums.dtype)
        simpo = cfg.loss.base == "simpo"
        x = means if simpo else pol
        out = fusepo_loss(grid(x, 0), grid(x, 1), grid(ref, 0), grid(ref, 1), w, beta,
                          form="simpo" if simpo else "dpo", gamma=cfg.gamma if simpo else 0.0, label_smoothing=ls)
        valid = w > 0
        _pair_metrics(m, out.chosen_rewards[valid], out.rejected_rewards[valid])
        _add(m, "logps/chosen", grid(sums, 0)[valid])
        _add(m, "logps/rejected", grid(sums, 1)[valid])
        return out.losses.sum(), m

    if method == "rloo":
        num, at = sums.new_zeros(()), 0
        for ex in examples:
            n = len(ex.responses)
            rewards = torch.tensor([ex.weights], dtype=sums.dtype, device=sums.device)
            adv = rloo_advantages(rewards)
            num = num + rloo_loss(sums[at:at + n].unsqueeze(0), adv).sum()
            _add(m, "reward", rewards)
            _add(m, "advantage_abs", adv.abs())
            at += n
        _add(m, "logps/response", sums)
        return num, m
    raise ValueError(f"unknown method {method!r}")


def _pair_metrics(m: Metrics, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    _add(m, "rewards/chosen", chosen)
    _add(m, "rewards/rejected", rejected)
    _add(m, "rewards/margins", chosen - rejected)
    _add(m, "rewards/accuracies", (chosen > rejected).float())
