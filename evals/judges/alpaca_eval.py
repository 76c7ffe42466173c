"""AlpacaEval 2's weighted judge (``weighted_alpaca_eval_gpt4_turbo``): requests and preferences.

Follows ``docs/evals.md#alpacaeval-2-weighted-judge``. Each (instruction, model answer) is judged
once against the baseline: output_1 is the baseline's answer, output_2 the model's, their order
swapped for about half of the instructions to cancel the judge's position bias. The judge writes
one token, ``m`` (output_1) or ``M`` (output_2); the preference is read from that token's
log-probabilities, 1 meaning output_1 (the baseline) is preferred and 2 output_2 (the model).

By default the prompt, the decoding settings and the judge model come from alpaca_eval's own
files (its annotator config and the prompt template it names), read at run time from the
installed ``alpaca-eval`` distribution or a checkout and checked against sha256 pins.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from fusedata.errors import FusekitError
from fusedata.judge import JudgePrompt, JudgeReply, JudgeRequest

from ..records import Question
from .upstream import UpstreamFile, UpstreamText, read_upstream, version

if TYPE_CHECKING:
    from ..judging import Planner

__all__ = ["ANNOTATOR", "JUDGE_MODEL", "ROLE", "JudgeConfig", "NoLogprobsError", "is_swapped", "identical",
           "request", "plan", "preference", "upstream_config", "upstream_judge_model", "upstream_prompt"]

ROLE = "alpaca-eval-weighted"
# The annotator whose GLM inputs (df_gamed.csv, instruction difficulties) LC is calibrated for, and the judge
# model its config names: a run is leaderboard-comparable only with both. Checked against the config.
ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
JUDGE_MODEL = "gpt-4-1106-preview"
# What its config's logprob_parser reads: the share of "m" among the exact tokens "m" and "M".
NUMERATOR = "m"
DENOMINATOR = ("m", "M")

_PACKAGE = "alpaca-eval==0.6.6"
_CONFIGS = "evaluators_configs"
CONFIG = UpstreamFile(
    label=f"alpaca_eval:src/alpaca_eval/{_CONFIGS}/{ANNOTATOR}/configs.yaml",
    checkout_path=f"src/alpaca_eval/{_CONFIGS}/{ANNOTATOR}/configs.yaml",
    package=_PACKAGE,
    package_path=f"alpaca_eval/{_CONFIGS}/{ANNOTATOR}/configs.yaml",
    sha256="fd5c656d9959ffd63b986c8216a81e83e001d17ced5a08defc1c857ce9dd033e",
)
# The template the pinned config names (prompt_template, relative to evaluators_configs/).
TEMPLATE_PIN = "784227e6dc2832fc08c43d2c8ea3a308e7523780187a1aaad2f85e30bac85f62"
_CHATML_START, _CHATML_END = "<|im_start|>", "<|im_end|>"
# The settings of that config, used only when a paraphrased prompt runs without alpaca_eval's files.
_OFFLINE_DECODING = {"max_tokens": 1, "temperature": 1.0, "top_logprobs": 5}


class NoLogprobsError(FusekitError):
    """The judge returned no log-probabilities, which the weighted judge cannot do without."""


@dataclass(frozen=True)
class JudgeConfig:
    """The parts of the annotator config a request and its reading depend on."""

    model_name: str
    max_tokens: int
    temperature: float
    top_logprobs: int
    prompt_template: str  # path relative to evaluators_configs/
    source: UpstreamText


def _config_entry(text: UpstreamText) -> dict[str, Any]:
    data = yaml.safe_load(text.text)
    entry = data.get(ANNOTATOR) if isinstance(data, dict) else None
    if not isinstance(entry, dict):
        raise FusekitError(f"{text.path}: no {ANNOTATOR} annotator in this config")
    return entry


@functools.lru_cache(maxsize=None)
def upstream_config(data_dir: str | None = None) -> JudgeConfig:
    """The pinned ``weighted_alpaca_eval_gpt4_turbo`` config, read as alpaca_eval reads it."""
    text = read_upstream(CONFIG, data_dir)
    entry = _config_entry(text)
    kwargs = entry.get("completions_kwargs", {})
    parser = entry.get("completion_parser_kwargs", {})
    # The pin fixes these; the checks say which constant a future config would break.
    if kwargs.get("model_name") != JUDGE_MODEL or not kwargs.get("logprobs"):
        raise FusekitError(f"{text.path}: expected a {JUDGE_MODEL} judge with logprobs")
    if (entry.get("fn_completion_parser") != "logprob_parser" or parser.get("numerator_token") != NUMERATOR
            or tuple(parser.get("denominator_tokens", ())) != DENOMINATOR or parser.get("is_binarize")):
        raise FusekitError(f"{text.path}: expected the soft logprob_parser over {DENOMINATOR}")
    return JudgeConfig(str(kwargs["model_name"]), int(kwargs["max_tokens"]), float(kwargs["temperature"]),
                       int(kwargs["top_logprobs"]), str(entry["prompt_template"]), text)


def upstream_judge_model(data_dir: str | None = None) -> str:
    """The judge model alpaca_eval's leaderboard annotator uses (``gpt-4-1106-preview``)."""
    return upstream_config(data_dir).model_name


