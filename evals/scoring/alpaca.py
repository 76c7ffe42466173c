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
  sequence of records with an ``instruction`` field. Duplicated instructions raise ``ValueError``.
  Upstream looks instruction difficulty up by the row's position (alpaca_eval#316 / #453); here each
  instruction brings its own canonical position, so a missing or reordered row shifts nothing, and
  a run in the canonical order gets upstream's numbers.
* The LC fit is upstream's own estimator (scikit-learn's liblinear ``LogisticRegressionCV`` with
  ``glm_winrate.py``'s arguments, folds and scorer) on the same rows in the same order.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

import numpy as np

from .numeric import sigmoid

__all__ = [
    "GLM_NAMES",
    "AlpacaWinRate",
    "GamedRows",
    "LengthControlledResult",
    "gamed_rows",
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
# Length-controlled win rate: alpaca_eval's GLM, fitted with the same scikit-learn estimator
# --------------------------------------------------------------------------------------------------

# alpaca_eval's LC fit (``glm_winrate.fit_LogisticRegressionCV``): its estimator kwargs, folds and C grid.
_CV_SPLITS = 5
_LOGREG_KWARGS: dict[str, Any] = dict(random_state=123, dual=False, penalty="l1", solver="liblinear", n_jobs=None,
                                      fit_intercept=False)
# length_controlled_v1's λ: the gamed rows' total weight relative to the model's (λ/2 for each of the two).
_GAMED_LAMBDA = 0.2


@dataclass(frozen=True)
class GamedRows:
    """The rows of ``df_gamed.csv`` (gpt4_1106_preview's verbose and concise variants judged against
    gpt4_1106_preview) that length_controlled_v1 fits next to the model's own rows.

    ``preference`` is on the published ``[0, 1]`` scale (``P(variant preferred)``, NaN where the
    judge gave none); ``index`` is the instruction's position in the canonical 805 order. Arrays are
    in file order, which is the order upstream stacks them in.
    """

    index: np.ndarray
    preference: np.ndarray
    std_delta_len: np.ndarray
    instruction_difficulty: np.ndarray
    not_gamed_baseline: np.ndarray

    def difficulty_by_position(self) -> dict[int, float]:
        """Canonical position → difficulty, as upstream reads it: the first row of each ``index``,
        looked up by its *row number*. On the published file the two agree (row g holds index g);
        a file where they do not is not that file, and reading it either way would be a guess."""
        first: dict[int, int] = {}
        for row, idx in enumerate(self.index.tolist()):
            first.setdefault(int(idx), row)
        moved = [(idx, row) for idx, row in first.items() if idx != row]
        if moved:
            idx, row = moved[0]
            raise ValueError(f"df_gamed: the first row of index {idx} is row {row}; upstream looks difficulties "
                             "up by row number, which equals the index only in the published layout")
        return {idx: float(self.instruction_difficulty[row]) for idx, row in first.items()}


def _number(value: Any, what: str) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: not a number: {value!r:.80}") from None


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"{what}: expected True or False, got {value!r:.80}")
    return text == "true"


def gamed_rows(rows: Iterable[Mapping[str, Any]]) -> GamedRows:
    """``df_gamed.csv``'s rows (e.g. ``csv.DictReader``) as :class:`GamedRows`. Upstream reads the
    columns ``index``, ``preference``, ``std_delta_len``, ``instruction_difficulty`` and
    ``not_gamed_baseline`` (``model`` it drops); features must be finite, a preference may be empty."""
    cols: dict[str, list[Any]] = {k: [] for k in ("index", "preference", "std_delta_len", "instruction_difficulty",
                                                  "not_gamed_baseline")}
    for i, rec in enumerate(rows):
        at = f"df_gamed row {i}"
        missing = [k for k in cols if k not in rec]
        if missing:
            raise ValueError(f"{at}: no column {', '.join(missing)}")
        index = _number(rec["index"], f"{at} index")
        if not index.is_integer():
            raise ValueError(f"{at}: index must be an integer, got {rec['index']!r:.80}")
        cols["index"].append(int(index))
        cols["preference"].append(_number(rec["preference"], f"{at} preference"))
        for key in ("std_delta_len", "instruction_difficulty"):
            value = _number(rec[key], f"{at} {key}")
            if not math.isfinite(value):
                raise ValueError(f"{at}: {key} must be a finite number, got {rec[key]!r:.80}")
            cols[key].append(value)
        cols["not_gamed_baseline"].append(_flag(rec["not_gamed_baseline"], f"{at} not_gamed_baseline"))
    if not cols["index"]:
        raise ValueError("df_gamed has no rows")
    floats = {k: np.array(cols[k], dtype=float) for k in ("preference", "std_delta_len", "instruction_difficulty")}
    return GamedRows(np.array(cols["index"], dtype=np.int64), floats["preference"], floats["std_delta_len"],
                     floats["instruction_difficulty"], np.array(cols["not_gamed_baseline"], dtype=bool))


