"""MT-Bench's judge: single-answer grading and pairwise comparison requests, and their parsers.

Pure functions, no I/O. Follows ``docs/evals.md#mt-bench-judge`` (FastChat
``fastchat/llm_judge``). Turn 1 shows the first question and answer; turn 2 shows the whole
two-turn conversation and the judge grades the second answer. Questions with reference answers
(math, reasoning, coding) get the maths prompts, which show the references. Judge calls use
temperature 0 and at most 2048 tokens.

:func:`parse_rating` gives the 1–10 score that :func:`evals.scoring.mt_bench.mt_bench_single`
averages; :func:`parse_pair` gives the ``"A"`` / ``"B"`` / ``"tie"`` that
:func:`evals.scoring.mt_bench.pair_game_winner` maps to a model.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fusedata.errors import FusekitError
from fusedata.judge import JudgeRequest

from ..records import Question
from ..scoring.mt_bench import is_valid_rating
from .prompts import load_prompt

if TYPE_CHECKING:
    from ..judging import Planner

__all__ = [
    "single_prompt_for",
    "pair_prompt_for",
    "single_request",
    "pair_requests",
    "plan",
    "parse_rating",
    "parse_pair",
]

TEMPERATURE = 0.0
MAX_TOKENS = 2048

_RATING_DOUBLE = re.compile(r"\[\[\s*(\d+\.?\d*)\s*\]\]")
_RATING_SINGLE = re.compile(r"\[\s*(\d+\.?\d*)\s*\]")
_PAIR_LABEL = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)


def _check_turn(question: Question, turn: int, *answer_lists: list[str]) -> None:
    if turn not in (1, 2):
        raise ValueError(f"MT-Bench turns are 1 and 2, got {turn}")
    if len(question.turns) < turn:
        raise FusekitError(
            f"{question.bench} question {question.id} has {len(question.turns)} turn(s), "
            f"cannot judge turn {turn}"
        )
    for answers in answer_lists:
        if len(answers) < turn:
            raise ValueError(f"judging turn {turn} needs {turn} answer(s), got {len(answers)}")


def single_prompt_for(question: Question, turn: int) -> str:
    """FastChat's single-grading prompt for this question and turn."""
    base = "single-math-v1" if question.references else "single-v1"
    return base + ("-multi-turn" if turn == 2 else "")


def pair_prompt_for(question: Question, turn: int) -> str:
    """FastChat's pairwise prompt for this question and turn."""
    base = "pair-math-v1" if question.references else "pair-v2"
    return base + ("-multi-turn" if turn == 2 else "")


def _shared_values(question: Question, turn: int) -> dict[str, str]:
    # Turn-1 prompts name the question {question}; multi-turn prompts number every turn.
    values: dict[str, str] = {}
    if turn == 1:
        values["question"] = question.turns[0]
    else:
        values["question_1"], values["question_2"] = question.turns[0], question.turns[1]
    # References are offered whenever the question has them; a prompt that needs one the
    # question lacks fails in JudgePrompt.request with the missing slot named.
    for i, reference in enumerate(question.references[:turn], start=1):
        values[f"ref_answer_{i}"] = reference
    return values


def single_request(
    question: Question, answers: list[str], turn: int, prompt: str | None = None
) -> JudgeRequest:
    """Single-answer grading of the model's answer to ``turn`` (1 or 2).

    ``answers`` are the model's answers to the question's turns, in order; turn 2 shows both.
    ``prompt`` (a judge prompt name) overrides :func:`single_prompt_for`.
    """
    _check_turn(question, turn, answers)
    values = _shared_values(question, turn)
    if turn == 1:
        values["answer"] = answers[0]
    else:
        values["answer_1"], values["answer_2"] = answers[0], answers[1]
    judge_prompt = load_prompt(single_prompt_for(question, turn) if prompt is None else prompt)
    return judge_prompt.request(values, temperature=TEMPERATURE, max_tokens=MAX_TOKENS)


def pair_requests(
    question: Question,
    answers_1: list[str],
    answers_2: list[str],
    turn: int,
    prompt: str | None = None,
) -> tuple[JudgeRequest, JudgeRequest]:
    """The two pairwise games comparing model_1's and model_2's answers at ``turn`` (1 or 2).

    Game 1 shows model_1 as assistant A and model_2 as B; game 2 swaps them (map its verdict
    back with ``pair_game_winner(label, swapped=True)``). ``prompt`` overrides
    :func:`pair_prompt_for`.
    """
    _check_turn(question, turn, answers_1, answers_2)
    shared = _shared_values(question, turn)
    judge_prompt = load_prompt(pair_prompt_for(question, turn) if prompt is None else prompt)

    def game(answers_a: list[str], answers_b: list[str]) -> JudgeRequest:
        values = dict(shared)
        if turn == 1:
            values["answer_a"], values["answer_b"] = answers_a[0], answers_b[0]
        else:
            values["answer_a_1"], values["answer_a_2"] = answers_a[0], answers_a[1]
            values["answer_b_1"], values["answer_b_2"] = answers_b[0], answers_b[1]
        return judge_prompt.request(values, temperature=TEMPERATURE, max_tokens=MAX_TOKENS)

    return game(answers_1, answers_2), game(answers_2, answers_1)


def plan(planner: Planner, model: str, question: Question) -> None:
    """The judge calls for ``model``'s answers to ``question``: one grading per answered turn, or in
    pairwise mode two games per turn (positions swapped) against the pairwise baseline, once both
    have answered; the baseline itself is not judged."""
    baseline = planner.pairwise_baseline
    if planner.mode == "pairwise" and model == baseline:
        return
    for turn in range(1, len(question.turns) + 1):
        mine = planner.texts(model, question, turn)
        if planner.mode != "pairwise":
            if mine is not None:
                planner.add(model, question, turn, 0, "single", single_request(question, mine, turn, planner.prompt))
            continue
        theirs = planner.texts(baseline, question, turn) if baseline else None
        if mine is None or theirs is None:
            continue
        g1, g2 = pair_requests(question, mine, theirs, turn)
        planner.add(model, question, turn, 1, "pairwise", g1, baseline, False)
        planner.add(model, question, turn, 2, "pairwise", g2, baseline, True)


def parse_rating(text: str | None) -> float | None:
    """The judge's 1–10 rating, or ``None`` (FastChat's −1) when there is no usable one.

    The first number inside double brackets (``[[8.5]]``), else the first inside single brackets
    (``[5]``). Only the first match counts, as in FastChat: a later number is often a quoted
    scale or a rating of something else. Outside 1–10 → ``None``.
    """
    if not text:
        return None
    match = _RATING_DOUBLE.search(text) or _RATING_SINGLE.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if is_valid_rating(value) else None


def parse_pair(text: str | None) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a pairwise judgment's ``[[A]]`` / ``[[B]]`` / ``[[C]]``.

    Case and spaces inside the brackets are tolerated. When several labels appear the **last**
    one wins: the verdict closes the judgment, while earlier labels are usually the judge
    restating the answer format. (FastChat instead checks for ``[[A]]``, then ``[[B]]``, then
    ``[[C]]`` anywhere in the text.) ``None`` when there is no label.
    """
    if not text:
        return None
    labels = _PAIR_LABEL.findall(text)
    if not labels:
        return None
    last = labels[-1].upper()
    return "tie" if last == "C" else last