def _template_file(config: JudgeConfig) -> UpstreamFile:
    path = f"{_CONFIGS}/{config.prompt_template}"
    return UpstreamFile(label=f"alpaca_eval:src/alpaca_eval/{path}", checkout_path=f"src/alpaca_eval/{path}",
                        package=_PACKAGE, package_path=f"alpaca_eval/{path}", sha256=TEMPLATE_PIN)


def _chat_messages(template: str, where: str) -> dict[str, str]:
    """role → content, split the way alpaca_eval turns a chatml prompt into OpenAI messages
    (``utils.prompt_to_chatml`` after ``openai_completions`` strips the prompt): each
    ``<|im_start|>`` opens a message whose first line is the role and whose content, up to
    ``<|im_end|>``, is stripped of surrounding whitespace."""
    text = template.strip()
    if not (text.startswith(_CHATML_START) and text.endswith(_CHATML_END)):
        raise FusekitError(f"{where}: not a chatml template")
    messages: dict[str, str] = {}
    for part in text.split(_CHATML_START)[1:]:
        role_line, _, rest = part.partition("\n")
        role = role_line.strip()
        if role in messages or role not in ("system", "user"):
            raise FusekitError(f"{where}: expected one system and one user message, found role {role!r}")
        messages[role] = rest.split(_CHATML_END, 1)[0].strip()
    if "user" not in messages:
        raise FusekitError(f"{where}: no user message")
    return messages


def upstream_prompt(role: str, data_dir: str | None = None) -> tuple[JudgePrompt, UpstreamText]:
    """alpaca_eval's own prompt for ``role`` (only ``alpaca-eval-weighted``), as the messages it sends."""
    if role != ROLE:
        raise FusekitError(f"alpaca_eval has no upstream judge prompt for role {role!r}; expected {ROLE}")
    config = upstream_config(data_dir)
    text = read_upstream(_template_file(config), data_dir)
    messages = _chat_messages(text.text, text.path)
    prompt = JudgePrompt(name=ROLE, version=version(text.sha256), system=messages.get("system", ""),
                         user=messages["user"], labels=DENOMINATOR,
                         description=f"alpaca_eval {ANNOTATOR} ({config.prompt_template})")
    return prompt, text


def _decoding(prompt_set: str, data_dir: str | None) -> dict[str, Any]:
    """max_tokens, temperature and top_logprobs from the annotator config; a paraphrase run without
    alpaca_eval's files falls back to the same values."""
    try:
        c = upstream_config(data_dir)
    except FusekitError:
        if prompt_set == "upstream":
            raise
        return dict(_OFFLINE_DECODING)
    return {"max_tokens": c.max_tokens, "temperature": c.temperature, "top_logprobs": c.top_logprobs}


