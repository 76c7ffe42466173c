"""Preference, weighted-SFT and RLOO losses as pure tensor functions.

Every function takes per-sequence log-probabilities (and, for SFT, token
counts) and returns **per-example** losses; reducing over the batch (mean over
pairs, division by the gradient-accumulation count, global token/weight
denominators) is the training loop's job (``docs/trainer.md#loss-normalisation``). The only
exception is :func:`weighted_sft_loss`, which reduces itself over a weight
total that the loop may pass in as the step's global normaliser.

Rewards returned next to a loss are always detached: they exist for logging
(``rewards/chosen``, ``rewards/rejected``, margins, accuracies) and must not
carry gradient.

Conventions
-----------
* ``logp(y)``: sum over response tokens (EOS included) of log pi(y_t | ...).
* ``avg(y)``: ``logp(y) / |y|``, the per-token mean.
* "ref" arguments are the frozen reference model's log-probs for the same
  responses, reduced the same way as the policy's.
* Inputs should be float32; losses use ``F.logsigmoid`` so large margins do not
  overflow.

Formulas follow ``docs/algorithms.md``; the FuseRL pieces (weighted SFT,
FusePO, multi-source RLOO) are our reconstruction, not the authors'
published specification (``docs/algorithms.md#fuserl-reconstruction``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "PreferenceLoss",
    "WRPORewards",
    "alpha_at",
    "dpo_loss",
    "fusepo_loss",
    "gamma_from_ratio",
    "response_nll",
    "rloo_advantages",
    "rloo_loss",
    "simpo_loss",
    "weighted_sft_loss",
    "wrpo_loss",
    "wrpo_rewards",
    "wrpo_simpo_loss",
]


class PreferenceLoss(NamedTuple):
    """Result of a pairwise preference loss; unpacks as a 3-tuple.

    ``losses`` carries gradient and has the batch shape of the inputs; the two
    reward tensors are detached and have the same shape.
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


class WRPORewards(NamedTuple):
    """Detached per-column WRPO rewards for logging.

    ``source`` is the reward of the source-model response y_ws, ``target`` that
    of the target-model response y_wt, ``chosen`` the alpha-mixed chosen reward
    ``alpha * source + (1 - alpha) * target`` (what the loss uses) and
    ``rejected`` that of y_l. WRPO logs them as ``rewards/source_chosen``,
    ``rewards/target_chosen``, ``rewards/chosen`` and ``rewards/rejected``;
    ``source > rejected`` gives ``rewards/source_accuracies`` and
    ``target > rejected`` gives ``rewards/pivot_accuracies``.
    """

    source: torch.Tensor
    target: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


def _check_label_smoothing(label_smoothing: float) -> None:
    # cDPO: epsilon is the probability that a preference label is flipped; at
    # 0.5 the loss is flat in the margin and above it the preference reverses.
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5], got {label_smoothing}")


