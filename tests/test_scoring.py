"""Hand-computed checks for evals.scoring (AlpacaEval 2, Arena-Hard, MT-Bench).

Expected numbers are worked out in the comments from the formulas in docs/evals.md and
written with ``math`` only, never by calling the code under test a second way.
"""

from __future__ import annotations

import math
import random

import pytest

from evals.scoring import alpaca as ae
from evals.scoring import arena_hard as ah
from evals.scoring import mt_bench as mt


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# ==================================================================================================
# AlpacaEval 2
# ==================================================================================================

PREFS = [
    {"instruction": "a", "preference": 2.0},  # model wins          -> p-1 = 1
    {"instruction": "b", "preference": 1.0},  # baseline wins       -> 0
    {"instruction": "c", "preference": 1.5},  # draw                -> 0.5
    {"instruction": "d", "preference": 1.75},  # soft model win     -> 0.75
    {"instruction": "e", "preference": None},  # no annotation      -> dropped
    {"instruction": "f", "preference": 0},  # legacy draw        -> 1.5 -> 0.5
]


def test_win_rate_and_standard_error_by_hand():
    out = ae.win_rate(PREFS)
    # y = [1, 0, 0.5, 0.75, 0.5]; mean = 2.75 / 5 = 0.55
    assert out.win_rate == pytest.approx(55.0)
    # deviations 0.45, -0.55, -0.05, 0.2, -0.05; squares sum 0.2025+0.3025+0.0025+0.04+0.0025 = 0.55
    # var(ddof 1) = 0.55 / 4 = 0.1375; sem = sqrt(0.1375 / 5) = 0.1658312
    assert out.standard_error == pytest.approx(100 * math.sqrt(0.1375 / 5))
    assert (out.n_wins, out.n_wins_base, out.n_draws) == (2, 1, 2)  # {1, .75} > .5; {0} < .5; c and f
    assert (out.n_total, out.n_dropped) == (5, 1)
    # discrete: rounded preferences 2, 1, 1.5, 2, 1.5 -> (1 + 0 + .5 + 1 + .5) / 5 = 0.6
    assert out.discrete_win_rate == pytest.approx(60.0)


def test_discrete_win_rate_counts_ties_as_half():
    prefs = {"q1": 1.5, "q2": 1.5, "q3": 1.2, "q4": 1.6, "q5": 2.0}
    # rounded: draw, draw, 1 (baseline), 2 (model), 2 (model) -> (0.5 + 0.5 + 0 + 1 + 1) / 5 = 0.6
    assert ae.discrete_win_rate(prefs) == pytest.approx(60.0)
    # the soft win rate is different: (0.5 + 0.5 + 0.2 + 0.6 + 1.0) / 5 = 0.56
    assert ae.win_rate(prefs).win_rate == pytest.approx(56.0)


def test_probability_scale_and_out_of_range_values():
    probs = {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.25, "e": 1.2}  # 1.2 is not a probability -> dropped
    out = ae.win_rate(probs, scale="probability")
    # (1 + 0 + 0.5 + 0.25) / 4 = 0.4375
    assert out.win_rate == pytest.approx(43.75)
    assert (out.n_total, out.n_dropped) == (4, 1)
    # on the preference scale 2.5 and 0.5 are outside [1, 2] and dropped
    assert ae.win_rate({"a": 2.5, "b": 0.5, "c": 2.0}).n_total == 1


def test_inputs_are_keyed_by_instruction_text():
    shuffled = list(reversed(PREFS))
    assert ae.win_rate(shuffled) == ae.win_rate(PREFS)
    as_mapping = {r["instruction"]: r["preference"] for r in PREFS}
    assert ae.win_rate(as_mapping) == ae.win_rate(PREFS)
    with pytest.raises(ValueError, match="duplicated instruction"):
        ae.win_rate(PREFS + [{"instruction": "a", "preference": 1.0}])
    with pytest.raises(ValueError, match="instruction"):
        ae.win_rate([{"preference": 2.0}])


