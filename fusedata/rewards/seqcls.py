"""Hugging Face sequence-classification reward models (Skywork-Reward, ArmoRM, any ``*ForSequenceClassification``).

Each (prompt, response) pair becomes ``prompt + [{"role": "assistant", "content": response}]``
rendered with the reward model's *own* chat template to text, then tokenised with
``add_special_tokens=False`` — the template already emits whatever BOS it wants, and adding
special tokens again would double it. Only when the template emits no BOS but the tokenizer
normally prepends one is a single BOS put in front.

Items are sorted by length, cut into batches of ``batch_size``, right-padded with an
attention mask, and scored in ``torch.inference_mode``. Classification heads pool the last
token that is not ``pad_token_id``, so the model config's pad id is set (the tokenizer's pad
token, falling back to eos) and padding uses exactly that id: batched scores equal
one-by-one scores.

The score is ``logits[:, 0]`` (Skywork style) or ``output.score`` (ArmoRM's custom head);
``output: auto`` takes ``.score`` when the model output has one. A pair longer than
``max_length`` tokens is truncated keeping its *end* (the response) and its leading BOS;
how many were truncated is logged as a warning and kept in ``truncated``.

A checkpoint whose config names ``LlamaForRewardModelWithGating`` (ArmoRM) is loaded by the
native implementation in ``armorm`` — no remote code, ``trust_remote_code`` is not needed. Its
gate reads the token before the last assistant header, so a pair truncated so far that the
header is gone cannot be scored: its value is NaN and ``last_errors`` says why.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import models
from ..engines.hf import default_device, encode_rendered, implicit_bos, right_pad
from ..errors import FusekitError
from ..records import Message
from . import RewardModel, SeqclsRewardConfig

log = logging.getLogger(__name__)


def seqcls_name(cfg: SeqclsRewardConfig) -> str:
    return cfg.name or f"rm:{cfg.model}"


class SeqClsReward(RewardModel):
    def __init__(self, cfg: SeqclsRewardConfig, *, model: Any = None, tokenizer: Any = None):
        """``cfg`` is a validated spec (see ``validate_spec``). ``model``/``tokenizer`` may be
        passed already loaded (benchmarks, tests); otherwise ``cfg.model`` is loaded."""
        import torch

        super().__init__()
        self.cfg = cfg
        self.name = seqcls_name(cfg)
        self.batch_size = cfg.batch_size
        self.max_length = cfg.max_length
        self.output = cfg.output
        self.truncated = 0
        if model is None or tokenizer is None:
            model, tokenizer = self._load(cfg)  # sets self.device
        else:
            self.device = str(next(model.parameters()).device)
        self.model, self.tokenizer = model.eval(), tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise FusekitError(f"reward model {cfg.model} has no chat template; "
                               "it needs one to render a conversation")

        pad_id = getattr(model.config, "pad_token_id", None)
        if pad_id is None:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise FusekitError(f"reward model {cfg.model} has neither a pad nor an eos token; cannot batch it")
        model.config.pad_token_id = pad_id
        text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        text_cfg.pad_token_id = pad_id
        self.pad_id = int(pad_id)

        self.bos_id = implicit_bos(tokenizer)
        self._torch = torch
        self.gating_pattern = self._gating_pattern(model, tokenizer)

    @staticmethod
    def _gating_pattern(model: Any, tokenizer: Any) -> tuple[int, ...] | None:
        """The ids ArmoRM's gate looks for (taken from the tokenizer); None for other models."""
        from .armorm import ArmoRM

        if not isinstance(model, ArmoRM):
            return None
        model.use_tokenizer(tokenizer)
        return model.gating_pattern

    def _load(self, cfg: SeqclsRewardConfig) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, PretrainedConfig

        from . import armorm

        ref = cfg.model
        try:
            m = models.resolve(ref)
        except FusekitError as e:
            raise FusekitError(f"cannot load reward model {ref}: {e}") from None
        self.device = cfg.device or default_device()
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        kw: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code}
        if cfg.attn_implementation:
            kw["attn_implementation"] = cfg.attn_implementation
        try:
            tok = AutoTokenizer.from_pretrained(m.path, trust_remote_code=kw["trust_remote_code"])
            if armorm.is_armorm(PretrainedConfig.get_config_dict(m.path)[0]):
                del kw["trust_remote_code"]  # the native implementation replaces the remote code
                model = armorm.load_armorm(m.path, **kw)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(m.path, **kw)
        except FusekitError as e:
            raise FusekitError(f"cannot load reward model {ref}: {e}") from None
        except Exception as e:  # noqa: BLE001 - any loader failure is a model that won't load
            hint = ""
            if "LLAMA_INPUTS_DOCSTRING" in str(e):
                hint = " (remote code written for transformers 4.x; fusekit needs transformers >= 5)"
            raise FusekitError(f"cannot load reward model {ref}: {type(e).__name__}: {e}{hint}") from None
        return model.to(self.device), tok

    # ------------------------------------------------------------------ encoding
    def render(self, prompt: list[Message], response: str) -> str:
        msgs = [*prompt, {"role": "assistant", "content": response}]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False)

    def encode(self, prompt: list[Message], response: str) -> tuple[list[int], bool]:
        """Token ids the model sees for one pair, and whether they were truncated."""
        ids = encode_rendered(self.tokenizer, self.render(prompt, response), self.bos_id)
        if len(ids) <= self.max_length:
            return ids, False
        if self.bos_id is not None:
            return [self.bos_id, *ids[len(ids) - self.max_length + 1:]], True
        return ids[-self.max_length:], True

    # ------------------------------------------------------------------ scoring
    def score_many(self, items: list[tuple[list[Message], str]]) -> list[float]:
        self.last_errors = {}
        if not items:
            return []
        encoded = [self.encode(p, r) for p, r in items]
        n_trunc = sum(t for _, t in encoded)
        if n_trunc:
            self.truncated += n_trunc
            log.warning("%s: %d of %d pairs were longer than max_length=%d tokens and were truncated to their end",
                        self.name, n_trunc, len(items), self.max_length)
        scores = [float("nan")] * len(items)
        order = sorted(self._scorable([ids for ids, _ in encoded]), key=lambda i: -len(encoded[i][0]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            for i, s in zip(idx, self._forward([encoded[i][0] for i in idx])):
                scores[i] = s
        return scores

    def _scorable(self, seqs: list[list[int]]) -> list[int]:
        """Indices of the sequences the model can score; for ArmoRM, those that still hold the
        gating tokens after truncation (the others get their reason in ``last_errors``)."""
        if self.gating_pattern is None:
            return list(range(len(seqs)))
        from .armorm import GATING_TEXT, gating_positions

        keep = []
        for i, ids in enumerate(seqs):
            if int(gating_positions(self._torch.tensor([ids]), self.gating_pattern)[0]) >= 0:
                keep.append(i)
            else:
                self.last_errors[i] = (f"no {GATING_TEXT!r} left for ArmoRM's gate in the {len(ids)} tokens "
                                       f"kept (max_length={self.max_length})")
        return keep

    def _forward(self, seqs: list[list[int]]) -> list[float]:
        torch = self._torch
        ids, mask = right_pad(torch, seqs, self.pad_id)
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return self._extract(out, len(seqs))

    def _extract(self, out: Any, n: int) -> list[float]:
        score = getattr(out, "score", None)
        if self.output == "score" or (self.output == "auto" and score is not None):
            if score is None:
                raise FusekitError(f"reward model {self.cfg.model} output has no 'score' field; use output: logits")
            values = score
        else:
            values = out.logits
        return values.reshape(n, -1)[:, 0].float().cpu().tolist()

    def close(self) -> None:
        self.model = None
        if str(getattr(self, "device", "cpu")).startswith("cuda"):
            self._torch.cuda.empty_cache()