def is_swapped(instruction: str, seed: int = 0) -> bool:
    """Whether this instruction's two outputs are shown in swapped order: upstream's own coin flip
    (``RandomSwitchTwoColumnsProcessor`` with ``utils.random_seeded_choice``), a ``random.Random``
    seeded by the string ``"is_switched_outputs" + instruction + str(seed)`` choosing between
    ``[False, True]``; the pairwise annotator's seed is 0. Python seeds a string through its sha512,
    so the flips are upstream's in every process."""
    return random.Random(f"is_switched_outputs{instruction}{seed}").choices([False, True], k=1)[0]


def _baseline_answer(question: Question) -> str:
    if question.baseline_answer is None:
        raise FusekitError(
            f"{question.bench} question {question.id} has no baseline answer to judge against"
        )
    return question.baseline_answer


def identical(question: Question, answer: str) -> bool:
    """Whether the model's answer equals the baseline's exactly: upstream scores such a pair 1.5
    without asking the judge."""
    return answer == _baseline_answer(question)


def request(question: Question, answer: str, prompt: JudgePrompt,
            decoding: dict[str, Any] | None = None) -> tuple[JudgeRequest, bool]:
    """The judge request for the model's ``answer`` to ``question``, and whether it is swapped.

    ``decoding`` holds max_tokens, temperature and top_logprobs (default: the annotator config's,
    one token with its 5 most likely alternatives at temperature 1, which only log-probs are read
    from).
    """
    instruction = question.turns[0]
    swapped = is_swapped(instruction)
    baseline = _baseline_answer(question)
    output_1, output_2 = (answer, baseline) if swapped else (baseline, answer)
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    judge_request = prompt.request(values, **(decoding or _decoding("upstream", None)))
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
    prompt = planner.judge_prompt(ROLE)
    decoding = _decoding(planner.prompt, planner.data_dir)
    judge_request, swapped = request(question, mine[0], prompt, decoding)
    planner.add(model, question, 1, 0, "weighted", judge_request, question.baseline, swapped)


def _upstream_preference(top: dict[str, float]) -> float:
    """``completion_parsers.logprob_parser`` (soft): the exact tokens ``m`` and ``M`` among the top
    alternatives, a missing one at log-prob −inf, preference = 2 − exp(lp_m − logsumexp(lp_m, lp_M));
    NaN when neither is there (and wherever a log-prob is NaN)."""
    from scipy.special import logsumexp

    found = {t: lp for t, lp in top.items() if t in DENOMINATOR}
    if not found:
        return math.nan
    numerator = found.get(NUMERATOR, -math.inf)
    denominator = logsumexp([found.get(t, -math.inf) for t in DENOMINATOR])
    return float(2 - np.exp(numerator - denominator))


def _lenient_preference(top: dict[str, float]) -> float:
    """fusekit's reading: tokens that read ``m`` or ``M`` once whitespace is stripped, the
    probabilities of one letter's spellings added up."""
    found: dict[str, list[float]] = {"m": [], "M": []}
    for token, logprob in top.items():
        letter = token.strip()
        if letter in found and logprob > -math.inf:  # also drops NaN
            found[letter].append(logprob)
    every = found["m"] + found["M"]
    if not every:
        return math.nan
    # Relative to the larger log-prob, so that exp() cannot underflow to 0 for both letters.
    most = max(every)
    mass = {letter: sum(math.exp(lp - most) for lp in lps) for letter, lps in found.items()}
    return 2.0 - mass["m"] / (mass["m"] + mass["M"])


def preference(reply: JudgeReply, swapped: bool, lenient: bool = False) -> float:
    """Preference in [1, 2] for output_2 (the model) over output_1 (the baseline), or NaN.

    Upstream's reading by default (:func:`_upstream_preference`), fusekit's more forgiving one with
    ``lenient``; a swapped request maps back as 3 − x, as the pairwise annotator does.
    """
    if reply.top_logprobs is None:
        raise NoLogprobsError(
            "the judge returned no log-probabilities; the weighted AlpacaEval judge needs an "
            "endpoint that supports logprobs/top_logprobs"
        )
    value = (_lenient_preference if lenient else _upstream_preference)(reply.top_logprobs)
    return 3.0 - value if swapped else value