def _difficulty_case():
    """20 equal-length pairs whose preference follows the GLM exactly: p - 1 = σ(0.5 + d), with
    df_gamed rows (verbose variants of varying length) carrying the same difficulties."""
    d = [-2.0 + 4.0 * i / 19 for i in range(20)]
    ann = [
        {
            "instruction": f"question {i}",
            "output_1": "x" * 50,
            "output_2": "y" * 50,
            "preference": 1 + sigmoid(0.5 + d[i]),
        }
        for i in range(20)
    ]
    # df_gamed's published layout: preference already on [0, 1], std_delta_len precomputed
    gamed = ae.gamed_rows(
        {
            "index": str(i),
            "model": "gpt4_1106_preview_verbose",
            "preference": str(sigmoid(-0.5 + 0.8 * d[i] + 0.3 * i / 20)),
            "std_delta_len": str((30 - 7 * i) / 40),
            "instruction_difficulty": str(d[i]),
            "not_gamed_baseline": "False",
        }
        for i in range(20)
    )
    positions = {f"question {i}": i for i in range(20)}
    return ann, gamed, positions


@pytest.mark.parametrize("glm", ["length_controlled_v1", "length_controlled_noreg"])
def test_lc_equals_raw_win_rate_when_lengths_are_equal(glm):
    ann, gamed, positions = _difficulty_case()
    out = ae.length_controlled_win_rate(ann, gamed, positions, glm=glm)
    raw = 100 * sum(r["preference"] - 1 for r in ann) / len(ann)
    assert out.win_rate.win_rate == pytest.approx(raw)
    # With Δ = 0 on every model row the prediction point equals the training point, and the score
    # equation of the not_gamed coefficient (a column of ones on the model rows only) forces
    # mean σ(θ + ψ d_i) = mean y_i at the optimum, up to the L1 penalty and liblinear's tolerance.
    assert out.length_controlled_winrate == pytest.approx(raw, abs=0.01)
    if glm.endswith("noreg"):
        assert out.weights["length"] == 0.0  # tanh(0) column: L1 keeps its coefficient at exactly 0
    assert out.weights["instruction_difficulty"] == pytest.approx(1.0, abs=0.01)  # the generating ψ
    assert not out.is_extreme_change


def test_lc_moves_down_when_the_model_wins_by_being_longer():
    # 30 instructions: model answer 300 chars vs baseline 100, judge gives 0.8 to the model;
    # 10 instructions: model 20 chars vs 100, judge gives 0.4.   Raw win rate = (30·.8 + 10·.4)/40 = 0.70
    ann = [
        {
            "instruction": f"q{i:02d}",
            "output_1": "b" * 100,
            "output_2": "m" * (300 if i < 30 else 20),
            "preference": 1.8 if i < 30 else 1.4,
        }
        for i in range(40)
    ]
    gamed = ae.gamed_rows({"index": i, "preference": 0.5, "std_delta_len": 0.0, "instruction_difficulty": 0.0,
                           "not_gamed_baseline": False} for i in range(40))
    positions = {f"q{i:02d}": i for i in range(40)}
    out = ae.length_controlled_win_rate(ann, gamed, positions, glm="length_controlled_noreg")
    assert out.win_rate.win_rate == pytest.approx(70.0)
    # Δ = len(baseline) - len(model): -200 (×30) and +80 (×10); mean -130;
    # var(ddof 1) = (30·70² + 10·210²) / 39 = 588000 / 39, sd = 122.788
    sd = math.sqrt((30 * 70**2 + 10 * 210**2) / 39)
    t_long, t_short = math.tanh(-200 / sd), math.tanh(80 / sd)  # -0.9258, 0.5718
    # two feature patterns, two free coefficients (ψ·d = 0): the fit is exact,
    #   θ + φ·t_long = logit(0.8),  θ + φ·t_short = logit(0.4)
    phi = (logit(0.8) - logit(0.4)) / (t_long - t_short)  # -1.1956
    theta = logit(0.4) - phi * t_short  # 0.2793
    expected = 100 * sigmoid(theta)  # 56.94
    assert out.weights["length"] == pytest.approx(phi, abs=0.01)
    assert out.length_controlled_winrate == pytest.approx(expected, abs=0.1)
    assert out.length_controlled_winrate < out.win_rate.win_rate
    # the minimal GLM (no difficulty, no df_gamed) has the same two columns here
    minimal = ae.length_controlled_win_rate(ann, glm="length_controlled_minimal")
    assert minimal.length_controlled_winrate == pytest.approx(expected, abs=0.1)


