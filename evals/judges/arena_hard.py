"""Arena-Hard-Auto's pairwise judge: the two games per question and the verdict parser.

Pure functions, no I/O. Follows ``docs/evals.md#arena-hard-judge``. Every question is judged in
two games with the positions swapped — game 1 shows the baseline as assistant A and the model as
B, game 2 the model as A and the baseline as B — and each game ends with one of the labels
``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]``, ``[[B>>A]]``. :func:`parse_verdict` turns the
judge's text into the canonical label that :mod:`evals.scoring.arena_hard` scores.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fusedata.errors import FusekitError
from fusedata.judge import JudgeRequest

from ..records import Question
from ..scoring.arena_hard import normalize_verdict
from .prompts import load_prompt

if TYPE_CHECKING:
    from ..judging import Planner

__all__ = ["prompt_for", "default_max_tokens", "requests", "plan", "parse_verdict"]

# Verdict-looking tokens: only A, B, <, >, = and spaces between the brackets.
_DOUBLE = re.compile(r"\[\[([AB<>= ]+)\]\]")
_SINGLE = re.compile(r"\[([AB<>= ]+)\]")

# Upstream's judge setup per version: the prompt per question category ("*": any other) and the
# judge's token budget.
JUDGE_PROMPTS: dict[str, dict[str, str]] = {
    "arena-hard-v0.1": {"*": "arena-hard-v0.1"},
    "arena-hard-v2.0": {"creative_writing": "arena-hard-v2-creative", "*": "arena-hard-v2-hard-prompt"},
}
JUDGE_MAX_TOKENS: dict[str, int] = {"arena-hard-v0.1": 4096, "arena-hard-v2.0": 16000}


def prompt_for(question: Question) -> str:
    """The judge prompt upstream uses for ``question``.

    v0.1 questions get ``arena-hard-v0.1``; v2.0 creative-writing questions get
    ``arena-hard-v2-creative`` (no own answer from the judge); every other question gets
    ``arena-hard-v2-hard-prompt``.
    """
    prompts = JUDGE_PROMPTS[question.bench]
    return prompts.get(question.category, prompts["*"])


def default_max_tokens(question: Question) -> int:
    """Upstream's judge budget: 4096 tokens for v0.1 (gpt-4-1106-preview), 16000 for v2.0 (gpt-4.1)."""
    return JUDGE_MAX_TOKENS[question.bench]


def requests(
    question: Question,
    answer: str,
    prompt: str | None = None,
    max_tokens: int | None = None,
) -> tuple[JudgeRequest, JudgeRequest]:
    """The two games judging the model's ``answer`` against the question's baseline answer.

    Game 1: A = baseline, B = model; game 2: A = model, B = baseline. Temperature 0.
    ``prompt`` (a judge prompt name) overrides :func:`prompt_for`, ``max_tokens``
    :func:`default_max_tokens`.
    """
    if question.baseline_answer is None:
        raise FusekitError(
            f"{question.bench} question {question.id} has no baseline answer to judge against"
        )
    judge_prompt = load_prompt(prompt_for(question) if prompt is None else prompt)
    budget = default_max_tokens(question) if max_tokens is None else max_tokens
    if budget < 1:
        raise FusekitError(f"judge max_tokens must be at least 1, got {budget}")

    def game(answer_a: str, answer_b: str) -> JudgeRequest:
        values = {"question": question.turns[0], "answer_a": answer_a, "answer_b": answer_b}
        return judge_prompt.request(values, temperature=0.0, max_tokens=budget)

    return game(question.baseline_answer, answer), game(answer, question.baseline_answer)


def plan(planner: Planner, model: str, question: Question) -> None:
    """The two games judging ``model``'s answer to ``question``, once that answer exists."""
    mine = planner.texts(model, question, 1)
    if mine is None:
        return
    g1, g2 = requests(question, mine[0], planner.prompt)
    planner.add(model, question, 1, 1, "pairwise", g1, question.baseline, False)
    planner.add(model, question, 1, 2, "pairwise", g2, question.baseline, True)


def parse_verdict(text: str | None) -> str | None:
    """The canonical verdict label (``"A>B"`` …) of a judgment, or ``None`` when it has none.

    Upper-cases the text, finds the double-bracketed tokens made only of A, B, <, >, = (inner
    spaces ignored) — single brackets when there is none — and canonicalises the **last** one,
    since the judge may quote labels while reasoning before its final verdict. Reversed forms
    (``[[B<A]]``) count; a last token that is not one of the five labels (``[[A>>>B]]``) makes
    the game unparsed rather than falling back to an earlier token.
    """
    if not text:
        return None
    upper = text.upper()
    matches = _DOUBLE.findall(upper) or _SINGLE.findall(upper)
    if not matches:
        return None
    return normalize_verdict(matches[-1])
