"""Arena-Hard-Auto scoring: verdicts → battles, Bradley-Terry scores, bootstrap CIs, style control.

Pure functions over in-memory data, no I/O. Follows ``docs/evals.md#arena-hard-verdicts`` and the
sections after it (upstream ``arena-hard-auto``: v0.1 ``show_result.py`` / ``utils_math.py`` at
``0489bf3``; v2.0 ``show_result.py`` / ``utils/math_utils.py``).

Input: one *judgment* per (model, question) with two games, as in the judgment JSONL files:
``{"uid": ..., "model": ..., "games": [g1, g2], "category": ...}`` where game 1 has the baseline as
assistant A and game 2 the model as assistant A. A game is a verdict label (``"A>>B"``, ``"A>B"``,
``"A=B"``, ``"B>A"``, ``"B>>A"``, optionally in ``[[...]]``; reversed forms such as ``"B<A"`` are
accepted), a ``{"score": label}`` dict as upstream stores it, or ``None``. Anything else is
unparseable: it is dropped and counted (v0.1 per game, v2.0 the whole judgment).

Scores are win rates against the baseline in percent (baseline = 50).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from .numeric import sigmoid

__all__ = [
    "VERDICT_LABELS",
    "STYLE_FEATURES",
    "GamePair",
    "Battle",
    "BattleSet",
    "Outcome",
    "OutcomeSet",
    "ArenaHardScore",
    "ArenaHardResult",
    "normalize_verdict",
    "verdict_outcomes",
    "parse_game_pairs",
    "battles_v01",
    "outcomes_v2",
    "fit_bt_ratings",
    "bt_win_rate",
    "score_battles_v01",
    "arena_hard_v01",
    "arena_hard_v2",
    "arena_hard_v01_style_control",
    "arena_hard_v2_style_control",
]

VERDICT_LABELS: tuple[str, ...] = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
_REVERSED = {"B<<A": "A>>B", "B<A": "A>B", "B=A": "A=B", "A<B": "B>A", "A<<B": "B>>A"}
#: Feature names of the style-control fit, in design-matrix order.
STYLE_FEATURES: tuple[str, ...] = ("length", "header", "list", "bold")
_LN10 = math.log(10.0)

Winner = Literal["model_a", "model_b", "tie"]


# --------------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------------


def normalize_verdict(game: Any) -> str | None:
    """Canonical label (one of :data:`VERDICT_LABELS`) of a game, or ``None`` when unusable.

    Accepts ``"A>B"``, ``"[[A>B]]"``, ``"[A>B]"``, reversed forms (``"B<A"`` → ``"A>B"``), any case and
    inner spaces, or upstream's game dict ``{"score": label, ...}``.
    """
    if isinstance(game, Mapping):
        game = game.get("score")
    if not isinstance(game, str):
        return None
    text = game.strip().upper().replace(" ", "")
    if text.startswith("[[") and text.endswith("]]"):
        text = text[2:-2]
    elif text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text in VERDICT_LABELS:
        return text
    return _REVERSED.get(text)


def verdict_outcomes(label: str, *, model_is_a: bool, weight: int = 3) -> list[float]:
    """Outcomes for the model from one canonical verdict (1 win, 0.5 tie, 0 loss).

    From A's side: ``A>>B`` → [1]·weight, ``A>B`` → [1], ``A=B`` → [0.5], ``B>A`` → [0],
    ``B>>A`` → [0]·weight; when the model is B (game 1) every outcome is ``1 − s``.
    """
    table = {
        "A>>B": [1.0] * weight,
        "A>B": [1.0],
        "A=B": [0.5],
        "B>A": [0.0],
        "B>>A": [0.0] * weight,
    }
    if label not in table:
        raise ValueError(f"not a canonical verdict label: {label!r}")
    scores = table[label]
    return list(scores) if model_is_a else [1.0 - s for s in scores]


@dataclass(frozen=True)
class GamePair:
    """Two games for one (model, question): ``games[0]`` has the baseline as A, ``games[1]`` the model."""

    uid: str
    model: str
    games: tuple[Any, Any]
    category: str | None = None


def parse_game_pairs(judgments: Iterable[GamePair | Mapping[str, Any]]) -> list[GamePair]:
    """Coerce judgment records (``uid`` or ``question_id``, ``model`` or ``model_id``, ``games``)."""
    out = []
    for rec in judgments:
        if isinstance(rec, GamePair):
            out.append(rec)
            continue
        if not isinstance(rec, Mapping):
            raise ValueError(f"judgment must be a mapping, got {rec!r:.200}")
        uid = rec.get("uid", rec.get("question_id"))
        model = rec.get("model", rec.get("model_id"))
        if uid is None or model is None:
            raise ValueError(f"judgment needs 'uid' (or 'question_id') and 'model': {rec!r:.200}")
        games = list(rec.get("games") or [])
        games = (games + [None, None])[:2]
        out.append(GamePair(str(uid), str(model), (games[0], games[1]), rec.get("category")))
    return out


# --------------------------------------------------------------------------------------------------
# Battles (v0.1) and outcomes (v2.0)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Battle:
    """One v0.1 battle row: ``model_a`` is the baseline, ``model_b`` the judged model."""

    uid: str
    model_a: str
    model_b: str
    winner: Winner


@dataclass(frozen=True)
class BattleSet:
    """Battle rows (strong verdicts repeated ``weight`` times) and the games they came from."""

    battles: tuple[Battle, ...]
    n_games: int
    n_dropped: int


def battles_v01(
    judgments: Iterable[GamePair | Mapping[str, Any]],
    baseline: str = "gpt-4-0314",
    *,
    weight: int = 3,
    first_game_only: bool = False,
) -> BattleSet:
    """v0.1 battles: each usable game gives one row (``weight`` rows for ``>>`` verdicts).

    Game 1 (A = baseline): ``A>B`` → baseline (model_a) wins; game 2 (A = model): ``A>B`` → model
    (model_b) wins; ``A=B`` → tie. Unparseable / ``None`` games are dropped one game at a time and
    counted in ``n_dropped``. Row order is judgment order, game 1 before game 2 (it matters for the
    seeded bootstrap).
    """
    rows: list[Battle] = []
    n_games = 0
    n_dropped = 0
    for j in parse_game_pairs(judgments):
        games = j.games[:1] if first_game_only else j.games
        for game_index, game in enumerate(games):
            n_games += 1
            label = normalize_verdict(game)
            if label is None:
                n_dropped += 1
                continue
            baseline_is_a = game_index == 0
            if label == "A=B":
                winner: Winner = "tie"
            elif label in ("A>B", "A>>B"):
                winner = "model_a" if baseline_is_a else "model_b"
            else:
                winner = "model_b" if baseline_is_a else "model_a"
            repeat = weight if label in ("A>>B", "B>>A") else 1
            rows.extend([Battle(j.uid, baseline, j.model, winner)] * repeat)
    return BattleSet(tuple(rows), n_games, n_dropped)


@dataclass(frozen=True)
class Outcome:
    """One exploded v2.0 outcome for the model against the baseline (1 win, 0.5 tie, 0 loss)."""

    uid: str
    model: str
    score: float
    category: str | None = None


@dataclass(frozen=True)
class OutcomeSet:
    """v2.0 outcome rows and how many judgments were dropped for a null / unparseable game."""

    outcomes: tuple[Outcome, ...]
    n_judgments: int
    n_dropped: int


def outcomes_v2(
    judgments: Iterable[GamePair | Mapping[str, Any]],
    *,
    weight: int = 3,
    category: str | None = None,
) -> OutcomeSet:
    """v2.0 outcomes: game 2's outcomes followed by ``1 −`` game 1's; a judgment with either game
    null or unparseable is dropped entirely (counted in ``n_dropped``). ``category`` keeps only
    judgments of that category."""
    rows: list[Outcome] = []
    n = 0
    dropped = 0
    for j in parse_game_pairs(judgments):
        if category is not None and j.category != category:
            continue
        n += 1
        g1, g2 = normalize_verdict(j.games[0]), normalize_verdict(j.games[1])
        if g1 is None or g2 is None:
            dropped += 1
            continue
        scores = verdict_outcomes(g2, model_is_a=True, weight=weight) + verdict_outcomes(
            g1, model_is_a=False, weight=weight
        )
        rows.extend(Outcome(j.uid, j.model, s, j.category) for s in scores)
    return OutcomeSet(tuple(rows), n, dropped)


# --------------------------------------------------------------------------------------------------
# Logistic regression (Newton), Bradley-Terry
# --------------------------------------------------------------------------------------------------


def _fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    l2: float = 0.0,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> np.ndarray:
    """Minimise ``Σ w_i·CE(y_i, σ(x_i·β)) + (l2/2)·‖β‖²`` (soft labels, no intercept) by damped Newton.

    A ridge floor of 1e-8 keeps the optimum finite under perfect separation (a model that wins every
    battle); it moves win rates by far less than any reported digit otherwise.
    """
    d = x.shape[1]
    beta = np.zeros(d)
    if d == 0:
        return beta
    ridge = max(l2, 1e-8)

    def objective(b: np.ndarray) -> float:
        z = x @ b
        return float(np.sum(w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * ridge * (b @ b))

    current = objective(beta)
    for _ in range(max_iter):
        q = sigmoid(x @ beta)
        g = x.T @ (w * (q - y)) + ridge * beta
        h = (x.T * (w * q * (1.0 - q))) @ x + ridge * np.eye(d)
        step = -np.linalg.solve(h, g)
        t = 1.0
        slope = float(g @ step)
        while True:
            candidate = beta + t * step
            value = objective(candidate)
            if value <= current + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        moved = float(np.max(np.abs(candidate - beta)))
        if value > current:
            break
        beta, current = candidate, value
        if moved < tol or float(np.max(np.abs(g))) < tol:
            break
    return beta


_WINNER_LABEL = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}


def fit_bt_ratings(
    battles: Sequence[Battle],
    baseline: str,
    *,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
) -> dict[str, float]:
    """Bradley-Terry (Elo-scale) ratings by unpenalised logistic regression, baseline = ``init_rating``.

    As upstream ``compute_mle_elo``: ``logit P(model_a wins) = ln(base)·(β_a − β_b)``, ties count as
    half a win for each side (upstream duplicates every battle and splits ties into one win and one
    loss, which is the same likelihood), rating = ``init_rating + scale·β`` shifted so the baseline
    sits at ``init_rating`` (here by pinning β_baseline = 0). Models without battles are absent.
    """
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} appears in no battle")
    others = [m for m in models if m != baseline]
    index = {m: i for i, m in enumerate(others)}
    n = len(battles)
    x = np.zeros((n, len(others)))
    y = np.empty(n)
    log_base = math.log(base)
    for r, b in enumerate(battles):
        if b.model_a != baseline:
            x[r, index[b.model_a]] += log_base
        if b.model_b != baseline:
            x[r, index[b.model_b]] -= log_base
        y[r] = _WINNER_LABEL[b.winner]
    beta = _fit_logistic(x, y, np.ones(n)) if others else np.zeros(0)
    ratings = {m: init_rating + scale * float(beta[index[m]]) for m in others}
    ratings[baseline] = init_rating
    return ratings


def bt_win_rate(rating: float, baseline_rating: float, *, scale: float = 400.0, base: float = 10.0) -> float:
    """Win rate in percent implied by two ratings: ``100 / (1 + base^((R_base − R)/scale))``."""
    return 100.0 / (1.0 + base ** ((baseline_rating - rating) / scale))


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArenaHardScore:
    """One leaderboard row. ``score``/``lower``/``upper`` are win rates vs the baseline in percent.

    ``point_estimate`` is the full-sample value (v0.1: equals ``score``; v2.0: the plain mean / the
    full-sample style-controlled fit, while ``score`` is the bootstrap mean / median as upstream
    reports). ``rating`` is the Elo-scale BT rating (v0.1 only). ``n_rows`` counts the battle /
    outcome rows of the model (strong verdicts counted ``weight`` times).
    """

    model: str
    score: float
    lower: float
    upper: float
    point_estimate: float
    rating: float | None = None
    rating_lower: float | None = None
    rating_upper: float | None = None
    n_rows: int = 0


@dataclass(frozen=True)
class ArenaHardResult:
    """Scores for every model (baseline included at 50), the dropped-verdict count and CI level.

    ``n_dropped`` counts games (v0.1) or judgments (v2.0) left out for a null / unparseable verdict.
    ``style_coefs`` holds the style-control feature coefficients when style control was applied.
    """

    version: str
    baseline: str
    scores: dict[str, ArenaHardScore]
    n_dropped: int
    ci_level: float
    num_rounds: int
    style_coefs: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _baseline_row(baseline: str, rating: float | None = None) -> ArenaHardScore:
    return ArenaHardScore(baseline, 50.0, 50.0, 50.0, 50.0, rating, rating, rating, 0)


# --------------------------------------------------------------------------------------------------
# v0.1
# --------------------------------------------------------------------------------------------------


def score_battles_v01(
    battles: Sequence[Battle],
    baseline: str = "gpt-4-0314",
    *,
    num_rounds: int = 100,
    seed: int | None = 42,
) -> dict[str, ArenaHardScore]:
    """v0.1 scores from battle rows: BT fit on all rows, 95% CI from ``num_rounds`` bootstrap refits.

    Bootstrap: each round resamples battle rows with replacement using
    ``numpy.random.RandomState(seed).choice(n, n)`` (the draws upstream's
    ``np.random.seed(42)`` + ``DataFrame.sample(frac=1, replace=True)`` makes), refits, and the
    2.5 / 97.5 percentiles of the ratings become the CI, mapped to win rates. A model missing from a
    resample is skipped in that round.
    """
    if not battles:
        raise ValueError("no usable battles")
    battles = list(battles)
    ratings = fit_bt_ratings(battles, baseline)
    models = [m for m in sorted(ratings) if m != baseline]
    boot = np.full((num_rounds, len(models)), math.nan)
    rs = np.random.RandomState(seed)
    n = len(battles)
    for r in range(num_rounds):
        idx = rs.choice(n, size=n, replace=True)
        sample = [battles[i] for i in idx]
        present = {b.model_a for b in sample} | {b.model_b for b in sample}
        if baseline not in present:
            continue
        fitted = fit_bt_ratings(sample, baseline)
        for k, m in enumerate(models):
            if m in fitted:
                boot[r, k] = fitted[m]
    out = {baseline: _baseline_row(baseline, ratings[baseline])}
    base_rating = ratings[baseline]
    for k, m in enumerate(models):
        column = boot[:, k]
        lo_r = float(np.nanpercentile(column, 2.5)) if np.any(~np.isnan(column)) else math.nan
        hi_r = float(np.nanpercentile(column, 97.5)) if np.any(~np.isnan(column)) else math.nan
        score = bt_win_rate(ratings[m], base_rating)
        out[m] = ArenaHardScore(
            model=m,
            score=score,
            lower=bt_win_rate(lo_r, base_rating),
            upper=bt_win_rate(hi_r, base_rating),
            point_estimate=score,
            rating=ratings[m],
            rating_lower=lo_r,
            rating_upper=hi_r,
            n_rows=sum(1 for b in battles if m in (b.model_a, b.model_b)),
        )
    return out


def arena_hard_v01(
    judgments: Iterable[GamePair | Mapping[str, Any]],
    baseline: str = "gpt-4-0314",
    *,
    weight: int = 3,
    num_rounds: int = 100,
    seed: int | None = 42,
    first_game_only: bool = False,
) -> ArenaHardResult:
    """Arena-Hard v0.1 leaderboard: battles (strong verdicts × ``weight``, ties half), BT scores as
    win rate vs ``baseline`` and a seeded 95% bootstrap CI (:func:`score_battles_v01`)."""
    bs = battles_v01(judgments, baseline, weight=weight, first_game_only=first_game_only)
    scores = score_battles_v01(bs.battles, baseline, num_rounds=num_rounds, seed=seed)
    return ArenaHardResult("v0.1", baseline, scores, bs.n_dropped, 0.95, num_rounds, extra={"n_games": bs.n_games})


# --------------------------------------------------------------------------------------------------
# v2.0
# --------------------------------------------------------------------------------------------------


def arena_hard_v2(
    judgments: Iterable[GamePair | Mapping[str, Any]],
    baseline: str,
    *,
    weight: int = 3,
    num_rounds: int = 100,
    seed: int | None = 42,
    category: str | None = None,
) -> ArenaHardResult:
    """Arena-Hard v2.0 leaderboard (``show_result.py print_leaderboard``), no style control.

    Per model, ``num_rounds`` bootstrap resamples of its own outcome rows; score = mean of the
    bootstrap means, CI = 5th / 95th percentiles (a 90% interval). Upstream draws unseeded; here
    ``seed`` seeds one ``RandomState`` whose draws follow pandas' ``groupby(...).sample`` (models in
    sorted order each round); ``seed=None`` draws fresh entropy like upstream.
    """
    os_ = outcomes_v2(judgments, weight=weight, category=category)
    by_model: dict[str, list[float]] = {}
    for o in os_.outcomes:
        if o.model == baseline:
            continue
        by_model.setdefault(o.model, []).append(o.score)
    models = sorted(by_model)
    arrays = {m: np.array(by_model[m], dtype=float) for m in models}
    boot = np.empty((num_rounds, len(models)))
    rs = np.random.RandomState(seed)
    for r in range(num_rounds):
        for k, m in enumerate(models):
            a = arrays[m]
            boot[r, k] = a[rs.choice(a.size, size=a.size, replace=True)].mean()
    scores = {baseline: _baseline_row(baseline)}
    for k, m in enumerate(models):
        scores[m] = ArenaHardScore(
            model=m,
            score=float(100.0 * boot[:, k].mean()),
            lower=float(100.0 * np.percentile(boot[:, k], 5)),
            upper=float(100.0 * np.percentile(boot[:, k], 95)),
            point_estimate=float(100.0 * arrays[m].mean()),
            n_rows=int(arrays[m].size),
        )
    return ArenaHardResult(
        "v2.0", baseline, scores, os_.n_dropped, 0.90, num_rounds, extra={"n_judgments": os_.n_judgments}
    )


# --------------------------------------------------------------------------------------------------
# Style control
# --------------------------------------------------------------------------------------------------


def _count(value: Any) -> float:
    """Upstream sums dict-valued counts (``{"h1": 2, ...}``) and takes ints as they are."""
    if isinstance(value, Mapping):
        return float(sum(value.values()))
    return float(value)


def _style_vector(metadata: Mapping[str, Mapping[str, Mapping[str, Any]]], model: str, uid: str) -> np.ndarray:
    """(token_len, header_count, list_count, bold_count) of one answer; ValueError when absent."""
    try:
        meta = metadata[model][uid]
    except KeyError:
        raise ValueError(f"style metadata missing for model {model!r}, question {uid!r}") from None
    try:
        return np.array([_count(meta[k]) for k in ("token_len", "header_count", "list_count", "bold_count")])
    except KeyError as exc:
        raise ValueError(f"style metadata for model {model!r}, question {uid!r} lacks {exc.args[0]!r}") from None


def _feature_columns(features: Sequence[str]) -> list[int]:
    wanted = set(features)
    unknown = wanted - {"length", "markdown"}
    if unknown or not wanted:
        raise ValueError(f"control features must be a non-empty subset of ('length', 'markdown'), got {features!r}")
    cols = []
    if "length" in wanted:
        cols.append(0)
    if "markdown" in wanted:
        cols.extend([1, 2, 3])
    return cols


def _zscore(f: np.ndarray, ddof: int, center: bool = True) -> np.ndarray:
    """Column-wise z-score (``center=False``: scale only); a constant column (std 0) becomes zeros."""
    mean = f.mean(axis=0) if center else np.zeros(f.shape[1])
    sd = f.std(axis=0, ddof=ddof) if f.shape[0] > ddof else np.zeros(f.shape[1])
    out = np.zeros_like(f)
    ok = sd > 0
    out[:, ok] = (f[:, ok] - mean[ok]) / sd[ok]
    return out


def arena_hard_v2_style_control(
    judgments: Iterable[GamePair | Mapping[str, Any]],
    metadata: Mapping[str, Mapping[str, Mapping[str, Any]]],
    baseline: str,
    *,
    features: Sequence[str] = ("length", "markdown"),
    weight: int = 3,
    num_rounds: int = 100,
    seed: int | None = 42,
    category: str | None = None,
    center: bool = True,
) -> ArenaHardResult:
    """Arena-Hard v2.0 with style control (``print_leaderboard_with_style_features``).

    ``metadata[model][uid]`` holds ``token_len`` and ``header_count`` / ``list_count`` /
    ``bold_count`` (ints or dicts that are summed) for every model *and* the baseline. Per outcome
    row: length feature ``(L_m − L_b)/(L_m + L_b)``; markdown densities ``c/(L + 1)`` with feature
    ``(d_m − d_b)/(d_m + d_b + 1)``; every feature z-scored over the rows (ddof 1). Design: +1 on
    the model's column (baseline pinned at 0; upstream's −1 baseline column only fixes the same
    origin) plus the chosen features; BT fitted on summed soft-label BCE. ``num_rounds`` bootstrap
    row resamples (``RandomState(seed).randint(0, n, (rounds, n))``; upstream is unseeded); the win
    rate at zero (standardised) style difference ``σ(c_m − c_base)`` is reported as the bootstrap
    median with 5 / 95 percentiles. Upstream fits with torch LBFGS (50 iterations); this solves the
    same objective to convergence with Newton's method.

    Because the features are centred, "zero style difference" is the *mean* standardised feature
    over all rows (pooled over the models passed in), not a raw difference of zero; that is
    upstream's behaviour (``center=True``). ``center=False`` only scales the features, so the
    reported win rate is at a raw style difference of zero.
    """
    cols = _feature_columns(features)
    os_ = outcomes_v2(judgments, weight=weight, category=category)
    rows = [o for o in os_.outcomes if o.model != baseline]
    if not rows:
        raise ValueError("no usable outcomes")
    feats = _zscore(_v2_style_differences(rows, metadata, baseline), ddof=1, center=center)[:, cols]
    models = sorted({o.model for o in rows})
    index = {m: k for k, m in enumerate(models)}
    onehot = np.zeros((len(rows), len(models)))
    onehot[np.arange(len(rows)), [index[o.model] for o in rows]] = 1.0
    x = np.hstack([onehot, feats])
    y = np.array([o.score for o in rows], dtype=float)
    n = y.size

    def fit(idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = (x, y) if idx is None else (x[idx], y[idx])
        present = xs[:, : len(models)].any(axis=0)
        keep = np.concatenate([present, np.ones(len(cols), dtype=bool)])
        beta = np.full(x.shape[1], math.nan)
        beta[keep] = _fit_logistic(xs[:, keep], ys, np.ones(ys.size))
        return 100.0 * sigmoid(beta[: len(models)]), beta[len(models) :]

    full_wr, full_coef = fit(None)
    rs = np.random.RandomState(seed)
    boot_idx = rs.randint(0, n, size=(num_rounds, n))
    boot_wr = np.empty((num_rounds, len(models)))
    boot_coef = np.empty((num_rounds, len(cols)))
    for r in range(num_rounds):
        boot_wr[r], boot_coef[r] = fit(boot_idx[r])
    scores = {baseline: _baseline_row(baseline)}
    for m, k in index.items():
        scores[m] = _median_score(m, boot_wr[:, k], float(full_wr[k]), int(onehot[:, k].sum()))
    names = [STYLE_FEATURES[c] for c in cols]
    coefs = {name: float(np.median(boot_coef[:, j])) for j, name in enumerate(names)}
    return ArenaHardResult(
        "v2.0",
        baseline,
        scores,
        os_.n_dropped,
        0.90,
        num_rounds,
        style_coefs=coefs,
        extra={"n_judgments": os_.n_judgments, "full_sample_style_coefs": dict(zip(names, map(float, full_coef)))},
    )


def arena_hard_v01_style_control(
    judgments: Iterable[GamePair | Mapping[str, Any]],
    metadata: Mapping[str, Mapping[str, Mapping[str, Any]]],
    baseline: str = "gpt-4-0314",
    *,
    features: Sequence[str] = ("length", "markdown"),
    weight: int = 3,
    num_rounds: int = 100,
    seed: int | None = 42,
    center: bool = True,
) -> ArenaHardResult:
    """Arena-Hard v0.1 style control (``construct_style_matrices`` + ``fit_bt``).

    Per battle (a = baseline, b = model): raw-count features ``(a − b)/(a + b + 1)`` for token length
    and header / list / bold counts, z-scored over battles (ddof 0). Design: ±ln 10 model columns
    (baseline included) plus the features; L2 logistic regression with C = 1 (penalty ½‖β‖² against
    the log-loss summed over upstream's duplicated rows, i.e. twice the per-battle soft-label loss).
    Ratings ``1000 + 400·β`` shifted so the baseline is 1000 (upstream anchors it at 1114; win rates
    are unaffected). 95% CI from ``num_rounds`` seeded bootstrap resamples of battles, as
    :func:`score_battles_v01`. Coefficients refer to baseline-minus-model features. ``center`` as in
    :func:`arena_hard_v2_style_control` (upstream centres).
    """
    cols = _feature_columns(features)
    bs = battles_v01(judgments, baseline, weight=weight)
    battles = list(bs.battles)
    if not battles:
        raise ValueError("no usable battles")
    raw = np.zeros((len(battles), 4))
    for i, b in enumerate(battles):
        va, vb = _style_vector(metadata, b.model_a, b.uid), _style_vector(metadata, b.model_b, b.uid)
        raw[i] = (va - vb) / (va + vb + 1.0)
    feats = _zscore(raw, ddof=0, center=center)[:, cols]
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    index = {m: k for k, m in enumerate(models)}
    x_models = np.zeros((len(battles), len(models)))
    for i, b in enumerate(battles):
        x_models[i, index[b.model_a]] += _LN10
        x_models[i, index[b.model_b]] -= _LN10
    x = np.hstack([x_models, feats])
    y = np.array([_WINNER_LABEL[b.winner] for b in battles])
    n = y.size

    def fit(idx: np.ndarray | None) -> tuple[dict[str, float], np.ndarray]:
        xs, ys = (x, y) if idx is None else (x[idx], y[idx])
        present = (xs[:, : len(models)] != 0).any(axis=0)
        keep = np.concatenate([present, np.ones(len(cols), dtype=bool)])
        beta = np.full(x.shape[1], math.nan)
        beta[keep] = _fit_logistic(xs[:, keep], ys, np.full(ys.size, 2.0), l2=1.0)
        elo = 400.0 * beta[: len(models)]
        elo = elo + 1000.0 - elo[index[baseline]]
        return {m: float(elo[k]) for m, k in index.items() if present[k]}, beta[len(models) :]

    ratings, coef = fit(None)
    others = [m for m in models if m != baseline]
    boot = np.full((num_rounds, len(others)), math.nan)
    rs = np.random.RandomState(seed)
    for r in range(num_rounds):
        idx = rs.choice(n, size=n, replace=True)
        fitted, _ = fit(idx)
        if baseline not in fitted:
            continue
        for k, m in enumerate(others):
            boot[r, k] = fitted.get(m, math.nan)
    scores = {baseline: _baseline_row(baseline, ratings[baseline])}
    for k, m in enumerate(others):
        n_rows = sum(1 for b in battles if m == b.model_b or m == b.model_a)
        scores[m] = _rating_score(m, ratings[m], ratings[baseline], boot[:, k], n_rows)
    names = [STYLE_FEATURES[c] for c in cols]
    return ArenaHardResult(
        "v0.1",
        baseline,
        scores,
        bs.n_dropped,
        0.95,
        num_rounds,
        style_coefs={name: float(c) for name, c in zip(names, coef)},
        extra={"n_games": bs.n_games},
    )


def _v2_style_differences(
    rows: Sequence[Any], metadata: Mapping[str, Mapping[str, Mapping[str, Any]]], baseline: str
) -> np.ndarray:
    """Per outcome row: the relative length difference and the markdown density differences."""
    raw = np.zeros((len(rows), 4))
    for i, o in enumerate(rows):
        m = _style_vector(metadata, o.model, o.uid)
        b = _style_vector(metadata, baseline, o.uid)
        raw[i, 0] = (m[0] - b[0]) / max(m[0] + b[0], 1.0)
        dm = m[1:] / (m[0] + 1.0)
        db = b[1:] / (b[0] + 1.0)
        raw[i, 1:] = (dm - db) / (dm + db + 1.0)
    return raw


def _median_score(model: str, boot: np.ndarray, point: float, n_rows: int) -> ArenaHardScore:
    """A v2.0 style-controlled row: bootstrap median with its 5th / 95th percentiles."""
    return ArenaHardScore(
        model=model,
        score=float(np.nanpercentile(boot, 50)),
        lower=float(np.nanpercentile(boot, 5)),
        upper=float(np.nanpercentile(boot, 95)),
        point_estimate=point,
        n_rows=n_rows,
    )


def _rating_score(model: str, rating: float, baseline_rating: float, boot: np.ndarray, n_rows: int) -> ArenaHardScore:
    """A v0.1 style-controlled row: win rate at the fitted rating, 95% CI from the bootstrap ratings."""
    lo_r = float(np.nanpercentile(boot, 2.5))
    hi_r = float(np.nanpercentile(boot, 97.5))
    score = bt_win_rate(rating, baseline_rating)
    return ArenaHardScore(
        model=model,
        score=score,
        lower=bt_win_rate(lo_r, baseline_rating),
        upper=bt_win_rate(hi_r, baseline_rating),
        point_estimate=score,
        rating=rating,
        rating_lower=lo_r,
        rating_upper=hi_r,
        n_rows=n_rows,
    )