def test_lc_is_independent_of_row_order():
    ann, gamed, positions = _difficulty_case()
    a = ae.length_controlled_win_rate(ann, gamed, positions)
    b = ae.length_controlled_win_rate(list(reversed(ann)), gamed, dict(reversed(list(positions.items()))))
    assert a.length_controlled_winrate == b.length_controlled_winrate


def test_lc_missing_or_shared_position_names_the_instruction():
    ann, gamed, positions = _difficulty_case()
    del positions["question 7"]
    with pytest.raises(ValueError, match="question 7"):
        ae.length_controlled_win_rate(ann, gamed, positions)
    # the "maybe" variant does not swallow a misaligned position table either
    with pytest.raises(ValueError, match="question 7"):
        ae.maybe_length_controlled_win_rate(ann, gamed, positions)
    positions["question 7"] = 3
    with pytest.raises(ValueError, match="share position 3"):
        ae.length_controlled_win_rate(ann, gamed, positions)
    positions["question 7"] = 99  # a position df_gamed does not have
    with pytest.raises(ValueError, match="no difficulty for position 99"):
        ae.length_controlled_win_rate(ann, gamed, positions)


def test_gamed_rows_read_the_published_layout():
    ann, gamed, _ = _difficulty_case()
    assert gamed.difficulty_by_position()[19] == pytest.approx(2.0)
    row = {"index": "0", "preference": "", "std_delta_len": "1.5", "instruction_difficulty": "0.2",
           "not_gamed_baseline": "False"}
    read = ae.gamed_rows([row, {**row, "index": "1", "preference": "0.25", "not_gamed_baseline": "TRUE"}])
    assert math.isnan(read.preference[0]) and read.preference[1] == 0.25  # [0, 1] scale, kept as is
    assert read.not_gamed_baseline.tolist() == [False, True]
    with pytest.raises(ValueError, match="no column std_delta_len"):
        ae.gamed_rows([{k: v for k, v in row.items() if k != "std_delta_len"}])
    with pytest.raises(ValueError, match="True or False"):
        ae.gamed_rows([{**row, "not_gamed_baseline": "1"}])
    # upstream looks difficulty up by row number: a file whose first row of index 1 is not row 1 is refused
    swapped = ae.gamed_rows([{**row, "index": "1"}, {**row, "index": "0"}])
    with pytest.raises(ValueError, match="first row of index 1 is row 0"):
        swapped.difficulty_by_position()


def test_lc_not_computed_without_df_gamed():
    ann, gamed, positions = _difficulty_case()
    out = ae.maybe_length_controlled_win_rate(ann, None, positions)
    assert out.length_controlled_winrate is None and out.lc_standard_error is None
    assert not out.computed
    assert "df_gamed" in out.reason
    assert out.win_rate.win_rate == pytest.approx(100 * sum(r["preference"] - 1 for r in ann) / 20)
    # no canonical positions: v1 and noreg cannot look difficulties up, minimal needs neither
    assert "canonical positions" in ae.maybe_length_controlled_win_rate(ann, gamed, None).reason
    assert ae.maybe_length_controlled_win_rate(ann, None, None, glm="length_controlled_minimal").computed


