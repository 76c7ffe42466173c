"""In-process generation with transformers: batched, left-padded, the model's own chat template."""

from __future__ import annotations

import time
from typing import Any

from .. import models
from ..records import Response, SamplingParams
from . import EngineConfig, GenRequest, chat_messages, sample_seed


class TransformersEngine:
    def __init__(self, config: EngineConfig):
        import torch

        self.config = config
        self.ref = models.resolve(config.model)
        self.tokenizer = models.load_tokenizer(self.ref)
        device = config.extra.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model = models.load_causal_lm(self.ref, dtype=dtype, device=device)
        self.device = device
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.stop = tuple(config.stop) or self.ref.stop
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_ids = eos

    def render(self, req: GenRequest) -> str:
        return self.tokenizer.apply_chat_template(
            chat_messages(req.prompt, self.config), add_generation_prompt=True, tokenize=False
        ) + req.prefill

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]:
        rows = [(req, i) for req in requests for i in req.sample_indices]
        t0 = time.perf_counter()
        try:
            texts = self._generate_rows([self.render(req) for req, _ in rows], rows, params)
        except Exception as e:  # noqa: BLE001 - the batch fails as records, the run goes on
            err = f"{type(e).__name__}: {e}"
            return [Response(r.prompt.id, self.config.name, params.hash(), i, None, error=err) for r, i in rows]
        secs = (time.perf_counter() - t0) / max(len(rows), 1)
        return [
            Response(req.prompt.id, self.config.name, params.hash(), i, (req.prefill + text) if req.prefill else text,
                     finish, n_in, n_out, None, secs)
            for (req, i), (text, finish, n_in, n_out) in zip(rows, texts)
        ]

    def _generate_rows(
        self, rendered: list[str], rows: list[tuple[GenRequest, int]], params: SamplingParams
    ) -> list[tuple[str, str, int, int]]:
        import torch

        # The template already emits any BOS it wants; adding special tokens would double it.
        enc = self.tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        req0, idx0 = rows[0]
        torch.manual_seed(sample_seed(params, req0.prompt.id, idx0))
        gen_kw: dict[str, Any] = dict(
            max_new_tokens=params.max_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
            repetition_penalty=params.repetition_penalty,
        )
        if params.temperature > 0:
            gen_kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop:
            gen_kw.update(stop_strings=list(self.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kw)
        new = out[:, enc["input_ids"].shape[1]:]
        n_in = enc["attention_mask"].sum(dim=1).tolist()
        # Finished rows are padded with pad_token_id (eos for SmolLM2): both end a response.
        ends = set(self.eos_ids) | {self.tokenizer.pad_token_id}
        results = []
        for row, ids in enumerate(new.tolist()):
            n_out, finish = len(ids), "length"
            for j, t in enumerate(ids):
                if t in ends:
                    n_out, finish = j + 1, "stop"
                    break
            text = self.tokenizer.decode(ids[:n_out], skip_special_tokens=True)
            cut = min((text.find(s) for s in self.stop if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            results.append((text.strip(), finish, int(n_in[row]), n_out))
        return results

    def close(self) -> None:
        del self.model
