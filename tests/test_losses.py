"""Golden-value tests for trainer.losses.

Expected values are written out by hand from small numbers and evaluated with
``math`` (never by routing the same formula through torch), so a sign, a
misplaced beta or a wrong gamma convention shows up as a numeric mismatch.

``test_trl_*`` put the same numbers through TRL's own DPO and SimPO losses.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainer.logprobs import sequence_stats
from trainer.losses import (
    PreferenceLoss,
    WRPORewards,
    alpha_at,
    dpo_loss,
    fusepo_loss,
    gamma_from_ratio,
    response_nll,
    rloo_advantages,
    rloo_loss,
    simpo_loss,
    weighted_sft_loss,
    wrpo_loss,
    wrpo_rewards,
    wrpo_simpo_loss,
)

torch.set_num_threads(1)


def softplus(x: float) -> float:
    """log(1 + e^x) = -log sigmoid(-x), by hand."""
    return math.log1p(math.exp(x))


def t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def close(actual: torch.Tensor, expected, tol: float = 1e-12) -> None:
    exp = torch.as_tensor(expected, dtype=actual.dtype)
    assert actual.shape == exp.shape, (actual.shape, exp.shape)
    assert torch.allclose(actual, exp, atol=tol, rtol=0), (actual, exp)


# --------------------------------------------------------------------------- #
# DPO
# --------------------------------------------------------------------------- #


def test_dpo_hand_values() -> None:
    # ex 0: chosen logratio -10-(-11) = 1, rejected -12-(-11.5) = -0.5, m = 1.5
    # ex 1: chosen logratio 0, rejected -4-(-5) = 1, m = -1
    out = dpo_loss(t(-10.0, -5.0), t(-12.0, -4.0), t(-11.0, -5.0), t(-11.5, -5.0), beta=0.1)
    assert isinstance(out, PreferenceLoss)
    losses, chosen, rejected = out  # 3-tuple unpacking
    close(losses, [softplus(-0.15), softplus(0.1)])
    close(chosen, [0.1, 0.0])
    close(rejected, [-0.05, 0.1])


def test_dpo_label_smoothing() -> None:
    losses, _, _ = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.5), beta=0.1, label_smoothing=0.1)
    # -(0.9) log s(0.15) - 0.1 log s(-0.15)
    close(losses, [0.9 * softplus(-0.15) + 0.1 * softplus(0.15)])


def test_dpo_policy_equals_reference_is_ln2() -> None:
    x, y = t(-3.0, -7.5), t(-4.0, -2.0)
    losses, chosen, rejected = dpo_loss(x, y, x.clone(), y.clone(), beta=0.1)
    close(losses, [math.log(2.0)] * 2)
    close(chosen, [0.0, 0.0])
    close(rejected, [0.0, 0.0])


def test_dpo_length_normalised_is_dpo_on_means() -> None:
    # LN-DPO = the same function fed per-token means (policy AND reference).
    # chosen: sum -12 over 4 tokens, ref -14 over 4; rejected: -9 / 3, ref -6 / 3
    # averaged logratios: (-3 + 3.5) - (-3 + 2) = 0.5 + 1 = 1.5; beta 10 -> 15
    losses, chosen, rejected = dpo_loss(t(-12 / 4), t(-9 / 3), t(-14 / 4), t(-6 / 3), beta=10.0)
    close(losses, [softplus(-15.0)])
    close(chosen, [5.0])
    close(rejected, [-10.0])


def test_dpo_bad_args() -> None:
    with pytest.raises(ValueError):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), beta=0.0)
    with pytest.raises(ValueError):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), beta=0.1, label_smoothing=0.6)


# --------------------------------------------------------------------------- #
# SimPO
# --------------------------------------------------------------------------- #


def test_simpo_hand_values() -> None:
    # z = 2 * (-1.2 + 1.8) - 0.5 = 0.7
    losses, chosen, rejected = simpo_loss(t(-1.2), t(-1.8), beta=2.0, gamma=0.5)
    close(losses, [softplus(-0.7)])
    close(chosen, [-2.4])
    close(rejected, [-3.6])


def test_simpo_gamma_shifts_margin() -> None:
    # equal averages: z = -gamma, so the loss is softplus(gamma)
    losses, _, _ = simpo_loss(t(-1.0), t(-1.0), beta=2.5, gamma=1.25)
    close(losses, [softplus(1.25)])
    losses0, _, _ = simpo_loss(t(-1.0), t(-1.0), beta=2.5, gamma=0.0)
    close(losses0, [math.log(2.0)])


def test_simpo_label_smoothing() -> None:
    losses, _, _ = simpo_loss(t(-1.2), t(-1.8), beta=2.0, gamma=0.5, label_smoothing=0.2)
    close(losses, [0.8 * softplus(-0.7) + 0.2 * softplus(0.7)])


def test_gamma_from_ratio_conventions() -> None:
    # SimPO repo defaults: beta 2.0, gamma/beta 0.25 -> gamma 0.5
    assert gamma_from_ratio(2.0, 0.25) == pytest.approx(0.5)
    assert gamma_from_ratio(2.5, 0.55) == pytest.approx(1.375)
    beta, ratio, c, r = 2.5, 0.4, -0.9, -1.3
    # SimPO-repo form: -log s(beta * (c - r - ratio)) = softplus(-2.5 * (0.4 - 0.4)) = ln 2
    repo = softplus(-beta * ((c - r) - ratio))
    # TRL form with absolute gamma = 1.0: logits = (c - r) - gamma / beta
    trl = softplus(-beta * ((c - r) - 1.0 / beta))
    assert repo == pytest.approx(math.log(2.0))
    assert trl == pytest.approx(repo)
    losses, _, _ = simpo_loss(t(c), t(r), beta=beta, gamma=gamma_from_ratio(beta, ratio))
    close(losses, [repo])
    # the trap: feeding the ratio as an absolute gamma is a different loss
    wrong, _, _ = simpo_loss(t(c), t(r), beta=beta, gamma=ratio)
    close(wrong, [softplus(-(beta * (c - r) - ratio))])
    assert abs(wrong.item() - repo) > 0.1


# --------------------------------------------------------------------------- #
# WRPO
# --------------------------------------------------------------------------- #

# logratios: source 2, target 0.5, rejected -1
WRPO_ARGS = dict(
    policy_source=(-20.0,),
    policy_target=(-15.0,),
    policy_rejected=(-18.0,),
    ref_source=(-22.0,),
    ref_target=(-15.5,),
    ref_rejected=(-17.0,),
)


def _wrpo_inputs() -> dict[str, torch.Tensor]:
    return {k: t(*v) for k, v in WRPO_ARGS.items()}


def test_wrpo_alpha_zero_is_dpo_on_target() -> None:
    x = _wrpo_inputs()
    w = wrpo_loss(**x, alpha=0.0, beta=0.1)
    d = dpo_loss(x["policy_target"], x["policy_rejected"], x["ref_target"], x["ref_rejected"], beta=0.1)
    for a, b in zip(w, d):
        close(a, b)
    # z = 0.1 * (0.5 + 1) = 0.15
    close(w.losses, [softplus(-0.15)])


def test_wrpo_alpha_one_is_dpo_on_source() -> None:
    x = _wrpo_inputs()
    w = wrpo_loss(**x, alpha=1.0, beta=0.1)
    d = dpo_loss(x["policy_source"], x["policy_rejected"], x["ref_source"], x["ref_rejected"], beta=0.1)
    for a, b in zip(w, d):
        close(a, b)
    # z = 0.1 * (2 + 1) = 0.3
    close(w.losses, [softplus(-0.3)])


def test_wrpo_alpha_03_by_hand() -> None:
    x = _wrpo_inputs()
    losses, chosen, rejected = wrpo_loss(**x, alpha=0.3, beta=0.1)
    # mixed = 0.3 * 2 + 0.7 * 0.5 = 0.95; z = 0.1 * (0.95 + 1) = 0.195
    close(losses, [softplus(-0.195)])
    close(chosen, [0.095])
    close(rejected, [-0.1])
    smoothed, _, _ = wrpo_loss(**x, alpha=0.3, beta=0.1, label_smoothing=0.1)
    close(smoothed, [0.9 * softplus(-0.195) + 0.1 * softplus(0.195)])


def test_wrpo_reward_columns() -> None:
    x = _wrpo_inputs()
    r = wrpo_rewards(*x.values(), 0.3, 0.1)
    assert isinstance(r, WRPORewards)
    close(r.source, [0.2])
    close(r.target, [0.05])
    close(r.chosen, [0.095])
    close(r.rejected, [-0.1])
    # consistent with the loss' own rewards
    _, chosen, rejected = wrpo_loss(*x.values(), 0.3, 0.1)
    close(r.chosen, chosen)
    close(r.rejected, rejected)
    # reference-free columns are beta * policy
    rf = wrpo_rewards(t(-0.8), t(-1.0), t(-1.5), None, None, None, 0.3, 2.0)
    close(rf.source, [-1.6])
    close(rf.target, [-2.0])
    close(rf.chosen, [0.3 * -1.6 + 0.7 * -2.0])
    close(rf.rejected, [-3.0])
    with pytest.raises(ValueError):
        wrpo_rewards(t(0.0), t(0.0), t(0.0), t(0.0), None, None, 0.3, 0.1)


def test_wrpo_bad_alpha() -> None:
    with pytest.raises(ValueError):
        wrpo_loss(**_wrpo_inputs(), alpha=1.5, beta=0.1)


def test_wrpo_simpo_hand_values() -> None:
    # mixed = 0.3 * -0.8 + 0.7 * -1.0 = -0.94; z = 2 * (-0.94 + 1.5) - 0.5 = 0.62
    losses, chosen, rejected = wrpo_simpo_loss(t(-0.8), t(-1.0), t(-1.5), alpha=0.3, beta=2.0, gamma=0.5)
    close(losses, [softplus(-0.62)])
    close(chosen, [-1.88])
    close(rejected, [-3.0])
    # alpha 0 -> SimPO on (target, rejected); alpha 1 -> on (source, rejected)
    a0 = wrpo_simpo_loss(t(-0.8), t(-1.0), t(-1.5), alpha=0.0, beta=2.0, gamma=0.5)
    close(a0.losses, [softplus(-(2 * 0.5 - 0.5))])
    a1 = wrpo_simpo_loss(t(-0.8), t(-1.0), t(-1.5), alpha=1.0, beta=2.0, gamma=0.5)
    close(a1.losses, [softplus(-(2 * 0.7 - 0.5))])


# --------------------------------------------------------------------------- #
# alpha schedule
# --------------------------------------------------------------------------- #


def test_alpha_at_linear() -> None:
    assert alpha_at(0, 100, 0.1) == 0.0
    assert alpha_at(50, 100, 0.1) == pytest.approx(0.05)
    assert alpha_at(99, 100, 0.1) == pytest.approx(0.099)  # last step read before update
    assert alpha_at(100, 100, 0.1) == pytest.approx(0.1)
    assert alpha_at(250, 100, 0.1) == pytest.approx(0.1)  # clamped beyond the end
    assert alpha_at(-3, 100, 0.1) == 0.0


def test_alpha_at_fixed_and_errors() -> None:
    assert alpha_at(0, 100, 0.1, schedule="fixed") == pytest.approx(0.1)
    assert alpha_at(77, 100, 0.1, schedule="fixed") == pytest.approx(0.1)
    assert alpha_at(0, 0, 0.2, schedule="constant") == pytest.approx(0.2)
    with pytest.raises(ValueError):
        alpha_at(0, 100, 0.1, schedule="cosine")
    with pytest.raises(ValueError):
        alpha_at(0, 0, 0.1)
    with pytest.raises(ValueError):
        alpha_at(0, 10, 1.5)


# --------------------------------------------------------------------------- #
# weighted SFT
# --------------------------------------------------------------------------- #


def seq(token_logps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, T] token log-probs and mask -> per-response (sums, counts), through the trainer's own reducer."""
    rows = torch.arange(mask.shape[0]).unsqueeze(1).expand_as(mask)
    keep = mask.bool()
    sums, _, counts = sequence_stats(token_logps[keep], rows[keep], mask.shape[0])
    return sums, counts