def test_lc_baseline_against_itself_is_fifty():
    ann = [{"instruction": f"q{i}", "output_1": "s", "output_2": "s", "preference": 1.5} for i in range(4)]
    assert ae.length_controlled_win_rate(ann, is_baseline=True).length_controlled_winrate == 50.0


def test_cross_baseline_prediction_and_extreme_change_rule():
    m = {"not_gamed_baseline": 1.0, "instruction_difficulty": 0.5}
    b = {"not_gamed_baseline": 0.2, "instruction_difficulty": 0.1}
    # Δθ = 0.8, Δψ = 0.4; d = 0 -> σ(0.8) = 0.689974; d = 2 -> σ(1.6) = 0.832018; mean = 0.760996
    got = ae.predict_cross_baseline_win_rate(m, b, {"x": 0.0, "y": 2.0})
    assert got == pytest.approx(100 * (sigmoid(0.8) + sigmoid(1.6)) / 2)
    # wr 50: too small below min(50 - 12.5, 40) = 37.5, too large above max(50 + 12.5, 60) = 62.5
    assert ae.is_extreme_change(50, 37.4) and ae.is_extreme_change(50, 62.6)
    assert not ae.is_extreme_change(50, 38.0) and not ae.is_extreme_change(50, 62.0)


# ==================================================================================================
# Arena-Hard
# ==================================================================================================


def test_verdict_normalisation():
    assert ah.normalize_verdict("[[a>b]]") == "A>B"
    assert ah.normalize_verdict(" [[B>>A]] ") == "B>>A"
    assert ah.normalize_verdict("B<A") == "A>B"  # reversed form
    assert ah.normalize_verdict("A<<B") == "B>>A"
    assert ah.normalize_verdict({"score": "A=B"}) == "A=B"
    assert ah.normalize_verdict("A>>>B") is None
    assert ah.normalize_verdict(None) is None


JUDGMENTS = [
    # game 1: A = baseline, game 2: A = model
    {"uid": "q1", "model": "m", "games": ["A>>B", "A>>B"]},  # baseline strongly wins g1; model strongly wins g2
    {"uid": "q2", "model": "m", "games": ["A=B", {"score": "B>A"}]},  # tie; baseline wins g2
    {"uid": "q3", "model": "m", "games": ["B>>A", None]},  # model strongly wins g1; g2 failed
    {"uid": "q4", "model": "m", "games": ["[[B>A]]", "no verdict"]},  # model wins g1; g2 unparseable
]


def test_v01_strong_verdicts_count_three_times():
    bs = ah.battles_v01(JUDGMENTS, "base")
    winners = [b.winner for b in bs.battles]
    # q1: 3 × model_a (g1 A>>B) + 3 × model_b (g2 A>>B); q2: 1 tie + 1 model_a;
    # q3: 3 × model_b, g2 dropped; q4: 1 × model_b, g2 dropped
    assert winners == ["model_a"] * 3 + ["model_b"] * 3 + ["tie", "model_a"] + ["model_b"] * 3 + ["model_b"]
    assert (bs.n_games, bs.n_dropped) == (8, 2)
    assert all(b.model_a == "base" and b.model_b == "m" for b in bs.battles)
    # weight 1: one row per usable game -> 6 rows
    assert len(ah.battles_v01(JUDGMENTS, "base", weight=1).battles) == 6


def test_v2_outcomes_drop_whole_judgment():
    os_ = ah.outcomes_v2(JUDGMENTS)
    # q1: g2 A>>B -> [1, 1, 1], g1 A>>B -> 1 - [1, 1, 1] = [0, 0, 0]
    # q2: g2 B>A -> [0], g1 A=B -> [0.5];   q3, q4 dropped (one game unusable)
    assert [o.score for o in os_.outcomes] == [1, 1, 1, 0, 0, 0, 0, 0.5]
    assert (os_.n_judgments, os_.n_dropped) == (4, 2)
    res = ah.arena_hard_v2(JUDGMENTS, "base")
    assert res.n_dropped == 2
    assert res.scores["m"].point_estimate == pytest.approx(100 * 3.5 / 8)  # 43.75


