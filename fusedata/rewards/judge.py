"""An LLM as reward model: it rates a response from 1 to 9, and the score is the expected rating.

The judge sees one user message, ``JUDGE_PROMPT`` filled with the conversation and the
response, and must answer with a single digit. Rather than reading the digit it writes, the
score is the expectation over its next-token distribution restricted to the nine digits::

    score = Σ_d p(d) · d / Σ_d p(d),   d = 1 … 9

which is smoother than the argmax digit and breaks ties between responses.

- ``LocalJudge`` (in-process, transformers): the chat is rendered with the judge's template
  and the generation prompt, tokenised without special tokens, right-padded in
  length-sorted batches; p(d) comes from the logits at each row's last real token. Every
  vocabulary token whose text, stripped of whitespace, is the digit counts for it (``"7"``
  and ``" 7"`` both count as 7).
- ``HTTPJudge`` (any OpenAI-compatible endpoint): one request per item with
  ``logprobs=True, top_logprobs=10, max_tokens=1, temperature=0``; digits are looked for
  among the returned top tokens (stripped). With no logprobs in the reply, the digit in
  the reply text is the score; with no digit either, the item fails: its value is NaN and
  ``last_errors[i]`` says why. 429, 5xx, timeouts and dropped connections are retried with
  exponential backoff (``Retry-After`` honoured); an endpoint unreachable at construction
  raises ``FusekitError``.

``JUDGE_PROMPT_VERSION`` names the template; change it whenever the wording changes so that
cached scores from an older wording can be told apart.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from typing import Any

from .. import models
from ..engines.openai_api import create_with_retries
from ..errors import FusekitError
from ..records import Message
from . import RewardModel, right_pad
from .seqcls import default_device, encode_rendered, implicit_bos

JUDGE_PROMPT_VERSION = "fusekit-judge-v1"
JUDGE_PROMPT = """You are reviewing a reply written by an AI assistant.

Conversation so far:
{conversation}

Reply to review:
{response}