def test_weighted_sft_hand_values_with_all_masked_row() -> None:
    logps = torch.tensor(
        [[-1.0, -2.0, -3.0], [-0.5, -0.5, 9.0], [-7.0, -7.0, -7.0]], dtype=torch.float64, requires_grad=True
    )
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    sums, counts = seq(logps, mask)
    # per-response NLL: 6/3 = 2, 1/2 = 0.5, all-masked -> 0
    close(response_nll(sums, counts), [2.0, 0.5, 0.0])
    loss = weighted_sft_loss(sums, counts, t(0.5, 0.3, 0.2))
    close(loss, 0.5 * 2.0 + 0.3 * 0.5 + 0.2 * 0.0)
    loss.backward()
    assert torch.isfinite(logps.grad).all()
    close(logps.grad[2], [0.0, 0.0, 0.0])  # masked row gets no gradient
    close(logps.grad[1], [-0.3 / 2, -0.3 / 2, 0.0])


def test_weighted_sft_is_weighted_mean() -> None:
    logps = t(-1.0, -2.0, -3.0).reshape(1, 3).repeat(3, 1)
    logps = logps * torch.tensor([[1.0], [0.25], [3.0]], dtype=torch.float64)
    mask = torch.ones(3, 3, dtype=torch.bool)
    # NLLs 2, 0.5, 6; weights 2, 1, 1 -> (4 + 0.5 + 6) / 4
    close(weighted_sft_loss(*seq(logps, mask), t(2.0, 1.0, 1.0)), (4.0 + 0.5 + 6.0) / 4.0)
    # two prompts, weights per prompt sum to 1 -> mean over prompts of weighted NLL
    logps4 = torch.cat([logps, logps[:1]])
    mask4 = torch.ones(4, 3, dtype=torch.bool)
    w = t(0.7, 0.3, 0.6, 0.4)  # prompt A: rows 0-1, prompt B: rows 2-3
    prompt_a = 0.7 * 2.0 + 0.3 * 0.5
    prompt_b = 0.6 * 6.0 + 0.4 * 2.0
    close(weighted_sft_loss(*seq(logps4, mask4), w), (prompt_a + prompt_b) / 2)
    # all-zero weights give 0, not NaN
    close(weighted_sft_loss(*seq(logps, mask), t(0.0, 0.0, 0.0)), 0.0)