def _three_one():
    # q1: g1 B>A (model wins), g2 A>B (model wins); q2: g1 B>A (model wins), g2 B>A (baseline wins)
    return [
        {"uid": "q1", "model": "m", "games": ["B>A", "A>B"]},
        {"uid": "q2", "model": "m", "games": ["B>A", "B>A"]},
    ]


def test_bt_recovers_three_wins_one_loss():
    res = ah.arena_hard_v01(_three_one(), "base")
    # P(model beats baseline) = 3/4 -> score 75; rating = 1000 + 400·log10(3) = 1190.85
    assert res.scores["m"].score == pytest.approx(75.0, abs=1e-4)
    assert res.scores["m"].rating == pytest.approx(1000 + 400 * math.log10(3), abs=1e-3)
    assert res.scores["base"].score == 50.0 and res.scores["base"].rating == 1000.0
    assert res.n_dropped == 0


def test_bt_strong_win_and_ties():
    # one strong model win in game 2 (3 rows) + one baseline win in game 1 (1 row): 3 of 4 -> 75
    res = ah.arena_hard_v01([{"uid": "q", "model": "m", "games": ["A>B", "A>>B"]}], "base")
    assert res.scores["m"].score == pytest.approx(75.0, abs=1e-4)
    # 2 wins, 1 tie, 1 loss: (2 + 0.5) / 4 = 62.5
    judg = [{"uid": "q1", "model": "m", "games": ["B>A", "A>B"]}, {"uid": "q2", "model": "m", "games": ["A=B", "B>A"]}]
    assert ah.arena_hard_v01(judg, "base").scores["m"].score == pytest.approx(62.5, abs=1e-4)


