"""The policy: loading (precision, dropout off, checkpointing, LoRA) and the log-prob forward.

:class:`SequenceLogps` is the module the loop (and DDP / FSDP2) wraps: its forward runs the
decoder, keeps only the hidden states that predict response tokens, and turns them into
log-probs chunk by chunk through the LM head (``logprobs.token_logps``), so the
``[tokens × vocab]`` logits never exist whole. Running the head inside this forward (not
after it) is what lets FSDP2 gather the head's weight like any other parameter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fusedata.errors import FusekitError
from fusedata.models import load_causal_lm, resolve

from .config import Config
from .logprobs import sequence_stats, token_logps


def disable_dropout(model: nn.Module) -> None:
    """Dropout off in the policy: otherwise step-0 rewards against the reference are noise."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    for key in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if isinstance(getattr(model.config, key, None), float):
            setattr(model.config, key, 0.0)


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 autocast over fp32 weights on CUDA (auto/bf16), nothing on CPU unless asked."""
    p = cfg.model.precision
    if p == "bf16" or (p == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def load_policy(cfg: Config, device: torch.device) -> nn.Module:
    model = load_causal_lm(resolve(cfg.model.name))  # fp32 master weights; bf16 comes from autocast
    if cfg.model.attn_implementation:
        model.set_attn_implementation(cfg.model.attn_implementation)
    disable_dropout(model)
    model.config.use_cache = False
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.model.lora is not None:
        model = _add_lora(model, cfg)
    model.to(device)
    model.train()
    return model


def _add_lora(model: nn.Module, cfg: Config) -> nn.Module:
    try:
        import peft
    except ImportError as e:
        raise FusekitError("model.lora needs peft: pip install peft") from e
    lc = cfg.model.lora
    if cfg.model.gradient_checkpointing:
        model.enable_input_require_grads()
    # The LM head is read directly by the chunked log-prob path, so an adapter there would get
    # no gradient; keep LoRA on the decoder's linear layers.
    spec = peft.LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
                           exclude_modules=["lm_head"], task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(model, spec)
    except Exception as e:  # noqa: BLE001 - bad target_modules and the like
        raise FusekitError(f"model.lora: {type(e).__name__}: {e}") from e


def load_reference(cfg: Config, device: torch.device) -> nn.Module:
    """A frozen reference model (eval mode, no grad, dropout off)."""
    model = load_causal_lm(resolve(cfg.model.reference or cfg.model.name))
    disable_dropout(model)
    model.config.use_cache = False
    model.requires_grad_(False)
    return model.to(device).eval()


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers CausalLM inside a PEFT wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class SequenceLogps(nn.Module):
    """``forward(**batch.inputs()) -> (sums, means, counts)`` of response-token log-probs per sequence.

    Takes tensors (not the Batch) so DDP can move and inspect its inputs as usual.
    """

    def __init__(self, model: nn.Module, chunk_size: int = 1024, autocast: torch.dtype | None = None):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.autocast = autocast

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None,
                gather_index: torch.Tensor, targets: torch.Tensor, segment: torch.Tensor, n_seqs: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lm = causal_lm(self.model)
        decoder, head = lm.get_decoder(), lm.get_output_embeddings()
        with torch.autocast(input_ids.device.type, dtype=self.autocast or torch.float32,
                            enabled=self.autocast is not None):
            hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False).last_hidden_state
            picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, gather_index)
            weight = head.weight
            if self.autocast is not None:
                weight = weight.to(self.autocast)
            lp = token_logps(picked, weight, targets, self.chunk_size,
                             softcap=getattr(lm.config, "final_logit_softcapping", None))
        return sequence_stats(lp, segment, n_seqs)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_token(model: nn.Module, live_reference: bool = False) -> float:
    """Training FLOPs per token: 6·N_non-embedding + 6·V·d for the head (+2·N for a live reference forward).

    Causal attention FLOPs and checkpoint recomputation are not counted (docs/trainer.md#flops-and-mfu).
    """
    lm = causal_lm(model)
    emb = lm.get_input_embeddings().weight
    head = lm.get_output_embeddings().weight
    n = sum(p.numel() for p in lm.parameters())
    tied = emb.data_ptr() == head.data_ptr()
    non_embed = n - emb.numel() - (0 if tied else head.numel())
    train = 6 * non_embed + 6 * head.numel()
    return float(train + (2 * (non_embed + head.numel()) if live_reference else 0))


# Dense bf16 peak FLOP/s per device (H100/H200 SXM, A100); MFU is reported only for these.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "B200": 2250e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def save_model(model: nn.Module, tokenizer: Any, out: Any, state_dict: dict[str, torch.Tensor] | None,
               merge_lora: bool = True) -> None:
    """Write a Hugging Face model folder (safetensors, config, tokenizer with its chat template)."""
    m = model
    if hasattr(model, "merge_and_unload") and merge_lora:
        if state_dict is not None:
            model.load_state_dict(state_dict, strict=False)
        m, state_dict = model.merge_and_unload(), None
    m.config.use_cache = True
    m.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(out)