def test_weighted_sft_token_normalisation_weighs_every_token_alike() -> None:
    sums, counts = t(-6.0, -1.0, -12.0), t(3.0, 2.0, 4.0)
    # sum_i w_i * -logp_i over sum_i w_i * |y_i|: (0.5*6 + 1*1 + 2*12) / (0.5*3 + 1*2 + 2*4)
    close(weighted_sft_loss(sums, counts, t(0.5, 1.0, 2.0), "token"), 28.0 / 11.5)
    # equal weights: total NLL over total tokens, whatever the split into responses
    close(weighted_sft_loss(sums, counts, t(1.0, 1.0, 1.0), "token"), 19.0 / 9.0)


@pytest.mark.parametrize("normalize, whole, first, second", [
    # NLLs 2, 0.5, 3 with weights 0.5, 1, 2: D = 3.5
    ("response", (1.0 + 0.5 + 6.0) / 3.5, (1.0 + 0.5) / 3.5, 6.0 / 3.5),
    # D = 0.5*3 + 1*2 + 2*4 = 11.5
    ("token", (3.0 + 1.0 + 24.0) / 11.5, (3.0 + 1.0) / 11.5, 24.0 / 11.5),
])
def test_weighted_sft_global_denominator_splits_exactly(normalize, whole, first, second) -> None:
    sums, counts, w = t(-6.0, -1.0, -12.0), t(3.0, 2.0, 4.0), t(0.5, 1.0, 2.0)
    close(weighted_sft_loss(sums, counts, w, normalize), whole)
    # Micro-batches share the step's denominator, so their losses add up to the whole batch's.
    d = 3.5 if normalize == "response" else 11.5
    a = weighted_sft_loss(sums[:2], counts[:2], w[:2], normalize, denominator=d)
    b = weighted_sft_loss(sums[2:], counts[2:], w[2:], normalize, denominator=d)
    close(a, first)
    close(b, second)
    close(a + b, whole)


