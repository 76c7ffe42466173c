"""Chunked log-prob gathering equals the full log-softmax, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.logprobs import sequence_stats, token_logps


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunked_equals_full_log_softmax_values_and_grads(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(7, 5, requires_grad=True)
    weight = torch.randn(11, 5, requires_grad=True)
    targets = torch.randint(0, 11, (7,))
    full = torch.log_softmax(hidden @ weight.t(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    got = token_logps(hidden, weight, targets, chunk_size=chunk)
    assert torch.allclose(got, full, atol=1e-6)
    g_full = torch.autograd.grad(full.sum(), (hidden, weight))
    g_got = torch.autograd.grad(token_logps(hidden, weight, targets, chunk_size=chunk).sum(), (hidden, weight))
    for a, b in zip(g_got, g_full):
        assert torch.allclose(a, b, atol=1e-5)


def test_hand_computed_two_token_vocab():
    # logits = [1, 0] for the one position: log p(token 0) = 1 - log(e + 1)
    hidden = torch.tensor([[1.0]])
    weight = torch.tensor([[1.0], [0.0]])
    got = token_logps(hidden, weight, torch.tensor([0]))
    assert got.item() == pytest.approx(1 - math.log(math.e + 1), abs=1e-6)


def test_sequence_stats_sum_mean_count_and_empty_sequence():
    lp = torch.tensor([-1.0, -2.0, -3.0, -0.5])
    seg = torch.tensor([0, 0, 0, 2])  # sequence 1 has no response tokens left
    s, m, c = sequence_stats(lp, seg, 3)
    assert s.tolist() == [-6.0, 0.0, -0.5]
    assert m.tolist() == [-2.0, 0.0, -0.5]
    assert c.tolist() == [3.0, 0.0, 1.0]
    assert not torch.isnan(m).any()
