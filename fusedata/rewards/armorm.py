"""ArmoRM (``RLHFlow/ArmoRM-Llama3-8B-v0.1``) written natively for transformers 5, no remote code.

The published checkpoint names its architecture ``LlamaForRewardModelWithGating`` and ships remote
code that no longer imports under transformers 5. This module rebuilds the same network from the
model card and paper (arXiv 2406.12845), with the same module names, so the published safetensors
and config.json load unchanged:

- ``model.*`` — a Llama backbone (transformers' ``LlamaModel``);
- ``regression_layer.weight`` — ``num_objectives`` × hidden, no bias: the objective ratings
  ``r = W h_last`` read at the last token of the conversation;
- ``gating.layers.{0..n}.*`` and ``gating.logit_scale`` — an MLP over the hidden state ``h_gate``
  at the ``<|eot_id|>`` that ends the prompt (the start of the last
  ``<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n``): ``gating_n_hidden`` layers
  of width ``gating_hidden_dim`` with ReLU, a final linear layer to ``num_objectives``, then
  ``g = logit_scale · softmax(z / gating_temperature)``. Causal attention means ``h_gate``
  depends on the prompt only;
- ``reward_transform_matrix`` — ``num_objectives`` × ``num_objectives``, applied as ``r T`` (the
  published one de-correlates the ratings from verbosity).

The preference score (``output.score``) is ``Σ_k g_k · (r T)_k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.utils import ModelOutput

from ..errors import FusekitError

ARCHITECTURE = "LlamaForRewardModelWithGating"
# The token ids of GATING_TEXT under the Llama-3 tokenizer, as the published remote code has them.
GATING_TEXT = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
LLAMA3_GATING_IDS = (128009, 128006, 78191, 128007, 271)


@dataclass
class ArmoRMOutput(ModelOutput):
    """``score``: the preference score per row; ``logits`` is the same tensor (so ``output: logits``
    reads it too); ``rewards``: the objective ratings before the transform; ``gating_output``: the
    weights the gate put on each objective."""

    score: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    gating_output: torch.Tensor | None = None


class GatingNetwork(nn.Module):
    def __init__(self, in_features: int, out_features: int, temperature: float, hidden_dim: int, n_hidden: int):
        super().__init__()
        self.temperature = float(temperature)
        widths = [in_features, *([hidden_dim] * n_hidden), out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.logit_scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        weights = torch.softmax(self.layers[-1](x) / self.temperature, dim=-1)
        return weights * self.logit_scale[0]


def gating_positions(input_ids: torch.Tensor, pattern: tuple[int, ...]) -> torch.Tensor:
    """Per row, the start of the last occurrence of ``pattern``; -1 if none. Padding needs no mask
    here: a run of one repeated pad id never spells the pattern, which holds several different ids."""
    rows, width = input_ids.shape
    k = len(pattern)
    if width < k:
        return torch.full((rows,), -1, dtype=torch.long, device=input_ids.device)
    want = torch.tensor(pattern, dtype=input_ids.dtype, device=input_ids.device)
    hit = (input_ids.unfold(1, k, 1) == want).all(-1)
    starts = torch.arange(width - k + 1, device=input_ids.device).expand_as(hit)
    return torch.where(hit, starts, -1).max(dim=1).values


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the last attended token (any padding side)."""
    index = torch.arange(attention_mask.shape[1], device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), index, -1).max(dim=1).values


class ArmoRM(LlamaPreTrainedModel):
    """``LlamaForRewardModelWithGating`` under transformers 5. ``gating_pattern`` holds the token ids
    the gate looks for; ``use_tokenizer`` sets them from the checkpoint's own tokenizer."""

    gating_pattern: tuple[int, ...] = LLAMA3_GATING_IDS

    def __init__(self, config: Any):
        super().__init__(config)
        n = getattr(config, "num_objectives", 19)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, n, bias=False)
        self.reward_transform_matrix = nn.Parameter(torch.eye(n))
        self.gating = GatingNetwork(config.hidden_size, n, temperature=getattr(config, "gating_temperature", 10),
                                    hidden_dim=getattr(config, "gating_hidden_dim", 1024),
                                    n_hidden=getattr(config, "gating_n_hidden", 3))
        self.post_init()

    def use_tokenizer(self, tokenizer: Any) -> None:
        """Take the gating ids from ``tokenizer``, checking they occur where the chat template puts them."""
        vocab = tokenizer.get_vocab()
        lacking = [t for t in ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>") if t not in vocab]
        if lacking:
            raise FusekitError(f"ArmoRM needs a Llama-3 tokenizer; this one has no {', '.join(lacking)}")
        pattern = tuple(tokenizer(GATING_TEXT, add_special_tokens=False)["input_ids"])
        probe = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                               {"role": "assistant", "content": "Hello"}], tokenize=False)
        ids = torch.tensor([tokenizer(probe, add_special_tokens=False)["input_ids"]])
        if int(gating_positions(ids, pattern)[0]) < 0:
            raise FusekitError("ArmoRM's gate reads the token before the assistant header, but this tokenizer's "
                               f"chat template does not produce {GATING_TEXT!r} before the response")
        self.gating_pattern = pattern

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> ArmoRMOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        gate_at = gating_positions(input_ids, self.gating_pattern)
        if bool((gate_at < 0).any()):
            raise FusekitError(f"ArmoRM: a sequence has no {GATING_TEXT!r} before its response (the gate reads it)")
        # Padded slots are never attended by real tokens, so their ids do not matter; a tokenizer's
        # added pad token may lie outside the embedding, hence any in-range id.
        safe_ids = input_ids.masked_fill(attention_mask == 0, 0)
        hidden = self.model(input_ids=safe_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        rewards = self.regression_layer(hidden[rows, last_positions(attention_mask)])
        weights = self.gating(hidden[rows, gate_at])
        score = (weights * (rewards @ self.reward_transform_matrix)).sum(dim=-1)
        return ArmoRMOutput(score=score, logits=score, rewards=rewards, gating_output=weights)


def is_armorm(config: dict[str, Any]) -> bool:
    """Whether a config.json dict describes an ArmoRM checkpoint."""
    return ARCHITECTURE in (config.get("architectures") or ())


def load_armorm(path: str, **kwargs: Any) -> ArmoRM:
    """Load an ArmoRM checkpoint; a tensor the checkpoint lacks is an error (it would stay random)."""
    model, info = ArmoRM.from_pretrained(path, output_loading_info=True, **kwargs)
    if info.get("missing_keys"):
        raise FusekitError(f"{path} is not a complete ArmoRM checkpoint: it lacks "
                           f"{', '.join(sorted(info['missing_keys']))}")
    return model
