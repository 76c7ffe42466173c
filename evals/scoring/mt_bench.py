"""MT-Bench scoring: single-answer grading means and pairwise win / tie / loss rates.

Pure functions, no I/O. Follows ``docs/evals.md#mt-bench-scores`` (FastChat
``fastchat/llm_judge/show_result.py``).

* Single grading: one record per (question, turn) ``{"question_id", "turn", "score"[, "model",
  "category"]}``. Failed ratings (FastChat's ``-1``, and ``None`` or NaN) are left out of every
  mean and counted; every other number is kept, 0 and 11 included, as FastChat's
  ``df[df["score"] != -1]`` keeps them. Overall = mean over all kept (question, turn) scores;
  category = mean over both turns of its questions.
* Pairwise: FastChat ``*_pair.jsonl`` records ``{"question_id", "turn", "model_1", "model_2",
  "g1_winner", "g2_winner"}`` where game 2 was judged with positions swapped and both winners are
  already mapped back to ``"model_1"`` / ``"model_2"`` / ``"tie"`` (``"error"`` or ``None`` when the
  verdict failed). :func:`pair_game_winner` maps raw ``[[A]]/[[B]]/[[C]]`` labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = [
    "MT_BENCH_CATEGORIES",
    "SingleGradeSummary",
    "PairwiseSummary",
    "mt_bench_category",
    "is_failed_rating",
    "mt_bench_single",
    "pair_game_winner",
    "mt_bench_pairwise",
]

#: Category of MT-Bench question ids (10 consecutive ids each, 81–160).
MT_BENCH_CATEGORIES: tuple[tuple[str, int, int], ...] = (
    ("writing", 81, 90),
    ("roleplay", 91, 100),
    ("reasoning", 101, 110),
    ("math", 111, 120),
    ("coding", 121, 130),
    ("extraction", 131, 140),
    ("stem", 141, 150),
    ("humanities", 151, 160),
)


def mt_bench_category(question_id: Any) -> str:
    """Category of an MT-Bench question id (81–160); ``ValueError`` for other ids."""
    try:
        qid = int(question_id)
    except (TypeError, ValueError):
        raise ValueError(f"not an MT-Bench question id: {question_id!r}") from None
    for name, lo, hi in MT_BENCH_CATEGORIES:
        if lo <= qid <= hi:
            return name
    raise ValueError(f"question id {question_id!r} is outside MT-Bench's 81–160; pass categories=")


def is_failed_rating(score: Any) -> bool:
    """No rating: FastChat's ``-1``, or ``None``, NaN or anything that is not a number.

    A number outside 1–10 is not a failure: FastChat averages whatever the judge wrote.
    """
    if score is None or isinstance(score, bool):
        return True
    try:
        value = float(score)
    except (TypeError, ValueError):
        return True
    return not math.isfinite(value) or value == -1.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class SingleGradeSummary:
    """Single-grading means (NaN where nothing valid) and failure counts."""

    turn_means: dict[int, float]
    overall: float
    category_means: dict[str, float]
    n_valid: int
    n_failed: int
    n_failed_by_turn: dict[int, int] = field(default_factory=dict)
    n_valid_by_turn: dict[int, int] = field(default_factory=dict)


def mt_bench_single(
    judgments: Iterable[Mapping[str, Any]],
    *,
    model: str | None = None,
    categories: Mapping[Any, str] | None = None,
) -> SingleGradeSummary:
    """Turn-1 / turn-2 / overall / per-category means of single-answer grades.

    ``model`` keeps only records whose ``model`` equals it. A record's category is its ``category``
    field, else ``categories[question_id]``, else the MT-Bench id ranges. A (question, turn) graded
    twice raises ``ValueError`` (FastChat appends without de-duplication; silently averaging both
    would double-count).
    """
    seen: set[tuple[str, int]] = set()
    by_turn: dict[int, list[float]] = {}
    failed_by_turn: dict[int, int] = {}
    by_category: dict[str, list[float]] = {}
    every: list[float] = []
    n_failed = 0
    for rec in judgments:
        if model is not None and rec.get("model") != model:
            continue
        qid = rec.get("question_id")
        if qid is None or rec.get("turn") is None:
            raise ValueError(f"single-grade record needs 'question_id' and 'turn': {rec!r:.200}")
        turn = int(rec["turn"])
        key = (str(qid), turn)
        if key in seen:
            raise ValueError(f"question {qid!r} turn {turn} graded more than once")
        seen.add(key)
        by_turn.setdefault(turn, [])
        failed_by_turn.setdefault(turn, 0)
        score = rec.get("score")
        if is_failed_rating(score):
            n_failed += 1
            failed_by_turn[turn] += 1
            continue
        value = float(score)
        if rec.get("category") is not None:
            category = str(rec["category"])
        elif categories is not None and (qid in categories or str(qid) in categories):
            category = str(categories[qid] if qid in categories else categories[str(qid)])
        else:
            category = mt_bench_category(qid)
        by_turn[turn].append(value)
        by_category.setdefault(category, []).append(value)
        every.append(value)
    return SingleGradeSummary(
        turn_means={t: _mean(v) for t, v in sorted(by_turn.items())},
        overall=_mean(every),
        category_means={c: _mean(v) for c, v in sorted(by_category.items())},
        n_valid=len(every),
        n_failed=n_failed,
        n_failed_by_turn=dict(sorted(failed_by_turn.items())),
        n_valid_by_turn={t: len(v) for t, v in sorted(by_turn.items())},
    )


def pair_game_winner(label: Any, *, swapped: bool) -> str:
    """Map a pairwise verdict (``"A"``, ``"B"``, ``"C"``/``"tie"``, optionally ``[[...]]``) to
    ``"model_1"`` / ``"model_2"`` / ``"tie"``; ``"error"`` when unusable.

    Game 1 shows model_1 as A (``swapped=False``); game 2 swaps the positions (``swapped=True``),
    so its ``A`` is model_2.
    """
    if not isinstance(label, str):
        return "error"
    text = label.strip().upper().strip("[]").strip()
    if text in ("C", "TIE"):
        return "tie"
    if text == "A":
        return "model_2" if swapped else "model_1"
    if text == "B":
        return "model_1" if swapped else "model_2"
    return "error"


@dataclass(frozen=True)
class PairwiseSummary:
    """Win / loss / tie counts of ``model`` and FastChat's rates (``win_rate_adjusted`` = (win + ½·tie)/n).

    ``n_inconsistent`` counts pairs whose two games disagreed (scored as ties); ``n_error`` the pairs
    dropped because a game failed.
    """

    model: str
    win: int
    loss: int
    tie: int
    n_inconsistent: int
    n_error: int
    win_rate: float
    loss_rate: float
    win_rate_adjusted: float


_GAME_WINNERS = ("model_1", "model_2", "tie")


def mt_bench_pairwise(
    judgments: Iterable[Mapping[str, Any]],
    model: str,
    baseline: str | None = None,
) -> PairwiseSummary:
    """Pairwise results of ``model`` (against ``baseline`` only when given, else every opponent).

    Each record is two games with swapped positions. A pair counts for the model when
    ``g1_winner == g2_winner`` names a side; ``g1_winner == "tie"`` or disagreeing games
    ("inconsistent") make a tie; a failed game (``"error"``/``None``/unknown) drops the pair.
    """
    win = loss = tie = inconsistent = errors = 0
    for rec in judgments:
        m1, m2 = rec.get("model_1"), rec.get("model_2")
        if model not in (m1, m2):
            continue
        opponent = m2 if m1 == model else m1
        if baseline is not None and opponent != baseline:
            continue
        g1, g2 = rec.get("g1_winner"), rec.get("g2_winner")
        if g1 not in _GAME_WINNERS or g2 not in _GAME_WINNERS:
            errors += 1
            continue
        if g1 != g2:
            inconsistent += 1
            tie += 1
        elif g1 == "tie":
            tie += 1
        else:
            winner = m1 if g1 == "model_1" else m2
            if winner == model:
                win += 1
            else:
                loss += 1
    n = win + loss + tie
    return PairwiseSummary(
        model=model,
        win=win,
        loss=loss,
        tie=tie,
        n_inconsistent=inconsistent,
        n_error=errors,
        win_rate=win / n if n else math.nan,
        loss_rate=loss / n if n else math.nan,
        win_rate_adjusted=(win + 0.5 * tie) / n if n else math.nan,
    )