@dataclass(frozen=True)
class LengthControlledResult:
    """Result of the length-controlled GLM.

    ``length_controlled_winrate`` / ``lc_standard_error`` are ``None`` when LC was not computed; then
    ``reason`` says why (for a report line "LC not computed: <reason>"). ``weights`` holds the fitted
    coefficients under the keys ``not_gamed_baseline`` (θ), ``length`` (φ, on tanh of the standardised
    baseline-minus-model length) and ``instruction_difficulty`` (ψ); ``C`` is the selected inverse L1 strength.
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
    """Δ / std(Δ) with ddof 1 and no centring. Where upstream would divide by a zero or undefined std
    (one row, or all differences equal) and break its fit, this gives zeros."""
    if delta.size < 2:
        return np.zeros_like(delta)
    sd = float(np.std(delta, ddof=1))
    if not math.isfinite(sd) or sd == 0.0:
        return np.zeros_like(delta)
    return delta / sd


def _canonical_order(keyed: Mapping[str, Any], positions: Mapping[str, int] | None) -> list[str]:
    """The instructions in canonical order (upstream's row order for a full run), each position once."""
    if positions is None:
        return sorted(keyed)
    missing = [k for k in keyed if k not in positions]
    if missing:
        raise ValueError(f"instruction_positions: no canonical position for instruction {missing[0]!r:.200}")
    order = sorted(keyed, key=lambda k: positions[k])
    for a, b in zip(order, order[1:]):
        if positions[a] == positions[b]:
            raise ValueError(f"instruction_positions: instructions {a!r:.100} and {b!r:.100} share position "
                             f"{positions[a]}")
    return order


def _difficulties(order: list[str], positions: Mapping[str, int], by_position: Mapping[int, float]) -> np.ndarray:
    missing = [k for k in order if positions[k] not in by_position]
    if missing:
        raise ValueError(f"df_gamed: no difficulty for position {positions[missing[0]]} "
                         f"(instruction {missing[0]!r:.200})")
    return np.array([by_position[positions[k]] for k in order], dtype=float)


def _logloss_continuous(y_true: np.ndarray, y_pred: np.ndarray, true_prob: np.ndarray,
                        true_sample_weight: np.ndarray | None = None) -> float:
    """glm_winrate's CV score: the log loss against the soft label each duplicated row stands for."""
    target = np.where(y_true == 1, true_prob, 1 - true_prob)
    q = np.clip(y_pred, 1e-15, 1 - 1e-15)
    losses = target * np.log(q) + (1 - target) * np.log(1 - q)
    if true_sample_weight is not None:
        losses = losses * true_sample_weight
    return float(-np.mean(losses))


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> Any:
    """alpaca_eval's soft-label fit: every row once as label 1 (weight y·w) and once as label 0
    (weight (1 − y)·w), one CV group per original row, liblinear L1 logistic regression over 10 C
    values chosen by 5-fold GroupKFold on the weighted continuous log loss. Metadata routing is on
    for this fit only."""
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = y.size
    true_prob = np.concatenate([y, 1.0 - y])
    true_weight = None if w is None else np.concatenate([w, w])
    sample_weight = true_prob if true_weight is None else true_prob * true_weight
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        # scikit-learn >= 1.8 deprecates the `penalty` spelling that upstream uses; the fit is the same.
        warnings.simplefilter("ignore", FutureWarning)
        scorer = make_scorer(_logloss_continuous, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_sample_weight=True, true_prob=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=_CV_SPLITS), scoring=scorer, **_LOGREG_KWARGS)
        model.set_fit_request(sample_weight=True)
        model.fit(np.vstack([x, x]), np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)]),
                  sample_weight=sample_weight, groups=np.concatenate([np.arange(n), np.arange(n)]),
                  true_sample_weight=true_weight, true_prob=true_prob)
    return model


