"""AlpacaEval 2 scoring: raw win rate, discrete win rate and the length-controlled (LC) win rate.

Pure functions over in-memory data, no I/O. The formulas follow ``docs/evals.md#alpacaeval-2-win-rate``
and ``#alpacaeval-2-length-control`` (upstream ``alpaca_eval`` ``metrics/helpers.py``,
``metrics/winrate.py``, ``metrics/glm_winrate.py``).

Conventions
-----------
* A *preference* is AlpacaEval's number in ``[1, 2]``: ``output_1`` is the baseline, ``output_2`` the
  model, ``P(model preferred) = preference - 1``; ``1.5`` is a draw and the legacy value ``0`` means a
  draw too. Values outside ``[1, 2]``, ``None`` and NaN are dropped (counted in ``n_dropped``).
  Pass ``scale="probability"`` to give ``P(model preferred)`` in ``[0, 1]`` instead.
* Every input is keyed by the instruction **text**: a mapping ``instruction -> value/record`` or a
  sequence of records with an ``instruction`` field. Row position is never used to look anything up
  (upstream looks instruction difficulty up by position, see alpaca_eval#316 / #453). Duplicated
  instructions raise ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from .numeric import sigmoid

__all__ = [
    "GLM_NAMES",
    "AlpacaWinRate",
    "LengthControlledResult",
    "to_preference",
    "preferences_by_instruction",
    "win_rate",
    "discrete_win_rate",
    "length_controlled_win_rate",
    "maybe_length_controlled_win_rate",
    "predict_cross_baseline_win_rate",
    "is_extreme_change",
]

Scale = Literal["preference", "probability"]
KeyedInput = Mapping[str, Any] | Iterable[Mapping[str, Any]]

#: GLMs of ``metrics/glm_winrate.py``: v1 = length + difficulty + gamed-baseline regularisation;
#: noreg = v1 without the gamed rows; minimal = length only (no difficulty, no gamed rows).
GLM_NAMES: tuple[str, ...] = ("length_controlled_v1", "length_controlled_noreg", "length_controlled_minimal")

_WEIGHT_NOT_GAMED = "not_gamed_baseline"
_WEIGHT_LENGTH = "length"
_WEIGHT_DIFFICULTY = "instruction_difficulty"


# --------------------------------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------------------------------


def to_preference(value: Any, scale: Scale = "preference") -> float:
    """Map one judge result onto an AlpacaEval preference in ``[1, 2]``; NaN when it is not usable.

    ``scale="preference"``: the value is already a preference; legacy ``0`` becomes the draw ``1.5``.
    ``scale="probability"``: the value is ``P(model preferred)`` in ``[0, 1]`` and ``1`` is added.
    ``None``, NaN, non-numbers and out-of-range values give NaN (dropped by every scorer).
    """
    if scale not in ("preference", "probability"):
        raise ValueError(f"unknown scale {scale!r}; expected 'preference' or 'probability'")
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    if math.isnan(v):
        return math.nan
    if scale == "preference":
        if v == 0.0:
            return 1.5
        return v if 1.0 <= v <= 2.0 else math.nan
    return v + 1.0 if 0.0 <= v <= 1.0 else math.nan


def _keyed(data: KeyedInput, what: str) -> dict[str, Any]:
    """``instruction -> value`` from a mapping or from records carrying an ``instruction`` field."""
    if isinstance(data, Mapping):
        items: Iterable[tuple[Any, Any]] = data.items()
    else:
        pairs = []
        for rec in data:
            if not isinstance(rec, Mapping) or "instruction" not in rec:
                raise ValueError(f"{what}: every record needs an 'instruction' field, got {rec!r:.200}")
            pairs.append((rec["instruction"], rec))
        items = pairs
    out: dict[str, Any] = {}
    for instruction, value in items:
        if not isinstance(instruction, str):
            raise TypeError(f"{what}: instructions must be strings, got {type(instruction).__name__}")
        if instruction in out:
            raise ValueError(f"{what}: duplicated instruction {instruction!r:.200}")
        out[instruction] = value
    return out


def _preference_of(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get("preference")
    return value


def preferences_by_instruction(preferences: KeyedInput, *, scale: Scale = "preference") -> dict[str, float]:
    """``instruction -> preference in [1, 2]`` (NaN where unusable).

    ``preferences`` is ``{instruction: value}``, ``{instruction: {"preference": value, ...}}`` or a
    sequence of records ``{"instruction": ..., "preference": ...}`` (e.g. AlpacaEval annotations).
    """
    keyed = _keyed(preferences, "preferences")
    return {k: to_preference(_preference_of(v), scale) for k, v in keyed.items()}


# --------------------------------------------------------------------------------------------------
# Raw and discrete win rates
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlpacaWinRate:
    """Leaderboard head-to-head numbers (percentages are in 0..100).

    ``n_total`` counts usable preferences, ``n_dropped`` the NaN / out-of-range ones.
    ``n_draws`` counts preferences exactly equal to 1.5 (legacy 0 included).
    """

    win_rate: float
    standard_error: float
    n_wins: int
    n_wins_base: int
    n_draws: int
    n_total: int
    n_dropped: int
    discrete_win_rate: float


def _sem(x: np.ndarray) -> float:
    """Standard error of the mean with ddof=1 (NaN below two values), as ``pandas.Series.sem``."""
    if x.size < 2:
        return math.nan
    return float(np.std(x, ddof=1) / math.sqrt(x.size))


def _describe(prefs: np.ndarray) -> AlpacaWinRate:
    valid = ~np.isnan(prefs)
    p = prefs[valid]
    n = int(p.size)
    y = p - 1.0
    if n == 0:
        return AlpacaWinRate(math.nan, math.nan, 0, 0, 0, 0, int(prefs.size), math.nan)
    # Discrete: exact 1.5 stays a draw, everything else rounds to 1 (baseline) or 2 (model).
    rounded = np.where(p == 1.5, 1.5, np.round(p))
    return AlpacaWinRate(
        win_rate=float(100.0 * y.mean()),
        standard_error=100.0 * _sem(y),
        n_wins=int((y > 0.5).sum()),
        n_wins_base=int((y < 0.5).sum()),
        n_draws=int((p == 1.5).sum()),
        n_total=n,
        n_dropped=int(prefs.size - n),
        discrete_win_rate=float(100.0 * (rounded - 1.0).mean()),
    )


def win_rate(preferences: KeyedInput, *, scale: Scale = "preference") -> AlpacaWinRate:
    """AlpacaEval win rate of the model against the baseline.

    ``win_rate = 100·mean(p − 1)``, ``standard_error = 100·sem(p − 1)`` (ddof 1) over usable
    preferences ``p``; ``n_wins = #(p − 1 > 0.5)``, ``n_wins_base = #(p − 1 < 0.5)``,
    ``n_draws = #(p = 1.5)``; ``discrete_win_rate`` rounds each preference to 1 or 2 (exact 1.5 is a
    draw worth one half). See :func:`preferences_by_instruction` for the accepted inputs.
    """
    prefs = preferences_by_instruction(preferences, scale=scale)
    # summed in instruction order so that the result does not depend on the input's row order
    return _describe(np.array([prefs[k] for k in sorted(prefs)], dtype=float))


def discrete_win_rate(preferences: KeyedInput, *, scale: Scale = "preference") -> float:
    """``100·(wins + draws/2)/n`` after rounding each preference to 1 or 2 (exact 1.5 = draw)."""
    return win_rate(preferences, scale=scale).discrete_win_rate


def is_extreme_change(win_rate_value: float, lc_value: float, *, abs_diff: float = 10.0, rel_diff: float = 4.0) -> bool:
    """Upstream's sanity warning: LC < min(wr − wr/4, wr − 10) or LC > max(wr + (100 − wr)/4, wr + 10)."""
    too_small = lc_value < min(win_rate_value - win_rate_value / rel_diff, win_rate_value - abs_diff)
    too_large = lc_value > max(win_rate_value + (100.0 - win_rate_value) / rel_diff, win_rate_value + abs_diff)
    return bool(too_small or too_large)