def _check_alpha(alpha: float | torch.Tensor) -> None:
    if isinstance(alpha, torch.Tensor):
        return  # no host sync on tensors; the caller owns the range
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _smoothed_sigmoid_loss(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """-(1 - eps) * log sigmoid(z) - eps * log sigmoid(-z), elementwise."""
    losses = -F.logsigmoid(logits)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    return losses


# --------------------------------------------------------------------------- #
# DPO / SimPO
# --------------------------------------------------------------------------- #


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> PreferenceLoss:
    """DPO (and conservative/label-smoothed DPO) per-example loss.

    With ``m = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)``::

        loss = -(1 - eps) * log sigmoid(beta * m) - eps * log sigmoid(-beta * m)

    Rewards are ``beta * (policy - ref)`` per response, detached.

    The reduction of the inputs decides the variant:

    * **summed** response log-probs (policy and reference) give standard DPO
      (typical beta 0.01-0.1);
    * **per-token mean** log-probs (policy *and* reference both divided by the
      response token count) give length-normalised DPO (FuseChat "LN-DPO",
      TRL ``sigmoid_norm``, open-instruct ``dpo_norm``; typical beta 5-10).
      The scales differ by about the response length, so never reuse a beta
      across the two.

    Args:
        policy_chosen, policy_rejected: policy log-probs, any (equal) shape.
        ref_chosen, ref_rejected: reference log-probs, same reduction.
        beta: inverse temperature (> 0).
        label_smoothing: cDPO epsilon in [0, 0.5]; 0 is plain DPO.

    Returns:
        ``PreferenceLoss(losses, chosen_rewards, rejected_rewards)``, each of the
        inputs' shape.
    """
    _check_beta(beta)
    _check_label_smoothing(label_smoothing)
    chosen_logratios = policy_chosen - ref_chosen
    rejected_logratios = policy_rejected - ref_rejected
    logits = beta * (chosen_logratios - rejected_logratios)
    losses = _smoothed_sigmoid_loss(logits, label_smoothing)
    return PreferenceLoss(
        losses,
        beta * chosen_logratios.detach(),
        beta * rejected_logratios.detach(),
    )


def gamma_from_ratio(beta: float, gamma_beta_ratio: float) -> float:
    """Absolute SimPO margin gamma from a gamma/beta ratio: ``gamma = ratio * beta``.

    Two conventions exist for the same SimPO loss
    ``-log sigmoid(beta * (avg_w - avg_l) - gamma)``:

    * the SimPO repository (``princeton-nlp/SimPO``, also open-instruct) takes
      ``gamma_beta_ratio`` = gamma / beta (defaults beta 2.0, ratio 0.25, so
      gamma 0.5);
    * TRL (CPO trainer, ``loss_type="simpo"``, ``simpo_gamma``) and
      LLaMA-Factory take the absolute gamma.

    :func:`simpo_loss` and the other SimPO-style losses here take the
    **absolute** gamma; convert a SimPO-repo config with this function.
    """
    _check_beta(beta)
    return float(gamma_beta_ratio) * float(beta)


def simpo_loss(
    policy_chosen_avg: torch.Tensor,
    policy_rejected_avg: torch.Tensor,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> PreferenceLoss:
    """SimPO per-example loss (reference-free, length-normalised, margin gamma).

    With ``z = beta * (policy_chosen_avg - policy_rejected_avg) - gamma``::

        loss = -(1 - eps) * log sigmoid(z) - eps * log sigmoid(-z)

    Label smoothing is applied to the margin-shifted logit, as in the SimPO
    repository and TRL. Rewards are ``beta * avg`` per response, detached.

    Args:
        policy_chosen_avg, policy_rejected_avg: per-token **mean** log-probs.
        beta: reward scale (> 0; typical 2-10).
        gamma: **absolute** target margin (TRL ``simpo_gamma``); convert a
            SimPO-repo ``gamma_beta_ratio`` with :func:`gamma_from_ratio`.
        label_smoothing: epsilon in [0, 0.5].
    """
    _check_beta(beta)
    _check_label_smoothing(label_smoothing)
    logits = beta * (policy_chosen_avg - policy_rejected_avg) - gamma
    losses = _smoothed_sigmoid_loss(logits, label_smoothing)
    return PreferenceLoss(
        losses,
        beta * policy_chosen_avg.detach(),
        beta * policy_rejected_avg.detach(),
    )


# --------------------------------------------------------------------------- #
# WRPO
# --------------------------------------------------------------------------- #


def wrpo_rewards(
    policy_source: torch.Tensor,
    policy_target: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_source: torch.Tensor | None,
    ref_target: torch.Tensor | None,
    ref_rejected: torch.Tensor | None,
    alpha: float | torch.Tensor,
    beta: float,
) -> WRPORewards:
    """Detached WRPO reward columns: source, target, alpha-mixed chosen, rejected.

    Takes the same leading arguments, in the same order, as :func:`wrpo_loss`,
    so a loop can log the per-column rewards with ``wrpo_rewards(*args)``. Each
    reward is ``beta * (policy - ref)``; pass ``None`` for all three ``ref_*``
    to get the reference-free rewards ``beta * policy`` used by
    :func:`wrpo_simpo_loss` (then the policy inputs are mean log-probs).
    The chosen reward is ``alpha * source + (1 - alpha) * target``.
    """
    _check_beta(beta)
    _check_alpha(alpha)
    refs = (ref_source, ref_target, ref_rejected)
    if all(r is None for r in refs):
        source, target, rejected = policy_source, policy_target, policy_rejected
    elif any(r is None for r in refs):
        raise ValueError("pass all three reference tensors or none")
    else:
        source = policy_source - ref_source
        target = policy_target - ref_target
        rejected = policy_rejected - ref_rejected
    source = beta * source.detach()
    target = beta * target.detach()
    rejected = beta * rejected.detach()
    chosen = alpha * source + (1.0 - alpha) * target
    return WRPORewards(source, target, chosen, rejected)


def wrpo_loss(
    policy_source: torch.Tensor,
    policy_target: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_source: torch.Tensor,
    ref_target: torch.Tensor,
    ref_rejected: torch.Tensor,
    alpha: float | torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> PreferenceLoss:
    """WRPO per-example loss (Weighted-Reward Preference Optimization).

    With per-response log-ratios ``d(y) = policy(y) - ref(y)`` on **summed**
    log-probs (as in the WRPO code, ``average_log_prob=False``)::

        z    = beta * (alpha * d(y_ws) + (1 - alpha) * d(y_wt) - d(y_l))
        loss = -(1 - eps) * log sigmoid(z) - eps * log sigmoid(-z)

    y_ws is the best source-model response (dataset ``chosen[0]``), y_wt the
    best target-model response (``chosen[1]``), y_l the rejected one. alpha = 0
    is DPO on (y_wt, y_l); alpha = 1 is DPO on (y_ws, y_l). The WRPO code uses
    eps = 0 and beta 0.01 and grows alpha linearly (:func:`alpha_at`).

    Returns ``PreferenceLoss(losses, chosen_rewards, rejected_rewards)`` where
    ``chosen_rewards`` is the alpha-mixed reward. The separate source and
    target reward columns come from :func:`wrpo_rewards` called with the same
    arguments (minus ``label_smoothing``).
    """
    _check_beta(beta)
    _check_alpha(alpha)
    _check_label_smoothing(label_smoothing)
    mixed_chosen = alpha * (policy_source - ref_source) + (1.0 - alpha) * (policy_target - ref_target)
    rejected = policy_rejected - ref_rejected
    losses = _smoothed_sigmoid_loss(beta * (mixed_chosen - rejected), label_smoothing)
    return PreferenceLoss(losses, beta * mixed_chosen.detach(), beta * rejected.detach())


def wrpo_simpo_loss(
    policy_source_avg: torch.Tensor,
    policy_target_avg: torch.Tensor,
    policy_rejected_avg: torch.Tensor,
    alpha: float | torch.Tensor,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> PreferenceLoss:
    """Reference-free WRPO on SimPO rewards (our variant; not in the WRPO repo).

    On per-token **mean** log-probs::

        z    = beta * (alpha * avg(y_ws) + (1 - alpha) * avg(y_wt) - avg(y_l)) - gamma
        loss = -(1 - eps) * log sigmoid(z) - eps * log sigmoid(-z)

    gamma is the absolute margin (see :func:`gamma_from_ratio`). alpha = 0 is
    SimPO on (y_wt, y_l), alpha = 1 SimPO on (y_ws, y_l). Rewards are
    ``beta * avg`` with the chosen one alpha-mixed; per-column rewards come
    from ``wrpo_rewards(src, tgt, rej, None, None, None, alpha, beta)``.
    """
    _check_beta(beta)
    _check_alpha(alpha)
    _check_label_smoothing(label_smoothing)
    mixed_chosen = alpha * policy_source_avg + (1.0 - alpha) * policy_target_avg
    logits = beta * (mixed_chosen - policy_rejected_avg) - gamma
    losses = _smoothed_sigmoid_loss(logits, label_smoothing)
    return PreferenceLoss(losses, beta * mixed_chosen.detach(), beta * policy_rejected_avg.detach())


def alpha_at(step: int, total_steps: int, alpha_max: float, schedule: str = "linear") -> float:
    """WRPO fusion coefficient alpha at optimizer step ``step``.

    ``"linear"``: ``alpha_max * min(1, max(0, step / total_steps))`` -- rises
    from 0 at step 0 to ``alpha_max`` at ``total_steps`` and stays there
    (the WRPO code's ``LinearDecayScheduler``, which despite its name
    increases alpha). ``step`` is the global count of optimizer steps already
    taken (``global_step``), read before the update, so the last step of a run
    uses ``alpha_max * (T - 1) / T``; deriving it from the global step alone
    makes it exact across resume. ``total_steps`` is the total number of
    optimizer steps of the run, not micro-batches.

    ``"fixed"`` (alias ``"constant"``): ``alpha_max`` at every step (WRPO
    ``is_dynamic: false``).
    """
    if not 0.0 <= alpha_max <= 1.0:
        raise ValueError(f"alpha_max must be in [0, 1], got {alpha_max}")
    if schedule in ("fixed", "constant"):
        return float(alpha_max)
    if schedule != "linear":
        raise ValueError(f"unknown alpha schedule {schedule!r}; expected 'linear' or 'fixed'")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0 for the linear schedule, got {total_steps}")
    frac = min(1.0, max(0.0, step / total_steps))
    return float(alpha_max) * frac


# --------------------------------------------------------------------------- #
# FuseRL (reconstructed): FuseSFT, FusePO, RLOO
# --------------------------------------------------------------------------- #


def response_nll(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-response mean token NLL: ``-seq_logps / max(1, counts)``.

    ``seq_logps`` ``[N]`` are summed response-token log-probs (``logp(y)``) and
    ``counts`` ``[N]`` the responses' token counts; returns ``[N]``. A response
    with no tokens gives 0 (not NaN) and stays in the graph.
    """
    if seq_logps.shape != counts.shape:
        raise ValueError(f"seq_logps {tuple(seq_logps.shape)} and counts {tuple(counts.shape)} differ")
    return -seq_logps / counts.to(seq_logps.dtype).clamp_min(1.0)


def weighted_sft_loss(
    seq_logps: torch.Tensor,
    counts: torch.Tensor,
    weights: torch.Tensor,
    normalize: str = "response",
    denominator: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """SFT / FuseSFT loss: weighted NLL over a weight total (scalar).

    ``normalize="response"`` (FuseSFT) length-normalises each response first
    and then weights it, so a long response does not outweigh a short one
    with the same weight::

        nll_i = -seq_logps[i] / max(1, counts[i])
        loss  = sum_i weights[i] * nll_i / D        D = sum_i weights[i]

    ``normalize="token"`` (plain SFT) makes every response token of a given
    weight count the same::

        loss  = sum_i weights[i] * -seq_logps[i] / D   D = sum_i weights[i] * counts[i]

    ``denominator`` replaces the default D by a global normaliser: with the
    whole optimizer step's D (summed over micro-batches and ranks) the
    micro-batch losses add up to exactly the large-batch loss. With the default
    D the loss is this batch's weighted mean, and all-zero weights give 0.

    Groups and prompts: rows are responses, flattened over prompts; a
    prompt's top-M responses are consecutive rows carrying their own weights.
    In FuseRL data the weights of one prompt are a softmax over rewards and
    sum to 1, so in response mode D equals the number of prompts and the loss
    is the mean over prompts of each prompt's weighted NLL. With equal weights
    it is plain per-response-mean SFT.

    Args:
        seq_logps: ``[N]`` summed log-probs of each response's tokens.
        counts: ``[N]`` response token counts.
        weights: ``[N]`` non-negative response weights.
        normalize: ``"response"`` or ``"token"``.
        denominator: the step's global D, or None for this batch's own.
    """
    if not seq_logps.shape == counts.shape == weights.shape:
        raise ValueError(f"seq_logps {tuple(seq_logps.shape)}, counts {tuple(counts.shape)} and weights "
                         f"{tuple(weights.shape)} must have one shape")
    weights = weights.to(seq_logps.dtype)
    if normalize == "response":
        terms, mass = response_nll(seq_logps, counts), weights
    elif normalize == "token":
        terms, mass = -seq_logps, weights * counts.to(seq_logps.dtype)
    else:
        raise ValueError(f"unknown SFT normalisation {normalize!r}; expected 'response' or 'token'")
    if denominator is None:
        denominator = mass.sum().clamp_min(torch.finfo(seq_logps.dtype).tiny)
    return (weights * terms).sum() / denominator


def fusepo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor | None,
    ref_rejected: torch.Tensor | None,
    source_weights: torch.Tensor,
    beta: float,
    form: str = "dpo",
    gamma: float = 0.0,
    label_smoothing: float = 0.0,
) -> PreferenceLoss:
    """FusePO (reconstructed): source-weighted sum of per-source pair losses.

    Inputs are ``[B, K]``: one (chosen, rejected) pair per source model k for
    each of B prompts (y_w^k = best, y_l^k = worst response of source k).
    ``source_weights`` ``[B, K]`` (or broadcastable) are the per-source weights,
    in FuseRL a softmax over each source's best reward, so each row sums to 1;
    they are used as given, not renormalised. ::

        loss_b = sum_k w[b, k] * pair_loss(b, k)

    ``form="dpo"``: ``pair_loss`` is :func:`dpo_loss` (summed log-probs, or
    per-token means for LN-DPO), with reference log-probs. ``gamma`` must be 0.
    ``form="simpo"``: ``pair_loss`` is :func:`simpo_loss` on per-token mean
    log-probs with absolute margin ``gamma``; ``ref_*`` are ignored (may be
    None).

    A prompt with fewer than K sources: pad the missing slots with weight 0
    and finite log-probs (e.g. 0.0); NaN padding would poison the sum.

    Returns:
        ``PreferenceLoss(losses [B], chosen_rewards [B, K], rejected_rewards
        [B, K])``: the rewards are per pair (not weighted), for per-source
        logging and pair accuracies; ``(w * chosen_rewards).sum(-1)`` gives a
        weighted view.
    """
    if form == "dpo":
        if ref_chosen is None or ref_rejected is None:
            raise ValueError("form='dpo' needs ref_chosen and ref_rejected")
        if gamma != 0.0:
            raise ValueError("gamma is a SimPO margin; use form='simpo' or gamma=0")
        pair = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, label_smoothing)
    elif form == "simpo":
        pair = simpo_loss(policy_chosen, policy_rejected, beta, gamma, label_smoothing)
    else:
        raise ValueError(f"unknown FusePO form {form!r}; expected 'dpo' or 'simpo'")
    weights = source_weights.to(pair.losses.dtype)
    losses = (weights * pair.losses).sum(dim=-1)
    return PreferenceLoss(losses, pair.chosen_rewards, pair.rejected_rewards)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages: ``A_i = r_i - mean_{j != i} r_j``.

    ``rewards`` is ``[B, K]`` (K samples per prompt, K >= 2); returns ``[B, K]``
    with each row summing to 0. Equivalently ``K / (K - 1) * (r_i - mean_j r_j)``.
    """
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError(f"RLOO needs at least 2 samples per prompt, got {k}")
    total = rewards.sum(dim=-1, keepdim=True)
    baseline = (total - rewards) / (k - 1)
    return rewards - baseline


def rloo_loss(seq_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE loss with (detached) advantages, per example.

    ``seq_logps`` and ``advantages`` are ``[B, K]`` (summed log-probs of the K
    sampled responses of each prompt); returns ``[B]``::

        loss_b = -(1 / K) * sum_k A[b, k] * logp[b, k]

    Plain on-policy REINFORCE: no importance ratio, clipping or KL term (add a
    KL penalty to the rewards before :func:`rloo_advantages` if wanted).
    """
    if seq_logps.shape != advantages.shape:
        raise ValueError(
            f"seq_logps {tuple(seq_logps.shape)} and advantages {tuple(advantages.shape)} differ"
        )
    return -(advantages.detach().to(seq_logps.dtype) * seq_logps).mean(dim=-1)