def length_controlled_win_rate(
    annotations: KeyedInput,
    gamed: GamedRows | None = None,
    instruction_positions: Mapping[str, int] | None = None,
    *,
    glm: str = "length_controlled_v1",
    scale: Scale = "preference",
    is_baseline: bool = False,
) -> LengthControlledResult:
    """Length-controlled AlpacaEval win rate (``length_controlled_v1`` and its variants), as
    ``alpaca_eval.metrics.get_length_controlled_winrate`` computes it.

    Parameters
    ----------
    annotations:
        One record per instruction with ``output_1`` (baseline output), ``output_2`` (model output) and
        ``preference`` (NaN where the judge gave none: its lengths still enter std(Δ), as upstream);
        records with an ``instruction`` field or ``{instruction: record}``.
    gamed:
        ``df_gamed.csv`` (:func:`gamed_rows`): its rows join the fit of ``length_controlled_v1``, and
        its difficulties (:meth:`GamedRows.difficulty_by_position`) are the ones every GLM but
        ``length_controlled_minimal`` uses, as upstream.
    instruction_positions:
        ``{instruction text: position in the canonical 805 order}``: the row order of the fit and
        the difficulty lookup. A missing or shared position raises ``ValueError``; the minimal GLM
        without it orders rows by instruction text.
    glm:
        One of :data:`GLM_NAMES`.
    is_baseline:
        The model *is* the baseline: LC is 50 by construction and nothing is fitted.

    Model (docs/evals.md#alpacaeval-2-length-control): ``logit P(model preferred) = θ·not_gamed +
    φ·tanh(Δ_i / std(Δ)) + ψ·d_i`` without intercept, ``Δ_i = len(baseline) − len(model)`` in
    characters, soft label ``p_i − 1``. LC = ``100·mean_i σ(θ + ψ·d_i)`` over all the model's
    instructions, ``lc_standard_error`` = 100·sem of the same.
    """
    if glm not in GLM_NAMES:
        raise ValueError(f"unknown glm {glm!r}; expected one of {GLM_NAMES}")
    keyed = _keyed(annotations, "annotations")
    order = _canonical_order(keyed, instruction_positions)
    prefs = np.array([to_preference(_preference_of(keyed[k]), scale) for k in order], dtype=float)
    raw = _describe(prefs)
    uses_difficulty = glm != "length_controlled_minimal"
    names = [_WEIGHT_LENGTH] + ([_WEIGHT_DIFFICULTY] if uses_difficulty else []) + [_WEIGHT_NOT_GAMED]
    if is_baseline:
        return LengthControlledResult(50.0, 0.0 if len(order) > 1 else math.nan, raw, glm, {k: 0.0 for k in names})
    if uses_difficulty and (gamed is None or instruction_positions is None):
        raise ValueError(f"{glm} needs df_gamed (its instruction difficulties) and the instructions' canonical "
                         "positions")
    delta = np.array([len(_require_text(keyed[k], "output_1", k, "annotations"))
                      - len(_require_text(keyed[k], "output_2", k, "annotations")) for k in order], dtype=float)
    # Columns in the order patsy builds them from upstream's formula: length, difficulty, not_gamed.
    columns = [np.tanh(_standardised_delta(delta))]
    if uses_difficulty:
        columns.append(_difficulties(order, instruction_positions, gamed.difficulty_by_position()))  # type: ignore
    model_x = np.column_stack([*columns, np.ones(len(order))])
    x, y, w = model_x, prefs - 1.0, None
    if glm == "length_controlled_v1":
        g = gamed  # type: ignore[assignment]
        gamed_x = np.column_stack([np.tanh(g.std_delta_len), g.instruction_difficulty,
                                   g.not_gamed_baseline.astype(float)])
        x, y = np.vstack([gamed_x, model_x]), np.concatenate([g.preference, y])
        w = np.where(np.concatenate([g.not_gamed_baseline, np.ones(len(order), dtype=bool)]), 1.0, _GAMED_LAMBDA / 2)
    keep = ~np.isnan(y)
    fitted = _fit(x[keep], y[keep], None if w is None else w[keep])
    test_x = model_x.copy()
    test_x[:, 0] = 0.0  # no length difference
    predicted = fitted.predict_proba(test_x)[:, 1]
    lc = float(100.0 * predicted.mean())
    return LengthControlledResult(
        length_controlled_winrate=lc,
        lc_standard_error=100.0 * _sem(predicted),
        win_rate=raw,
        glm=glm,
        weights={name: float(b) for name, b in zip(names, fitted.coef_[0])},
        C=float(fitted.C_[0]),
        is_extreme_change=bool(math.isfinite(raw.win_rate) and is_extreme_change(raw.win_rate, lc)),
    )


