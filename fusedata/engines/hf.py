"""In-process generation with transformers: batched, left-padded, the model's own chat template.

Besides generating, the engine scores: :meth:`TransformersEngine.next_token_logprobs` gives the
distribution of the token after each of a batch of sequences (right-padded, length-sorted by
the caller), which is what an in-process judge reads its first-token log-probs from.
"""

from __future__ import annotations

import time
from typing import Any

from .. import models
from ..records import Message, Response, SamplingParams
from . import EngineConfig, GenRequest, chat_messages, sample_seed


def right_pad(torch: Any, seqs: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Right-padded ids and attention mask for token-id lists (readers pool or read the last real token)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def implicit_bos(tokenizer: Any) -> int | None:
    """The BOS id the tokenizer prepends when asked for special tokens, else None.

    Text rendered by a chat template is tokenised without special tokens; a template that
    emits no BOS for a tokenizer that normally adds one then gets exactly this one BOS back.
    """
    bos = tokenizer.bos_token_id
    probe = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bos if bos is not None and probe[:1] == [bos] else None


def encode_rendered(tokenizer: Any, text: str, bos_id: int | None) -> list[int]:
    """Ids of chat-template output: no special tokens added, one BOS in front when ``bos_id`` is set."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if bos_id is not None and ids[:1] != [bos_id]:
        ids = [bos_id, *ids]
    return ids


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersEngine:
    def __init__(self, config: EngineConfig):
        import torch

        self.config = config
        self.ref = models.resolve(config.model)
        self.tokenizer = models.load_tokenizer(self.ref)
        device = config.extra.get("device") or default_device()
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
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 4096)
        self._bos_id = implicit_bos(self.tokenizer)
        self._token_texts: list[str] | None = None

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

    # ------------------------------------------------------------------ scoring
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode_chat(self, messages: list[Message], prefill: str = "") -> list[int]:
        """Token ids of ``messages`` as the model is prompted to reply, its reply started with ``prefill``."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefill
        return encode_rendered(self.tokenizer, text, self._bos_id)

    def next_token_logprobs(self, seqs: list[list[int]]) -> Any:
        """log p(next token) after each sequence, float64 of shape (len(seqs), vocab), from one
        right-padded forward pass."""
        import torch

        pad = self.tokenizer.pad_token_id
        ids, mask = right_pad(torch, seqs, int(pad if pad is not None else 0))  # padded positions are masked
        last = [len(s) - 1 for s in seqs]
        keep = sorted(set(last))
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            try:  # project only the positions we read onto the vocabulary
                logits = self.model(input_ids=ids, attention_mask=mask,
                                    logits_to_keep=torch.tensor(keep, device=self.device)).logits
                cols = [keep.index(p) for p in last]
            except TypeError:  # a model whose forward has no logits_to_keep
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                cols = last
            rows = torch.arange(len(seqs), device=logits.device)
            picked = logits[rows, torch.tensor(cols, device=logits.device)].float().cpu().double()
        return torch.log_softmax(picked, dim=-1)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def token_ids_reading(self, text: str) -> list[int]:
        """Every vocabulary token that reads as ``text`` once whitespace is stripped (``"7"`` and ``" 7"``)."""
        if self._token_texts is None:
            every = [[i] for i in range(len(self.tokenizer))]
            self._token_texts = [t.strip() for t in self.tokenizer.batch_decode(every)]
        return [i for i, t in enumerate(self._token_texts) if t == text]

    def close(self) -> None:
        del self.model
