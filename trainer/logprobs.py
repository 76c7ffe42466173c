"""Per-token and per-sequence log-probabilities without ever holding the whole [tokens × vocab] logits.

``token_logps`` takes the final hidden states at the positions that predict a response
token (shift already applied: ``hidden[i]`` predicts ``targets[i]``) and the LM head's
weight, and computes log p(target) chunk by chunk. Each chunk's logits are recomputed in
the backward pass (activation checkpointing), so peak memory is one chunk of logits,
not ``n_tokens × vocab`` — the difference between 1 GB and 8 MB for 4 × 256 tokens of a
262k-vocabulary model like Gemma 3.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _chunk_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                 softcap: float | None = None) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    if softcap:  # Gemma 2 style final-logit soft-capping
        logits = torch.tanh(logits / softcap) * softcap
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def token_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024,
                softcap: float | None = None) -> torch.Tensor:
    """log p(targets[i] | hidden[i]) for hidden [N, H], weight [V, H], targets [N] → [N] (fp32)."""
    if hidden.shape[0] != targets.shape[0]:
        raise ValueError(f"hidden has {hidden.shape[0]} positions but targets has {targets.shape[0]}")
    out = []
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            out.append(checkpoint(_chunk_logps, h, weight, t, softcap, use_reentrant=False))
        else:
            out.append(_chunk_logps(h, weight, t, softcap))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def sequence_stats(token_lp: torch.Tensor, segment: torch.Tensor, n_segments: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sequence (sum, mean, count) of token log-probs; ``segment[i]`` is token i's sequence index.

    Works for padded batches (segment = row index of each kept position) and packed ones alike.
    A sequence with no tokens gets sum 0, count 0 and mean 0 (the count is clamped for the
    division), never NaN.
    """
    sums = torch.zeros(n_segments, dtype=token_lp.dtype, device=token_lp.device).index_add(0, segment, token_lp)
    counts = torch.zeros(n_segments, dtype=token_lp.dtype, device=token_lp.device).index_add(
        0, segment, torch.ones_like(token_lp))
    return sums, sums / counts.clamp_min(1), counts