def test_weighted_sft_shape_and_mode_errors() -> None:
    with pytest.raises(ValueError):
        response_nll(torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError):
        weighted_sft_loss(torch.zeros(2), torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError):
        weighted_sft_loss(torch.zeros(2), torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError):
        weighted_sft_loss(torch.zeros(2), torch.ones(2), torch.ones(2), "sequence")


# --------------------------------------------------------------------------- #
# FusePO
# --------------------------------------------------------------------------- #


def test_fusepo_dpo_weights() -> None:
    # source 1: m = 1.5 -> beta m 0.15; source 2: m = 0 - (-0.5) = 0.5 -> 0.05
    pc, pr = t(-10.0, -8.0).reshape(1, 2), t(-12.0, -9.0).reshape(1, 2)
    rc, rr = t(-11.0, -8.0).reshape(1, 2), t(-11.5, -8.5).reshape(1, 2)
    w = t(0.7, 0.3).reshape(1, 2)
    losses, chosen, rejected = fusepo_loss(pc, pr, rc, rr, w, beta=0.1)
    close(losses, [0.7 * softplus(-0.15) + 0.3 * softplus(-0.05)])
    close(chosen, [[0.1, 0.0]])
    close(rejected, [[-0.05, -0.05]])
    # a one-hot weight recovers plain DPO on that source
    one_hot, _, _ = fusepo_loss(pc, pr, rc, rr, t(0.0, 1.0).reshape(1, 2), beta=0.1)
    close(one_hot, [softplus(-0.05)])