How good is this reply to the last user message? Think of whether it is correct, helpful, on topic and clearly written. Rate it from 1 (useless or wrong) to 9 (excellent).
Answer with a single digit from 1 to 9 and nothing else."""

DIGITS = tuple(range(1, 10))
TOP_LOGPROBS = 10
_ROLE_LABEL = {"system": "System", "user": "User", "assistant": "Assistant"}
_DIGIT_RE = re.compile(r"(?<!\d)([1-9])(?!\d)")


def judge_prompt(prompt: list[Message], response: str) -> str:
    """The one user message the judge reads for a (prompt, response) pair."""
    conversation = "\n\n".join(
        f"{_ROLE_LABEL.get(m['role'], m['role'].capitalize())}: {m['content'].strip()}" for m in prompt
    )
    return JUDGE_PROMPT.format(conversation=conversation, response=response.strip())


def judge_messages(prompt: list[Message], response: str) -> list[Message]:
    return [{"role": "user", "content": judge_prompt(prompt, response)}]


def expected_rating(probs: dict[int, float]) -> float:
    """Σ p(d)·d / Σ p(d) over the digits present; NaN when they carry no mass."""
    total = sum(probs.values())
    if not total > 0:
        return float("nan")
    return sum(p * d for d, p in probs.items()) / total


def parse_rating(text: str | None) -> int | None:
    """The first stand-alone digit 1–9 in a reply (``"7"``, ``"Rating: 7/9"``), else None."""
    m = _DIGIT_RE.search(text or "")
    return int(m.group(1)) if m else None


def judge_name(cfg: dict[str, Any]) -> str:
    if cfg.get("name"):
        return cfg["name"]
    model = cfg["model"]
    return "judge:" + (model.split(":", 1)[1] if model.startswith("embedded:") else model)


# ====================================================================== in-process
def digit_token_ids(tokenizer: Any) -> dict[int, int]:
    """Token id → digit, for every vocabulary token that decodes to one digit 1–9 (whitespace stripped)."""
    out: dict[int, int] = {}
    for piece, tid in tokenizer.get_vocab().items():
        # A token that decodes to a digit has that digit in its raw form too (byte-fallback
        # tokens like <0x37> included); checking first keeps this to a few hundred decodes.
        if len(piece) > 12 or not any(c in piece for c in "123456789"):
            continue
        text = tokenizer.decode([tid]).strip()
        if len(text) == 1 and text in "123456789":
            out[tid] = int(text)
    missing = [d for d in DIGITS if d not in out.values()]
    if missing:
        raise FusekitError(f"judge tokenizer has no token for digit(s) {', '.join(map(str, missing))}")
    return out


class LocalJudge(RewardModel):
    def __init__(self, cfg: dict[str, Any], *, model: Any = None, tokenizer: Any = None):
        import torch

        super().__init__()
        self.cfg = cfg
        self.name = judge_name(cfg)
        self.prompt_version = JUDGE_PROMPT_VERSION
        self.batch_size = int(cfg.get("batch_size") or 8)
        if model is None or tokenizer is None:
            ref = cfg["model"]
            try:
                m = models.resolve(ref)
                self.device = cfg.get("device") or default_device()
                dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
                tokenizer = models.load_tokenizer(m)
                model = models.load_causal_lm(m, dtype=dtype, device=self.device)
            except FusekitError as e:
                raise FusekitError(f"cannot load judge model {ref}: {e}") from None
        else:
            self.device = str(next(model.parameters()).device)
        self.model, self.tokenizer = model.eval(), tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise FusekitError(f"judge model {cfg['model']} has no chat template")
        self.max_length = int(cfg.get("max_length") or getattr(model.config, "max_position_embeddings", 0) or 4096)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)  # any id: padded positions are masked and never read
        self.bos_id = implicit_bos(tokenizer)
        self.digit_ids = digit_token_ids(tokenizer)
        self._ids = torch.tensor(list(self.digit_ids), dtype=torch.long)
        self._values = torch.tensor([float(d) for d in self.digit_ids.values()], dtype=torch.float64)
        self.last_digit_mass: list[float] = []
        self._torch = torch

    def encode(self, prompt: list[Message], response: str) -> list[int]:
        text = self.tokenizer.apply_chat_template(judge_messages(prompt, response), add_generation_prompt=True,
                                                  tokenize=False)
        return encode_rendered(self.tokenizer, text, self.bos_id)

    def score_many(self, items: list[tuple[list[Message], str]]) -> list[float]:
        self.last_errors = {}
        scores = [float("nan")] * len(items)
        mass = [float("nan")] * len(items)
        encoded = {}
        for i, (p, r) in enumerate(items):
            ids = self.encode(p, r)
            if len(ids) > self.max_length:
                self.last_errors[i] = f"judge prompt is {len(ids)} tokens, over max_length={self.max_length}"
            else:
                encoded[i] = ids
        order = sorted(encoded, key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            for i, (s, m) in zip(idx, self._forward([encoded[i] for i in idx])):
                scores[i], mass[i] = s, m
        self.last_digit_mass = mass
        return scores

    def next_token_logits(self, seqs: list[list[int]]) -> Any:
        """Logits of the token after each sequence, shape (len(seqs), vocab)."""
        torch = self._torch
        ids, mask = right_pad(torch, seqs, self.pad_id)
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
            return logits[rows, torch.tensor(cols, device=logits.device)].float().cpu()

    def _forward(self, seqs: list[list[int]]) -> list[tuple[float, float]]:
        torch = self._torch
        logits = self.next_token_logits(seqs).double()
        digit_logits = logits[:, self._ids]
        # p(d)/Σp(d) is a softmax over the digit tokens alone: no underflow even when the
        # judge puts almost no mass on digits.
        weights = torch.softmax(digit_logits, dim=-1)
        expect = (weights * self._values).sum(-1)
        mass = torch.exp(torch.logsumexp(digit_logits, -1) - torch.logsumexp(logits, -1))
        return list(zip(expect.tolist(), mass.tolist()))

    def close(self) -> None:
        self.model = None
        if str(getattr(self, "device", "cpu")).startswith("cuda"):
            self._torch.cuda.empty_cache()


# ====================================================================== over HTTP
def rating_from_choice(choice: Any) -> tuple[float, str | None]:
    """(score, None) from one chat-completion choice, or (nan, reason)."""
    content = choice.message.content if choice.message is not None else None
    lp = getattr(choice, "logprobs", None)
    entries = list(getattr(lp, "content", None) or [])
    if entries:
        first = entries[0]
        seen: dict[str, float] = {}
        for cand in [*(getattr(first, "top_logprobs", None) or []), first]:
            tok, val = getattr(cand, "token", None), getattr(cand, "logprob", None)
            if isinstance(tok, str) and isinstance(val, (int, float)) and tok not in seen:
                seen[tok] = float(val)
        probs: dict[int, float] = {}
        for tok, val in seen.items():
            t = tok.strip()
            if len(t) == 1 and t in "123456789" and math.isfinite(val):
                probs[int(t)] = probs.get(int(t), 0.0) + math.exp(val)
        if probs:
            return expected_rating(probs), None
        digit = parse_rating(content)
        if digit is not None:
            return float(digit), None
        top = ", ".join(repr(t) for t in list(seen)[:5])
        return float("nan"), f"no digit 1-9 among the top logprobs ({top}) nor in the reply {content!r}"
    digit = parse_rating(content)
    if digit is not None:
        return float(digit), None
    return float("nan"), f"no logprobs returned and the reply {content!r} holds no digit 1-9"


class HTTPJudge(RewardModel):
    def __init__(self, cfg: dict[str, Any]):
        import openai

        super().__init__()
        self.cfg = cfg
        self.name = judge_name(cfg)
        self.prompt_version = JUDGE_PROMPT_VERSION
        self.model_name = cfg["model"]
        self.base_url = cfg["base_url"]
        self.timeout = float(cfg.get("timeout") or 60.0)
        self.concurrency = int(cfg.get("concurrency") or 4)
        self.max_retries = int(cfg.get("max_retries") if cfg.get("max_retries") is not None else 4)
        self.key_env = cfg.get("api_key_env") or "OPENAI_API_KEY"
        self._openai = openai
        self.loop = asyncio.new_event_loop()
        self.client = self.loop.run_until_complete(self._make_client())
        self._check_reachable()

    async def _make_client(self) -> Any:
        # Local servers accept any key; the openai client refuses to start without one.
        key = os.environ.get(self.key_env) or "EMPTY"
        return self._openai.AsyncOpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout, max_retries=0)

    def _check_reachable(self) -> None:
        o = self._openai

        async def probe() -> Any:
            return await self.client.models.list(timeout=min(self.timeout, 15.0))

        try:
            self.loop.run_until_complete(probe())
        except o.APIConnectionError as e:
            self.close()
            raise FusekitError(f"judge '{self.model_name}': endpoint {self.base_url} is unreachable ({e.__cause__ or e})") from None
        except o.AuthenticationError:
            self.close()
            raise FusekitError(f"judge '{self.model_name}': endpoint {self.base_url} rejected the API key (set {self.key_env})") from None
        except o.APIStatusError:
            pass  # some servers have no /models; the chat calls will tell

    def score_many(self, items: list[tuple[list[Message], str]]) -> list[float]:
        self.last_errors = {}
        if not items:
            return []
        results = self.loop.run_until_complete(self._all(items))
        scores = []
        for i, (s, err) in enumerate(results):
            scores.append(s)
            if err is not None:
                self.last_errors[i] = err
        return scores

    async def _all(self, items: list[tuple[list[Message], str]]) -> list[tuple[float, str | None]]:
        sem = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._one(sem, p, r) for p, r in items)))

    async def _one(self, sem: asyncio.Semaphore, prompt: list[Message], response: str) -> tuple[float, str | None]:
        kw = dict(model=self.model_name, messages=judge_messages(prompt, response), max_tokens=1, temperature=0,
                  logprobs=True, top_logprobs=TOP_LOGPROBS)
        r, err = await create_with_retries(self.client, sem, kw, self.max_retries)
        if r is None:
            return float("nan"), err
        if not r.choices:
            return float("nan"), "endpoint returned no choices"
        return rating_from_choice(r.choices[0])

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.client.close())
            self.loop.close()