def maybe_length_controlled_win_rate(
    annotations: KeyedInput,
    gamed: GamedRows | None,
    instruction_positions: Mapping[str, int] | None,
    **kwargs: Any,
) -> LengthControlledResult:
    """Like :func:`length_controlled_win_rate`, but returns ``length_controlled_winrate=None`` with a
    ``reason`` when ``df_gamed.csv`` or the canonical positions are not available, instead of inventing
    a value. A position the gamed rows lack is a data error and still raises ``ValueError``.
    """
    glm = kwargs.get("glm", "length_controlled_v1")
    if glm not in GLM_NAMES:
        raise ValueError(f"unknown glm {glm!r}; expected one of {GLM_NAMES}")
    missing = []
    if glm != "length_controlled_minimal":
        if gamed is None:
            missing.append("gamed-baseline annotations and instruction difficulties (df_gamed.csv) unavailable")
        if instruction_positions is None:
            missing.append("the instructions' canonical positions are unknown (questions stored before fusekit "
                           "kept them: run the bench again to refresh them)")
    if missing and not kwargs.get("is_baseline", False):
        keyed = _keyed(annotations, "annotations")
        raw = win_rate({k: _preference_of(v) for k, v in keyed.items()}, scale=kwargs.get("scale", "preference"))
        return LengthControlledResult(None, None, raw, glm, reason="; ".join(missing))
    return length_controlled_win_rate(annotations, gamed, instruction_positions, **kwargs)


def predict_cross_baseline_win_rate(
    model_weights: Mapping[str, float],
    baseline_weights: Mapping[str, float],
    instruction_difficulty: Mapping[str, float],
) -> float:
    """LC win rate of one model against another baseline from weights fitted against a common one.

    ``100·mean_i σ((θ_m − θ_b') + (ψ_m − ψ_b')·d_i)`` over every instruction in
    ``instruction_difficulty`` (upstream's ``predict_winrate`` reads them from ``instruction_difficulty.csv``;
    weights as in :attr:`LengthControlledResult.weights`).
    """
    d_theta = float(model_weights[_WEIGHT_NOT_GAMED]) - float(baseline_weights[_WEIGHT_NOT_GAMED])
    d_psi = float(model_weights.get(_WEIGHT_DIFFICULTY, 0.0)) - float(baseline_weights.get(_WEIGHT_DIFFICULTY, 0.0))
    diff = np.array([float(v) for v in instruction_difficulty.values()], dtype=float)
    if diff.size == 0:
        raise ValueError("instruction_difficulty is empty")
    return float(100.0 * sigmoid(d_theta + d_psi * diff).mean())
