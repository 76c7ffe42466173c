"""AlpacaEval 2's weighted judge (``weighted_alpaca_eval_gpt4_turbo``): requests and preferences.

Pure functions, no I/O. Follows ``docs/evals.md#alpacaeval-2-weighted-judge``. Each (instruction, model
answer) is judged once against the baseline: output_1 is the baseline's answer, output_2 the
model's, their order swapped for about half of the instructions to cancel the judge's position
bias. The judge writes one token, ``m`` (output_1) or ``M`` (output_2); the preference is read
from that token's log-probabilities, 1 meaning output_1 (the baseline) is preferred and 2
output_2 (the model).
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import TYPE_CHECKING

from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply, JudgeRequest

from ..records import Question
from .prompts import load_prompt

if TYPE_CHECKING:
    from ..judging import Planner

__all__ = ["NoLogprobsError", "is_swapped", "identical", "request", "plan", "preference"]

DEFAULT_PROMPT = "alpaca-eval-weighted"
TOP_LOGPROBS = 5


class NoLogprobsError(FusekitError):
    """The judge returned no log-probabilities, which the weighted judge cannot do without."""


def is_swapped(instruction: str, seed: int = 0) -> bool:
    """Whether this instruction's two outputs are shown in swapped order.

    A coin flip seeded by a sha256 of ``"is_switched_outputs" + instruction + seed``: the same
    for an instruction in every process and run, and about half of all instructions get it.
    This follows upstream's rule (a per-instruction choice seeded by that string) but uses its
    own hash and RNG, so the individual flips differ from upstream's.
    """
    digest = hashlib.sha256(f"is_switched_outputs{instruction}{seed}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).choice((False, True))


def _baseline_answer(question: Question) -> str:
    if question.baseline_answer is None:
        raise FusekitError(
            f"{question.bench} question {question.id} has no baseline answer to judge against"
        )
    return question.baseline_answer


def identical(question: Question, answer: str) -> bool:
    """Whether the model's answer equals the baseline's (up to surrounding whitespace).

    Such a pair is scored 1.5 without asking the judge, as upstream does.
    """
    return answer.strip() == _baseline_answer(question).strip()


def request(
    question: Question, answer: str, prompt: str = DEFAULT_PROMPT
) -> tuple[JudgeRequest, bool]:
    """The judge request for the model's ``answer`` to ``question``, and whether it is swapped.

    The judge writes a single token (max_tokens 1) whose top 5 alternatives carry the
    preference; temperature 1.0 as upstream, which does not matter since only log-probs are read.
    """
    instruction = question.turns[0]
    swapped = is_swapped(instruction)
    baseline = _baseline_answer(question)
    output_1, output_2 = (answer, baseline) if swapped else (baseline, answer)
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    judge_request = load_prompt(prompt).request(
        values, temperature=1.0, max_tokens=1, top_logprobs=TOP_LOGPROBS
    )
    return judge_request, swapped


def plan(planner: Planner, model: str, question: Question) -> None:
    """The one game judging ``model``'s answer to ``question``, once that answer exists; an answer
    equal to the baseline's is decided without a call."""
    mine = planner.texts(model, question, 1)
    if mine is None:
        return
    if identical(question, mine[0]):
        planner.add(model, question, 1, 0, "identical", None, question.baseline)
        return
    judge_request, swapped = request(question, mine[0], planner.prompt or DEFAULT_PROMPT)
    planner.add(model, question, 1, 0, "weighted", judge_request, question.baseline, swapped)


def preference(reply: JudgeReply, swapped: bool) -> float:
    """Preference in [1, 2] for output_2 (the model) over output_1 (the baseline), or NaN.

    From the first token's top log-probs, keep the tokens that read ``m`` or ``M`` once
    whitespace is stripped; when a letter appears under several spellings (``"M"`` and ``" M"``)
    their probabilities add up, since either spelling is the same choice. With p_m the softmax
    probability of ``m`` over the two letters (a letter not among the top tokens has
    probability 0), the preference is 2 − p_m; a swapped request maps back as 3 − x. NaN when
    neither letter is among the top tokens (upstream drops such rows).
    """
    if reply.top_logprobs is None:
        raise NoLogprobsError(
            "the judge returned no log-probabilities; the weighted AlpacaEval judge needs an "
            "endpoint that supports logprobs/top_logprobs"
        )
    found: dict[str, list[float]] = {"m": [], "M": []}
    for token, logprob in reply.top_logprobs.items():
        letter = token.strip()
        if letter in found and logprob > -math.inf:  # also drops NaN
            found[letter].append(logprob)
    every = found["m"] + found["M"]
    if not every:
        return math.nan
    # Relative to the larger log-prob, so that exp() cannot underflow to 0 for both letters.
    top = max(every)
    mass = {letter: sum(math.exp(lp - top) for lp in lps) for letter, lps in found.items()}
    total = mass["m"] + mass["M"]
    value = 2.0 - mass["m"] / total
    return 3.0 - value if swapped else value
