"""Benchmark scoring for ``evals``: pure functions from judge verdicts to leaderboard numbers.

* :mod:`evals.scoring.alpaca` — AlpacaEval 2 win rate, discrete win rate, length-controlled win rate.
* :mod:`evals.scoring.arena_hard` — Arena-Hard v0.1 / v2.0 battles, Bradley-Terry scores, bootstrap
  CIs, style control.
* :mod:`evals.scoring.mt_bench` — MT-Bench single-grade means and pairwise win rates.

The math follows ``docs/evals.md`` (the AlpacaEval 2, Arena-Hard-Auto and MT-Bench scoring sections); no I/O
happens here.
"""

from evals.scoring.alpaca import (
    AlpacaWinRate,
    LengthControlledResult,
    discrete_win_rate,
    length_controlled_win_rate,
    maybe_length_controlled_win_rate,
    predict_cross_baseline_win_rate,
    win_rate,
)
from evals.scoring.arena_hard import (
    ArenaHardResult,
    ArenaHardScore,
    Battle,
    arena_hard_v01,
    arena_hard_v01_style_control,
    arena_hard_v2,
    arena_hard_v2_style_control,
    battles_v01,
    fit_bt_ratings,
    outcomes_v2,
)
from evals.scoring.mt_bench import (
    PairwiseSummary,
    SingleGradeSummary,
    mt_bench_pairwise,
    mt_bench_single,
)

__all__ = [
    "AlpacaWinRate",
    "LengthControlledResult",
    "discrete_win_rate",
    "length_controlled_win_rate",
    "maybe_length_controlled_win_rate",
    "predict_cross_baseline_win_rate",
    "win_rate",
    "ArenaHardResult",
    "ArenaHardScore",
    "Battle",
    "arena_hard_v01",
    "arena_hard_v01_style_control",
    "arena_hard_v2",
    "arena_hard_v2_style_control",
    "battles_v01",
    "fit_bt_ratings",
    "outcomes_v2",
    "PairwiseSummary",
    "SingleGradeSummary",
    "mt_bench_pairwise",
    "mt_bench_single",
]