def _random_judgments(n: int, model: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    labels = ["A>>B", "A>B", "A=B", "B>A", "B>>A", None]
    return [{"uid": f"q{i}", "model": model, "games": [rng.choice(labels), rng.choice(labels)]} for i in range(n)]


def test_bt_equals_weighted_mean_score_when_only_the_baseline_is_played():
    judg = _random_judgments(40, "m", 1) + _random_judgments(40, "n", 2)
    bs = ah.battles_v01(judg, "base")
    res = ah.arena_hard_v01(judg, "base", num_rounds=20)
    for model in ("m", "n"):
        rows = [b for b in bs.battles if b.model_b == model]
        mean = sum({"model_b": 1.0, "tie": 0.5, "model_a": 0.0}[b.winner] for b in rows) / len(rows)
        assert res.scores[model].score == pytest.approx(100 * mean, abs=1e-4)


def test_v01_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    judg = _random_judgments(30, "m", 3)
    a = ah.arena_hard_v01(judg, "base", num_rounds=50)
    b = ah.arena_hard_v01(judg, "base", num_rounds=50)
    s = a.scores["m"]
    assert s.lower <= s.score <= s.upper and s.lower < s.upper
    assert (s.lower, s.upper) == (b.scores["m"].lower, b.scores["m"].upper)
    assert a.ci_level == 0.95
    c = ah.arena_hard_v01(judg, "base", num_rounds=50, seed=7)
    assert (c.scores["m"].lower, c.scores["m"].upper) != (s.lower, s.upper)


def test_v2_bootstrap_is_seeded_and_baseline_pinned():
    judg = _random_judgments(30, "m", 4)
    a = ah.arena_hard_v2(judg, "base")
    b = ah.arena_hard_v2(judg, "base")
    s = a.scores["m"]
    assert a.scores == b.scores
    assert s.lower <= s.point_estimate <= s.upper
    assert a.scores["base"].score == 50.0 and a.ci_level == 0.90
    assert s.score == pytest.approx(s.point_estimate, abs=3.0)  # mean of bootstrap means ≈ sample mean


def _length_judgments():
    """15 questions where the model is longer and wins 80% of outcome rows, 5 where it is shorter
    and wins 40%: 12 win-win + 3 loss-loss, then 2 win-win + 3 loss-loss. Raw = 28/40 = 70%."""
    judg, meta_m, meta_b = [], {}, {}
    win, loss = ["B>A", "A>B"], ["A>B", "B>A"]
    for i in range(20):
        uid = f"q{i}"
        long = i < 15
        wins = (i < 12) if long else (i < 17)
        judg.append({"uid": uid, "model": "m", "games": win if wins else loss})
        zero = {"header_count": 0, "list_count": 0, "bold_count": 0}
        meta_m[uid] = {"token_len": 200 if long else 50, **zero}
        meta_b[uid] = {"token_len": 100, **zero}
    return judg, {"m": meta_m, "base": meta_b}


def test_v2_style_control_by_hand():
    judg, meta = _length_judgments()
    assert ah.arena_hard_v2(judg, "base").scores["m"].point_estimate == pytest.approx(70.0)
    # length feature (L_m - L_b)/(L_m + L_b): long 100/300 = 1/3, short -50/150 = -1/3.
    # Two feature values, two coefficients: the fit is exact, c + φ·z_long = logit(.8), c + φ·z_short = logit(.4).
    # Not centred: z ∝ f, so at f = 0: c = (logit(.8) + logit(.4)) / 2 = 0.4904 -> 62.02%
    raw_zero = ah.arena_hard_v2_style_control(judg, meta, "base", features=["length"], center=False, num_rounds=30)
    assert raw_zero.scores["m"].point_estimate == pytest.approx(100 * sigmoid((logit(0.8) + logit(0.4)) / 2), abs=0.01)
    assert raw_zero.style_coefs["length"] > 0  # longer answers win
    # Centred (upstream): z = 0 at the mean f = (15/3 - 5/3)/20 = 1/6, a quarter of the way from f_long
    # to f_short: c = logit(.8) - (logit(.8) - logit(.4))/4 = 0.9383 -> 71.88%
    centred = ah.arena_hard_v2_style_control(judg, meta, "base", features=["length"], num_rounds=30)
    c = logit(0.8) - (logit(0.8) - logit(0.4)) / 4
    assert centred.scores["m"].point_estimate == pytest.approx(100 * sigmoid(c), abs=0.01)
    s = centred.scores["m"]
    assert s.lower <= s.score <= s.upper
    again = ah.arena_hard_v2_style_control(judg, meta, "base", features=["length"], num_rounds=30)
    assert again.scores == centred.scores
    del meta["base"]["q3"]
    with pytest.raises(ValueError, match="q3"):
        ah.arena_hard_v2_style_control(judg, meta, "base")


def test_v01_style_control_direction():
    judg, meta = _length_judgments()
    res = ah.arena_hard_v01_style_control(judg, meta, "base", features=["length"], center=False, num_rounds=30)
    # feature (a - b)/(a + b + 1) with a = baseline: negative when the model is longer; the baseline wins
    # less often then, so the coefficient on P(baseline wins) is positive and the score drops below 70.
    assert res.style_coefs["length"] > 0
    assert 50.0 < res.scores["m"].score < 70.0
    assert res.scores["base"].score == 50.0


# ==================================================================================================
# MT-Bench
# ==================================================================================================

SINGLE = [
    {"question_id": 81, "turn": 1, "score": 8},  # writing
    {"question_id": 81, "turn": 2, "score": 6},
    {"question_id": 82, "turn": 1, "score": 7},
    {"question_id": 82, "turn": 2, "score": -1},  # failed
    {"question_id": 83, "turn": 1, "score": 9},
    {"question_id": 111, "turn": 1, "score": 4},  # math
    {"question_id": 111, "turn": 2, "score": 5},
    {"question_id": 112, "turn": 1, "score": None},  # failed
    {"question_id": 112, "turn": 2, "score": 3},
    {"question_id": 81, "turn": 1, "score": 1, "model": "other"},  # filtered out by model=
]


def test_mt_bench_single_means_skip_failed_ratings():
    out = mt.mt_bench_single([r if "model" in r else {**r, "model": "m"} for r in SINGLE], model="m")
    # turn 1 valid: 8, 7, 9, 4 -> 28/4 = 7.0;   turn 2 valid: 6, 5, 3 -> 14/3 = 4.667
    assert out.turn_means[1] == pytest.approx(7.0)
    assert out.turn_means[2] == pytest.approx(14 / 3)
    # overall = mean of all 7 valid scores = 42/7 = 6.0 (not the mean of turn means, 5.833)
    assert out.overall == pytest.approx(6.0)
    # writing: 8, 6, 7, 9 -> 7.5;   math: 4, 5, 3 -> 4.0
    assert out.category_means == pytest.approx({"writing": 7.5, "math": 4.0})
    assert (out.n_valid, out.n_failed) == (7, 2)
    assert out.n_failed_by_turn == {1: 1, 2: 1}


def test_mt_bench_single_keeps_out_of_range_ratings_as_fastchat():
    rows = [{"question_id": 81, "turn": 1, "score": 0}, {"question_id": 82, "turn": 1, "score": 11},
            {"question_id": 83, "turn": 1, "score": -1.0}, {"question_id": 84, "turn": 1, "score": float("nan")},
            {"question_id": 85, "turn": 1, "score": "n/a"}]
    out = mt.mt_bench_single(rows)
    # only -1, NaN and the non-number fail; (0 + 11) / 2 = 5.5
    assert (out.overall, out.n_valid, out.n_failed) == (5.5, 2, 3)


def test_mt_bench_single_rejects_duplicates():
    with pytest.raises(ValueError, match="more than once"):
        mt.mt_bench_single(SINGLE[:3] + [SINGLE[0]])


def test_mt_bench_pairwise_consistency_rule():
    rows = [
        {"model_1": "m", "model_2": "base", "g1_winner": "model_1", "g2_winner": "model_1"},  # win
        {"model_1": "m", "model_2": "base", "g1_winner": "model_2", "g2_winner": "model_2"},  # loss
        {"model_1": "m", "model_2": "base", "g1_winner": "model_1", "g2_winner": "model_2"},  # inconsistent -> tie
        {"model_1": "m", "model_2": "base", "g1_winner": "tie", "g2_winner": "tie"},  # tie
        {"model_1": "m", "model_2": "base", "g1_winner": "tie", "g2_winner": "model_1"},  # g1 tie -> tie
        {"model_1": "m", "model_2": "base", "g1_winner": "error", "g2_winner": "model_1"},  # dropped
        {"model_1": "base", "model_2": "m", "g1_winner": "model_2", "g2_winner": "model_2"},  # win
        {"model_1": "x", "model_2": "m", "g1_winner": "model_2", "g2_winner": "model_2"},  # not vs base
    ]
    out = mt.mt_bench_pairwise(rows, "m", baseline="base")
    assert (out.win, out.loss, out.tie, out.n_inconsistent, out.n_error) == (2, 1, 3, 2, 1)
    # n = 6: win 2/6, loss 1/6, adjusted (2 + 0.5·3)/6 = 0.5833
    assert out.win_rate == pytest.approx(2 / 6)
    assert out.loss_rate == pytest.approx(1 / 6)
    assert out.win_rate_adjusted == pytest.approx(3.5 / 6)
    assert mt.mt_bench_pairwise(rows, "m").win == 3  # all opponents


def test_pair_game_winner_maps_swapped_positions():
    assert mt.pair_game_winner("[[A]]", swapped=False) == "model_1"
    assert mt.pair_game_winner("[[A]]", swapped=True) == "model_2"
    assert mt.pair_game_winner("B", swapped=True) == "model_1"
    assert mt.pair_game_winner("[[C]]", swapped=False) == "tie"
    assert mt.pair_game_winner("D", swapped=False) == "error"
    assert mt.pair_game_winner(None, swapped=False) == "error"