def test_fusepo_simpo_weights() -> None:
    # z1 = 2 * 0.6 - 0.5 = 0.7; z2 = 2 * 0.1 - 0.5 = -0.3
    c, r = t(-1.2, -0.9).reshape(1, 2), t(-1.8, -1.0).reshape(1, 2)
    losses, chosen, rejected = fusepo_loss(
        c, r, None, None, t(0.7, 0.3).reshape(1, 2), beta=2.0, form="simpo", gamma=0.5
    )
    close(losses, [0.7 * softplus(-0.7) + 0.3 * softplus(0.3)])
    close(chosen, [[-2.4, -1.8]])
    close(rejected, [[-3.6, -2.0]])


def test_fusepo_bad_args() -> None:
    x = t(0.0, 0.0).reshape(1, 2)
    with pytest.raises(ValueError):
        fusepo_loss(x, x, None, None, x, beta=0.1, form="dpo")
    with pytest.raises(ValueError):
        fusepo_loss(x, x, x, x, x, beta=0.1, form="dpo", gamma=0.5)
    with pytest.raises(ValueError):
        fusepo_loss(x, x, x, x, x, beta=0.1, form="ipo")


# --------------------------------------------------------------------------- #
# RLOO
# --------------------------------------------------------------------------- #


def test_rloo_advantages_by_hand() -> None:
    a = rloo_advantages(t(1.0, 2.0, 3.0, 6.0).reshape(1, 4))
    # 1 - 11/3, 2 - 10/3, 3 - 9/3, 6 - 6/3
    close(a, [[-8 / 3, -4 / 3, 0.0, 4.0]])
    close(a.sum(dim=-1), [0.0])
    b = rloo_advantages(torch.randn(5, 3, dtype=torch.float64))
    close(b.sum(dim=-1), [0.0] * 5, tol=1e-12)
    with pytest.raises(ValueError):
        rloo_advantages(t(1.0).reshape(1, 1))


