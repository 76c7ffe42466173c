"""The records ``evals`` passes between its stages: questions → answers → judgments. The judge
calls themselves are the one judge client's records (``fusedata.judge.JudgeRequest``/``JudgeReply``).

Plain frozen dataclasses whose fields are JSON values (one ``asdict`` away from a SQLite row or
a JSON line), like ``fusedata.records``. Every id is a string: MT-Bench's integer question ids,
Arena-Hard's uids and AlpacaEval's instruction hashes alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BENCHES: tuple[str, ...] = ("mt-bench", "arena-hard-v0.1", "arena-hard-v2.0", "alpaca-eval")
# The names users type: arena-hard-auto's current version is v2.0, and upstream spells the others with "_".
BENCH_ALIASES: dict[str, str] = {"arena-hard": "arena-hard-v2.0", "alpaca_eval": "alpaca-eval",
                                 "mt_bench": "mt-bench"}
# How MT-Bench grades: each answer alone (1–10), or against another model's in two swapped games.
MODES: tuple[str, ...] = ("single", "pairwise")


@dataclass(frozen=True)
class Question:
    """One benchmark question.

    ``turns`` are the user messages (MT-Bench has two, the others one). ``references`` are
    reference answers per turn (MT-Bench math/reasoning/coding), empty otherwise. For pairwise
    benches ``baseline`` names the model the question is judged against and
    ``baseline_answer`` is its answer text (Arena-Hard v2.0 picks the baseline per category).
    ``meta`` keeps the rest of the upstream row (subcategory, cluster, AlpacaEval dataset…).
    """

    bench: str
    id: str
    category: str
    turns: list[str]
    references: list[str] = field(default_factory=list)
    baseline: str | None = None
    baseline_answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The evaluated model's answer to one turn of one question, or the failure to get it.

    Keyed by (bench, question_id, model, settings_hash, turn); ``settings_hash`` covers the
    engine, the model reference, the system prompt and the sampling settings, so changing any
    of them generates anew while a re-run reuses what is stored. ``turn`` counts from 1.
    """

    bench: str
    question_id: str
    model: str
    settings_hash: str
    turn: int
    text: str | None
    error: str | None = None
    n_output_tokens: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@dataclass(frozen=True)
class Judgment:
    """One judged item, linking a (model, question, turn, game) to the judge call that decides it.

    ``game`` is 0 for single-answer grading and AlpacaEval's one game; Arena-Hard and MT-Bench
    pairwise have games 1 (baseline or model_1 as assistant A) and 2 (positions swapped).
    ``swapped`` records whether the evaluated model sat in the first position's opposite
    slot, so that a verdict can be mapped back without re-deriving the order.
    """

    bench: str
    judge: str
    model: str
    question_id: str
    turn: int
    game: int
    mode: str
    key: str
    baseline: str | None = None
    swapped: bool = False
