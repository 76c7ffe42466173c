"""An LLM as reward model: the judge (``fusedata.judge``) + the prompt file ``prompts/reward-judge.yaml``.

The judge reads one user message, the prompt filled with the conversation and the response,
and must answer with a single digit from 1 to 9. Rather than the digit it writes, the score is
the expectation over its first-token distribution restricted to the nine digits::

    score = Σ_d p(d) · d / Σ_d p(d),   d = 1 … 9

which is smoother than the argmax digit and breaks ties between responses. Every token that
reads as a digit once whitespace is stripped counts for it (``"7"`` and ``" 7"`` both count as 7).

- In-process (transformers) the request names the nine digits as ``candidates``, so p(d) is
  the whole mass of the vocabulary tokens reading as d, from one forward pass per
  length-sorted, right-padded batch. A judge prompt over ``max_length`` tokens fails its item.
- Over an endpoint, p(d) comes from the first token's top ``TOP_LOGPROBS`` alternatives
  (``max_tokens=1, temperature=0``). With no logprobs in the reply, the digit in the reply text
  is the score; with no digit either, the item fails.

A failed item's value is NaN and ``last_errors[i]`` says why. The prompt file's ``version`` is
part of the scorer name: a new wording means new scores.
"""

from __future__ import annotations

import functools
import math
import re
from importlib import resources

from ..judge import JudgePrompt, JudgeReply, JudgeRequest, JudgeSettings, make_judge, read_prompt
from ..records import Message
from . import JudgeRewardConfig, RewardModel

DIGITS = tuple(range(1, 10))
TOP_LOGPROBS = 10
_ROLE_LABEL = {"system": "System", "user": "User", "assistant": "Assistant"}
_DIGIT_RE = re.compile(r"(?<!\d)([1-9])(?!\d)")


@functools.lru_cache(maxsize=None)
def reward_prompt() -> JudgePrompt:
    return read_prompt(resources.files("fusedata.rewards").joinpath("prompts"), "reward-judge")


def judge_prompt(prompt: list[Message], response: str) -> str:
    """The one user message the judge reads for a (prompt, response) pair."""
    return judge_request(prompt, response).messages[-1]["content"]


def judge_request(prompt: list[Message], response: str) -> JudgeRequest:
    conversation = "\n\n".join(
        f"{_ROLE_LABEL.get(m['role'], m['role'].capitalize())}: {m['content'].strip()}" for m in prompt
    )
    return reward_prompt().request({"conversation": conversation, "response": response.strip()}, temperature=0.0,
                                   max_tokens=1, top_logprobs=TOP_LOGPROBS, candidates=tuple(map(str, DIGITS)))


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


def digit_probs(logprobs: dict[str, float]) -> dict[int, float]:
    """p(d) per digit from first-token log-probs, adding up the spellings of a digit (``"7"``, ``" 7"``)."""
    probs: dict[int, float] = {}
    for tok, val in logprobs.items():
        t = tok.strip()
        if len(t) == 1 and t in "123456789" and math.isfinite(val):
            probs[int(t)] = probs.get(int(t), 0.0) + math.exp(val)
    return probs


def rating(reply: JudgeReply) -> tuple[float, str | None]:
    """(score, None) from one judge reply, or (nan, why not)."""
    if not reply.ok:
        return float("nan"), reply.error
    digit = parse_rating(reply.text)
    if reply.top_logprobs:
        probs = digit_probs(reply.top_logprobs)
        if probs:
            return expected_rating(probs), None
        if digit is not None:
            return float(digit), None
        top = ", ".join(repr(t) for t in list(reply.top_logprobs)[:5])
        return float("nan"), f"no digit 1-9 among the top logprobs ({top}) nor in the reply {reply.text!r}"
    if digit is not None:
        return float(digit), None
    return float("nan"), f"no logprobs returned and the reply {reply.text!r} holds no digit 1-9"


def judge_name(cfg: JudgeRewardConfig) -> str:
    if cfg.name:
        return cfg.name
    model = cfg.model
    return "judge:" + (model.split(":", 1)[1] if model.startswith("embedded:") else model)


def judge_settings(cfg: JudgeRewardConfig) -> JudgeSettings:
    """The judge a validated reward config describes."""
    return JudgeSettings(cfg.model, cfg.endpoint("scoring.reward"), batch_size=cfg.batch_size,
                         max_length=cfg.max_length, device=cfg.device)


class JudgeReward(RewardModel):
    """A reward model that asks a judge; ``last_digit_mass`` is Σ p(d) per item of the last call
    (NaN where unknown): how much of its first token the judge spends on a rating at all."""

    def __init__(self, cfg: JudgeRewardConfig):
        super().__init__()
        self.cfg = cfg
        self.name = judge_name(cfg)
        self.prompt_version = reward_prompt().version
        self.judge = make_judge(judge_settings(cfg))
        self.last_digit_mass: list[float] = []

    def score_many(self, items: list[tuple[list[Message], str]]) -> list[float]:
        self.last_errors = {}
        scores = [float("nan")] * len(items)
        mass = [float("nan")] * len(items)

        def keep(i: int, reply: JudgeReply) -> None:
            scores[i], err = rating(reply)
            if err is not None:
                self.last_errors[i] = err
            if reply.top_logprobs:
                mass[i] = sum(digit_probs(reply.top_logprobs).values())

        self.judge.complete([judge_request(p, r) for p, r in items], keep)
        self.last_digit_mass = mass
        return scores

    def close(self) -> None:
        self.judge.close()