def test_rloo_loss_by_hand() -> None:
    logps = t(-1.0, -2.0, -3.0, -4.0, grad=True)
    rewards = t(1.0, 2.0, 3.0, 6.0, grad=True)
    adv = rloo_advantages(rewards.reshape(1, 4))
    loss = rloo_loss(logps.reshape(1, 4), adv)
    # -(1/4) * (8/3 + 8/3 + 0 - 16) = 8/3
    close(loss, [8 / 3])
    loss.sum().backward()
    close(logps.grad, [2 / 3, 1 / 3, 0.0, -1.0])  # -A / K
    assert rewards.grad is None  # advantages are detached


# --------------------------------------------------------------------------- #
# gradients and stability
# --------------------------------------------------------------------------- #


def _leaves(n: int, shape=(3,)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [(-5 * torch.rand(shape, generator=g, dtype=torch.float64)).requires_grad_() for _ in range(n)]


@pytest.mark.parametrize(
    "name",
    ["dpo", "simpo", "wrpo", "wrpo_simpo", "fusepo_dpo", "fusepo_simpo"],
)
def test_gradients_flow_and_rewards_detached(name: str) -> None:
    if name == "dpo":
        xs = _leaves(4)
        out = dpo_loss(*xs, beta=0.1, label_smoothing=0.1)
    elif name == "simpo":
        xs = _leaves(2)
        out = simpo_loss(*xs, beta=2.0, gamma=0.5)
    elif name == "wrpo":
        xs = _leaves(6)
        out = wrpo_loss(*xs, alpha=0.3, beta=0.1)
        cols = wrpo_rewards(*xs, 0.3, 0.1)
        assert all(not c.requires_grad for c in cols)
    elif name == "wrpo_simpo":
        xs = _leaves(3)
        out = wrpo_simpo_loss(*xs, alpha=0.3, beta=2.0, gamma=0.5)
    elif name == "fusepo_dpo":
        xs = _leaves(4, shape=(3, 4))
        w = torch.softmax(torch.randn(3, 4, dtype=torch.float64), dim=-1)
        out = fusepo_loss(*xs, w, beta=0.1)
    else:
        xs = _leaves(2, shape=(3, 4))
        w = torch.softmax(torch.randn(3, 4, dtype=torch.float64), dim=-1)
        out = fusepo_loss(*xs, None, None, w, beta=2.0, form="simpo", gamma=0.5)
    losses, chosen, rejected = out
    assert losses.shape == (3,)
    assert not chosen.requires_grad and not rejected.requires_grad
    losses.mean().backward()
    for x in xs:
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0


def test_large_margins_are_stable() -> None:
    big = torch.tensor([1e4, -1e4], dtype=torch.float32, requires_grad=True)
    zero = torch.zeros(2)
    losses, _, _ = dpo_loss(big, zero, zero, zero, beta=1.0)
    assert torch.isfinite(losses).all()
    assert losses[0].item() == pytest.approx(0.0, abs=1e-6)
    assert losses[1].item() == pytest.approx(1e4, rel=1e-6)
    losses.sum().backward()
    assert torch.isfinite(big.grad).all()


# --------------------------------------------------------------------------- #
# TRL cross-check: the same log-prob numbers through TRL's own losses
# --------------------------------------------------------------------------- #

POLICY_C, POLICY_R = [-10.0, -5.0, -31.5, -7.25], [-12.0, -4.0, -30.0, -9.0]
REF_C, REF_R = [-11.0, -5.0, -33.0, -7.0], [-11.5, -5.0, -29.0, -8.5]


def _trl_dpo(tmp_path, tiny_llama, loss_type: str, beta: float, counts: list[int] | None = None) -> torch.Tensor:
    """TRL DPOTrainer's loss (mean over pairs) with its model replaced by fixed per-token log-probs.

    The sequence log-probs are put on the first completion token, so TRL's masked sum (and, for
    ``sigmoid_norm``, its division by the completion length) sees exactly our numbers.
    """
    from types import SimpleNamespace

    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    ds = datasets.Dataset.from_list([{"prompt": "q", "chosen": " a", "rejected": " b"}] * 2)
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=beta, loss_type=[loss_type], report_to=[], use_cpu=True,
                     precompute_ref_log_probs=False, per_device_train_batch_size=2)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    n, width = len(POLICY_C), 8
    counts = counts or [4] * (2 * n)
    mask = torch.zeros(2 * n, width, dtype=torch.long)
    for i, c in enumerate(counts):
        mask[i, 1:1 + c] = 1
    logps = torch.zeros(2 * n, width - 1, dtype=torch.float64)
    logps[:, 0] = torch.tensor(POLICY_C + POLICY_R, dtype=torch.float64)
    zeros = torch.zeros(2 * n, width - 1)
    out = SimpleNamespace(log_probs=logps, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())
    trainer.precompute_ref_logps = True  # take our reference numbers from the batch
    inputs = {"input_ids": torch.ones(2 * n, width, dtype=torch.long), "attention_mask": torch.ones(2 * n, width),
              "completion_mask": mask, "ref_chosen_logps": torch.tensor(REF_C, dtype=torch.float64),
              "ref_rejected_logps": torch.tensor(REF_R, dtype=torch.float64)}
    return trainer._compute_loss(lambda **kw: out, inputs, False)