# --------------------------------------------------------------------------------------------------
# L1-penalised logistic regression with soft labels (liblinear's objective), and its CV wrapper
# --------------------------------------------------------------------------------------------------


def _soft_threshold(x: float, t: float) -> float:
    if x > t:
        return x - t
    if x < -t:
        return x + t
    return 0.0


def _l1_subproblem(g: np.ndarray, h: np.ndarray, beta: np.ndarray, sweeps: int = 500) -> np.ndarray:
    """argmin_s g·s + ½ sᵀHs + ‖β + s‖₁ by cyclic coordinate descent (a handful of coordinates)."""
    d = beta.size
    s = np.zeros(d)
    hs = np.zeros(d)
    for _ in range(sweeps):
        biggest = 0.0
        for j in range(d):
            a = h[j, j]
            b = g[j] + hs[j] - a * s[j]
            new = _soft_threshold(beta[j] - b / a, 1.0 / a) - beta[j]
            diff = new - s[j]
            if diff != 0.0:
                hs += h[:, j] * diff
                s[j] = new
                biggest = max(biggest, abs(diff))
        if biggest < 1e-13:
            break
    return s


def _fit_l1_logistic(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    c: float,
    beta0: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> np.ndarray:
    """Minimise ``‖β‖₁ + C·Σ w_i·CE(y_i, σ(x_i·β))`` with soft labels ``y_i ∈ [0, 1]``, no intercept.

    This is liblinear's L1 logistic objective on the duplicated data alpaca_eval builds (each row
    once as label 1 with weight y·w and once as label 0 with weight (1 − y)·w), solved by proximal
    Newton with a backtracking line search, to a much tighter tolerance than liblinear's 1e-4.
    """
    d = x.shape[1]
    beta = np.zeros(d) if beta0 is None else beta0.astype(float).copy()

    def objective(b: np.ndarray) -> float:
        z = x @ b
        return float(c * np.sum(w * (np.logaddexp(0.0, z) - y * z)) + np.abs(b).sum())

    current = objective(beta)
    for _ in range(max_iter):
        q = sigmoid(x @ beta)
        g = c * (x.T @ (w * (q - y)))
        h = c * ((x.T * (w * q * (1.0 - q))) @ x) + 1e-12 * np.eye(d)
        step = _l1_subproblem(g, h, beta)
        if np.max(np.abs(step)) < tol:
            break
        decrease = float(g @ step + np.abs(beta + step).sum() - np.abs(beta).sum())
        t = 1.0
        while True:
            candidate = beta + t * step
            value = objective(candidate)
            if value <= current + 1e-4 * t * decrease or t < 1e-12:
                break
            t *= 0.5
        if value > current:
            break
        moved = np.max(np.abs(candidate - beta))
        beta, current = candidate, value
        if moved < tol:
            break
    return beta


def _group_folds(n: int, n_splits: int) -> np.ndarray:
    """GroupKFold with one group per original row (all groups the same size).

    sklearn sorts group sizes and hands each group to the lightest fold; with equal sizes this is a
    round robin whose start depends on the sort's tie order (platform dependent). We fix it to the
    stable-sort reading: group g goes to fold (n − 1 − g) mod n_splits.
    """
    return (n - 1 - np.arange(n)) % n_splits


def _fit_l1_logistic_cv(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, n_splits: int, cs: int | Sequence[float], c_fixed: float
) -> tuple[np.ndarray, float]:
    """``LogisticRegressionCV(penalty="l1", fit_intercept=False, Cs=10)`` with GroupKFold and the
    weighted continuous log-loss scorer of ``glm_winrate.py``; ``n_splits <= 0`` fits at ``c_fixed``."""
    if n_splits <= 0:
        return _fit_l1_logistic(x, y, w, c_fixed), c_fixed
    n = y.size
    if n < n_splits:
        raise ValueError(f"length-controlled fit needs at least {n_splits} judged rows, got {n}")
    grid = np.logspace(-4, 4, cs) if isinstance(cs, int) else np.asarray(cs, dtype=float)
    folds = _group_folds(n, n_splits)
    scores = np.zeros(grid.size)
    for k in range(n_splits):
        test = folds == k
        train = ~test
        beta = None
        for j, c in enumerate(grid):
            beta = _fit_l1_logistic(x[train], y[train], w[train], float(c), beta0=beta)
            q = np.clip(sigmoid(x[test] @ beta), 1e-15, 1.0 - 1e-15)
            logloss = -np.mean(w[test] * (y[test] * np.log(q) + (1.0 - y[test]) * np.log(1.0 - q)))
            scores[j] += -logloss  # greater is better; sklearn sums the fold scores and takes argmax
    best = int(np.argmax(scores))
    c_best = float(grid[best])
    return _fit_l1_logistic(x, y, w, c_best), c_best


# --------------------------------------------------------------------------------------------------
# Length-controlled win rate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LengthControlledResult:
    """Result of the length-controlled GLM.

    ``length_controlled_winrate`` / ``lc_standard_error`` are ``None`` when LC was not computed; then
    ``reason`` says why (for a report line "LC not computed: <reason>"). ``weights`` holds the fitted
    coefficients under the keys ``not_gamed_baseline`` (θ), ``length`` (φ, on tanh of the standardised
    baseline-minus-model length) and ``instruction_difficulty`` (ψ); ``C`` is the selected L1 strength.
    """

    length_controlled_winrate: float | None
    lc_standard_error: float | None
    win_rate: AlpacaWinRate
    glm: str
    weights: dict[str, float] = field(default_factory=dict)
    C: float | None = None
    reason: str | None = None
    is_extreme_change: bool = False

    @property
    def computed(self) -> bool:
        """Whether an LC value is present."""
        return self.length_controlled_winrate is not None


def _require_text(record: Any, key: str, instruction: str, what: str) -> str:
    if not isinstance(record, Mapping) or key not in record:
        raise ValueError(f"{what}: missing {key!r} for instruction {instruction!r:.200}")
    value = record[key]
    if not isinstance(value, str):
        raise ValueError(f"{what}: {key!r} must be a string for instruction {instruction!r:.200}")
    return value


def _standardised_delta(delta: np.ndarray) -> np.ndarray:
    """Δ / std(Δ) with ddof 1 and no centring; all-equal differences (std 0) give zeros."""
    if delta.size < 2:
        return np.zeros_like(delta)
    sd = float(np.std(delta, ddof=1))
    if not math.isfinite(sd) or sd == 0.0:
        return np.zeros_like(delta)
    return delta / sd


def _difficulty(
    instruction_difficulty: Mapping[str, float], instruction: str, what: str = "instruction_difficulty"
) -> float:
    if instruction not in instruction_difficulty:
        raise ValueError(f"{what}: no difficulty for instruction {instruction!r:.200}")
    value = float(instruction_difficulty[instruction])
    if not math.isfinite(value):
        raise ValueError(f"{what}: difficulty is not finite for instruction {instruction!r:.200}")
    return value


def _gamed_rows(
    gamed_annotations: Iterable[Mapping[str, Any]],
    instruction_difficulty: Mapping[str, float],
    scale: Scale,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tanh(std_delta_len), difficulty, soft label) of the gamed-baseline rows (NaN labels kept)."""
    rows = list(gamed_annotations)
    groups: dict[str, list[int]] = {}
    std_len = np.full(len(rows), math.nan)
    raw_delta = np.full(len(rows), math.nan)
    diff = np.empty(len(rows))
    label = np.empty(len(rows))
    for i, rec in enumerate(rows):
        if not isinstance(rec, Mapping):
            raise ValueError(f"gamed_annotations: records must be mappings, got {rec!r:.200}")
        label[i] = to_preference(rec.get("preference"), scale) - 1.0
        if rec.get("instruction_difficulty") is not None:
            diff[i] = float(rec["instruction_difficulty"])
        elif "instruction" in rec:
            diff[i] = _difficulty(instruction_difficulty, rec["instruction"], "gamed_annotations")
        else:
            raise ValueError("gamed_annotations: a row needs 'instruction_difficulty' or 'instruction'")
        if rec.get("std_delta_len") is not None:
            std_len[i] = float(rec["std_delta_len"])
        else:
            instruction = str(rec.get("instruction", f"<gamed row {i}>"))
            out_1 = _require_text(rec, "output_1", instruction, "gamed_annotations")
            out_2 = _require_text(rec, "output_2", instruction, "gamed_annotations")
            raw_delta[i] = len(out_1) - len(out_2)
            group = str(rec.get("generator", rec.get("generator_2", rec.get("model", ""))))
            groups.setdefault(group, []).append(i)
    for idx in groups.values():
        sel = np.array(idx)
        std_len[sel] = _standardised_delta(raw_delta[sel])
    return np.tanh(std_len), diff, label


def length_controlled_win_rate(
    annotations: KeyedInput,
    instruction_difficulty: Mapping[str, float] | None = None,
    gamed_annotations: Iterable[Mapping[str, Any]] | None = None,
    *,
    glm: str = "length_controlled_v1",
    scale: Scale = "preference",
    regularize_to_baseline_lambda: float = 0.2,
    n_splits: int = 5,
    Cs: int | Sequence[float] = 10,
    C: float = 100.0,
    is_baseline: bool = False,
) -> LengthControlledResult:
    """Length-controlled AlpacaEval win rate (``length_controlled_v1`` and its variants).

    Parameters
    ----------
    annotations:
        One record per instruction with ``output_1`` (baseline output), ``output_2`` (model output) and
        ``preference``; either records with an ``instruction`` field or ``{instruction: record}``.
    instruction_difficulty:
        ``{instruction text: difficulty}``. Required by ``length_controlled_v1`` / ``_noreg``; a
        missing instruction raises ``ValueError`` naming it.
    gamed_annotations:
        ``length_controlled_v1`` only: the gamed-baseline rows (``df_gamed``: the verbose / concise
        gpt4_1106_preview variants judged against gpt4_1106_preview). Each row has ``preference`` (on
        ``scale``), either ``std_delta_len`` or ``output_1``/``output_2`` (standardised per
        ``generator``/``model``), and either ``instruction_difficulty`` or an ``instruction`` that is
        looked up in ``instruction_difficulty``. They enter with ``not_gamed = 0`` and weight λ/2.
    glm:
        One of :data:`GLM_NAMES`.
    n_splits, Cs, C:
        L1 logistic regression chosen by ``n_splits``-fold grouped CV over ``Cs`` (an int gives
        ``logspace(-4, 4, Cs)``); ``n_splits <= 0`` fits once at ``C``.
    is_baseline:
        The model *is* the baseline: LC is 50 by construction and nothing is fitted.

    Model (docs/evals.md#alpacaeval-2-length-control):
    ``logit P(model preferred) = θ·not_gamed + φ·tanh(s_i) + ψ·d_i`` without intercept,
    ``s_i = Δ_i / std(Δ)`` (ddof 1, not centred), ``Δ_i = len(baseline) − len(model)`` in characters,
    soft label ``y_i = p_i − 1``. LC = ``100·mean_i σ(θ + ψ·d_i)`` over all the model's instructions
    (length difference 0, not_gamed 1), ``lc_standard_error`` = 100·sem of the same.
    """
    if glm not in GLM_NAMES:
        raise ValueError(f"unknown glm {glm!r}; expected one of {GLM_NAMES}")
    keyed = _keyed(annotations, "annotations")
    instructions = sorted(keyed)  # order-independent: fold assignment must not depend on input order
    prefs = np.array([to_preference(_preference_of(keyed[k]), scale) for k in instructions], dtype=float)
    raw = _describe(prefs)

    uses_difficulty = glm != "length_controlled_minimal"
    uses_gamed = glm == "length_controlled_v1"
    names = [_WEIGHT_NOT_GAMED, _WEIGHT_LENGTH] + ([_WEIGHT_DIFFICULTY] if uses_difficulty else [])

    if is_baseline:
        n = len(instructions)
        return LengthControlledResult(
            50.0, 0.0 if n > 1 else math.nan, raw, glm, {k: 0.0 for k in names}, None
        )

    if uses_difficulty and instruction_difficulty is None:
        raise ValueError(f"{glm} needs instruction_difficulty (keyed by instruction text)")
    if uses_gamed and gamed_annotations is None:
        raise ValueError(f"{glm} needs gamed_annotations (the df_gamed rows); use length_controlled_noreg without them")

    model_x = _model_design(keyed, instructions, instruction_difficulty if uses_difficulty else None)
    x_all, y_all, w_all = model_x, prefs - 1.0, np.ones(len(instructions))
    if uses_gamed:
        g_len, g_diff, g_y = _gamed_rows(gamed_annotations, instruction_difficulty, scale)  # type: ignore[arg-type]
        g_w = np.full(g_y.size, regularize_to_baseline_lambda / 2.0)  # two gamed baselines, λ/2 each
        # gamed rows first, as upstream concatenates them
        x_all = np.vstack([_design(np.zeros(g_y.size), g_len, g_diff), x_all])
        y_all = np.concatenate([g_y, y_all])
        w_all = np.concatenate([g_w, w_all])

    keep = ~np.isnan(y_all) & np.all(np.isfinite(x_all), axis=1)
    beta, c_best = _fit_l1_logistic_cv(x_all[keep], y_all[keep], w_all[keep], n_splits, Cs, C)
    return _lc_result(beta, c_best, model_x, raw, glm, names)


def _design(not_gamed: np.ndarray, length: np.ndarray, diff: np.ndarray | None) -> np.ndarray:
    """The LC GLM's design matrix: not_gamed, length feature and, when the GLM uses it, difficulty."""
    return np.column_stack([not_gamed, length] + ([diff] if diff is not None else []))


def _model_design(
    keyed: Mapping[str, Any], instructions: list[str], instruction_difficulty: Mapping[str, float] | None
) -> np.ndarray:
    """Design rows of the model's own annotations (not_gamed 1); no difficulty column without a mapping."""
    delta = np.array(
        [
            len(_require_text(keyed[k], "output_1", k, "annotations"))
            - len(_require_text(keyed[k], "output_2", k, "annotations"))
            for k in instructions
        ],
        dtype=float,
    )
    # std over every annotated row, judged or not, as upstream featurises before dropping NaN labels
    length_feature = np.tanh(_standardised_delta(delta))
    difficulty = (
        np.array([_difficulty(instruction_difficulty, k) for k in instructions])
        if instruction_difficulty is not None
        else None
    )
    return _design(np.ones(len(instructions)), length_feature, difficulty)


def _lc_result(
    beta: np.ndarray, c_best: float, model_x: np.ndarray, raw: AlpacaWinRate, glm: str, names: list[str]
) -> LengthControlledResult:
    """LC from the fitted weights: the model's rows predicted at no length difference."""
    weights = {name: float(b) for name, b in zip(names, beta)}
    test_x = model_x.copy()
    test_x[:, 1] = 0.0  # no length difference
    predicted = sigmoid(test_x @ beta)
    lc = float(100.0 * predicted.mean())
    return LengthControlledResult(
        length_controlled_winrate=lc,
        lc_standard_error=100.0 * _sem(predicted),
        win_rate=raw,
        glm=glm,
        weights=weights,
        C=c_best,
        reason=None,
        is_extreme_change=bool(math.isfinite(raw.win_rate) and is_extreme_change(raw.win_rate, lc)),
    )


def maybe_length_controlled_win_rate(
    annotations: KeyedInput,
    instruction_difficulty: Mapping[str, float] | None,
    gamed_annotations: Iterable[Mapping[str, Any]] | None,
    **kwargs: Any,
) -> LengthControlledResult:
    """Like :func:`length_controlled_win_rate`, but returns ``length_controlled_winrate=None`` with a
    ``reason`` when the difficulty inputs (``instruction_difficulty.csv`` / ``df_gamed.csv``) are not
    available, instead of inventing a value. A difficulty mapping that lacks one of the instructions is
    a data error and still raises ``ValueError``.
    """
    glm = kwargs.get("glm", "length_controlled_v1")
    if glm not in GLM_NAMES:
        raise ValueError(f"unknown glm {glm!r}; expected one of {GLM_NAMES}")
    missing = []
    if glm != "length_controlled_minimal" and instruction_difficulty is None:
        missing.append("instruction difficulty (instruction_difficulty.csv) unavailable")
    if glm == "length_controlled_v1" and gamed_annotations is None:
        missing.append("gamed-baseline annotations (df_gamed.csv) unavailable")
    if missing and not kwargs.get("is_baseline", False):
        keyed = _keyed(annotations, "annotations")
        raw = win_rate({k: _preference_of(v) for k, v in keyed.items()}, scale=kwargs.get("scale", "preference"))
        return LengthControlledResult(None, None, raw, glm, reason="; ".join(missing))
    return length_controlled_win_rate(annotations, instruction_difficulty, gamed_annotations, **kwargs)


def predict_cross_baseline_win_rate(
    model_weights: Mapping[str, float],
    baseline_weights: Mapping[str, float],
    instruction_difficulty: Mapping[str, float],
) -> float:
    """LC win rate of one model against another baseline from weights fitted against a common one.

    ``100·mean_i σ((θ_m − θ_b') + (ψ_m − ψ_b')·d_i)`` over every instruction in
    ``instruction_difficulty`` (weights as in :attr:`LengthControlledResult.weights`).
    """
    d_theta = float(model_weights[_WEIGHT_NOT_GAMED]) - float(baseline_weights[_WEIGHT_NOT_GAMED])
    d_psi = float(model_weights.get(_WEIGHT_DIFFICULTY, 0.0)) - float(baseline_weights.get(_WEIGHT_DIFFICULTY, 0.0))
    diff = np.array([float(v) for v in instruction_difficulty.values()], dtype=float)
    if diff.size == 0:
        raise ValueError("instruction_difficulty is empty")
    return float(100.0 * sigmoid(d_theta + d_psi * diff).mean())