def test_trl_dpo_loss_matches(tmp_path, tiny_llama) -> None:
    pytest.importorskip("trl")
    ours = dpo_loss(t(*POLICY_C), t(*POLICY_R), t(*REF_C), t(*REF_R), beta=0.1).losses.mean()
    assert float(_trl_dpo(tmp_path, tiny_llama, "sigmoid", 0.1)) == pytest.approx(float(ours), abs=1e-6)


def test_trl_length_normalised_dpo_matches(tmp_path, tiny_llama) -> None:
    pytest.importorskip("trl")
    counts = [4, 2, 7, 3, 5, 1, 6, 2]  # chosen lengths, then rejected lengths
    nc, nr = t(*counts[:4]), t(*counts[4:])
    ours = dpo_loss(t(*POLICY_C) / nc, t(*POLICY_R) / nr, t(*REF_C) / nc, t(*REF_R) / nr, beta=10.0).losses.mean()
    got = _trl_dpo(tmp_path, tiny_llama, "sigmoid_norm", 10.0, counts)
    assert float(got) == pytest.approx(float(ours), abs=1e-6)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_trl_simpo_loss_matches(label_smoothing: float) -> None:
    pytest.importorskip("trl")
    from types import SimpleNamespace

    from trl.experimental.cpo import CPOTrainer

    c, r = t(-1.2, -0.4, -2.0, -0.9), t(-1.5, -0.3, -2.6, -0.8)
    beta, gamma = 2.5, 0.8
    # cpo_loss only reads these attributes; TRL takes the absolute gamma (simpo_gamma).
    fake = SimpleNamespace(alpha=0.0, loss_type="simpo", beta=beta, simpo_gamma=gamma, label_smoothing=label_smoothing,
                           accelerator=SimpleNamespace(device="cpu"))
    trl_losses, trl_c, trl_r = CPOTrainer.cpo_loss(fake, c, r)
    ours = simpo_loss(c, r, beta=beta, gamma=gamma, label_smoothing=label_smoothing)
    close(ours.losses, trl_losses.tolist(), tol=1e-6)
    close(ours.chosen_rewards, trl_c.tolist(), tol=1e-6)
    close(ours.rejected_rewards, trl_r.tolist(), tol=1e-6)
    # The SimPO repository's gamma/beta ratio gives the same loss after conversion.
    ratio = simpo_loss(c, r, beta=beta, gamma=gamma_from_ratio(beta, gamma / beta), label_smoothing=label_smoothing)
    close(ratio.losses, trl_losses.tolist(), tol=1e-6)
