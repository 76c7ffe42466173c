"""fusekit's AlpacaEval 2 against alpaca_eval 0.6.6 itself: the same judge messages, position swaps
and preference reading, and the same win rates and LC numbers from the same annotations.

alpaca_eval is imported through ``tests/upstream_tools.py`` (one stand-in, for ``pkg_resources``). Its LC code
downloads ``df_gamed.csv`` from the Hub, so ``hf_hub_download`` is pointed at a generated file in
the published column layout (the tests run offline).
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from evals.judges import alpaca_eval as ae
from evals.records import Question
from evals.scoring import alpaca as scoring
from fusedata.judge import JudgeReply
from tests import upstream_tools

UPSTREAM = upstream_tools.alpaca_eval()
ae_utils, completion_parsers, processors = UPSTREAM.utils, UPSTREAM.completion_parsers, UPSTREAM.processors
glm_winrate = UPSTREAM.glm_winrate
pd = pytest.importorskip("pandas")

N = 150
GAMED_MODELS = ("gpt4_1106_preview_verbose", "gpt4_1106_preview_concise")
WIN_RATE_KEYS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """N instructions in canonical order, df_gamed.csv for them, and one model's annotations whose
    soft preferences follow length and difficulty, with draws, legacy zeros and NaN among them."""
    rng = np.random.default_rng(14)
    folder = tmp_path_factory.mktemp("lc")
    difficulty = rng.normal(0.0, 1.0, N)
    gamed = []
    for model, shift in zip(GAMED_MODELS, (0.8, -0.8)):
        delta = rng.normal(-shift, 1.0, N)
        pref = _sigmoid(-0.2 + 0.9 * np.tanh(-delta) + 0.6 * difficulty + rng.normal(0, 0.3, N))
        for i in range(N):
            gamed.append({"index": i, "model": model, "preference": "" if i == 11 else pref[i],
                          "std_delta_len": delta[i], "instruction_difficulty": difficulty[i],
                          "not_gamed_baseline": False})
    pd.DataFrame(gamed).to_csv(folder / "df_gamed.csv", index=False)
    len_1 = rng.integers(50, 1500, N)
    len_2 = rng.integers(20, 3000, N)
    z = 0.3 + 1.2 * np.tanh((len_2 - len_1) / 800) + 0.7 * difficulty
    pref = 1.0 + np.clip(_sigmoid(z) + rng.normal(0, 0.1, N), 0.0, 1.0)
    pref[[3, 40, 77]] = 1.5
    pref[[5, 90]] = 0.0
    pref[[8, 61, 130]] = np.nan
    annotations = [{"instruction": f"instruction {i}: {'x' * (i % 7)}", "output_1": "b" * int(len_1[i]),
                    "output_2": "m" * int(len_2[i]), "generator_1": "gpt4_1106_preview", "generator_2": "my-model",
                    "annotator": ae.ANNOTATOR, "preference": float(pref[i])} for i in range(N)]
    return folder, annotations


def _upstream(monkeypatch, folder, annotations, glm):
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda repo_id, filename, **kw: str(folder / filename))
    return glm_winrate.get_length_controlled_winrate([dict(a) for a in annotations], glm_name=glm,
                                                     save_weights_dir=None)


def _ours(folder, annotations, glm):
    with open(folder / "df_gamed.csv", newline="", encoding="utf-8") as fh:
        gamed = scoring.gamed_rows(csv.DictReader(fh))
    positions = {a["instruction"]: i for i, a in enumerate(annotations)}
    # keyed by instruction: the input order does not matter, the canonical positions do
    shuffled = list(reversed(annotations))
    return scoring.length_controlled_win_rate(shuffled, gamed, positions, glm=glm)


@pytest.mark.parametrize("glm", scoring.GLM_NAMES)
def test_lc_equals_alpaca_eval(monkeypatch, case, glm):
    folder, annotations = case
    want = _upstream(monkeypatch, folder, annotations, glm)
    got = _ours(folder, annotations, glm)
    for key in WIN_RATE_KEYS:
        assert getattr(got.win_rate, key) == pytest.approx(float(want[key]), abs=1e-6), key
    assert got.length_controlled_winrate == pytest.approx(want["length_controlled_winrate"], abs=1e-6)
    assert got.lc_standard_error == pytest.approx(want["lc_standard_error"], abs=1e-6)
    # a fit that moved: LC differs from the raw win rate, and the length weight is not zero
    assert abs(got.length_controlled_winrate - got.win_rate.win_rate) > 0.5
    assert got.weights["length"] != 0.0
    assert got.win_rate.n_dropped == 3


def test_lc_difficulty_follows_the_instruction_not_the_row(monkeypatch, case):
    """Upstream looks difficulties up by row position; fusekit by each instruction's canonical
    position, so dropping rows changes nothing for the instructions left."""
    folder, annotations = case
    with open(folder / "df_gamed.csv", newline="", encoding="utf-8") as fh:
        gamed = scoring.gamed_rows(csv.DictReader(fh))
    positions = {a["instruction"]: i for i, a in enumerate(annotations)}
    kept = annotations[10:]
    ours = scoring.length_controlled_win_rate(kept, gamed, positions, glm="length_controlled_noreg")
    shifted = scoring.length_controlled_win_rate(kept, gamed, {a["instruction"]: i for i, a in enumerate(kept)},
                                                 glm="length_controlled_noreg")
    assert ours.length_controlled_winrate != pytest.approx(shifted.length_controlled_winrate, abs=1e-3)
    # upstream on the same rows uses the shifted (positional) difficulties
    want = _upstream(monkeypatch, folder, kept, "length_controlled_noreg")
    assert shifted.length_controlled_winrate == pytest.approx(want["length_controlled_winrate"], abs=1e-6)
    with pytest.raises(ValueError, match="no canonical position"):
        scoring.length_controlled_win_rate(kept, gamed, {}, glm="length_controlled_noreg")


def test_swaps_and_messages_equal_alpaca_eval():
    prompt, source = ae.upstream_prompt(ae.ROLE)
    assert source.sha256 == ae.TEMPLATE_PIN and prompt.version == f"upstream-{ae.TEMPLATE_PIN[:12]}"
    config = ae.upstream_config()
    template = ae_utils.read_or_return(config.source.path.rsplit("/", 2)[0] + "/" + config.prompt_template)
    rows = [{"instruction": f"Question {i}: explain {'{braces}' if i % 5 == 0 else 'this'}.",
             "output_1": f"baseline answer {i}\n  with lines", "output_2": f"model answer {i} {{}} \"\"\""}
            for i in range(60)]
    df = pd.DataFrame(rows)
    switcher = processors.RandomSwitchTwoColumnsProcessor(two_columns_to_switch=["output_1", "output_2"],
                                                          random_seed_columns=["instruction"],
                                                          _switch_column="is_switched_outputs", seed=0)
    switched = switcher.preprocess(df)
    prompts, _ = ae_utils.make_prompts(switched, template)
    flips = []
    for row, upstream_prompt, flag in zip(rows, prompts, switched["is_switched_outputs"]):
        q = Question(bench="alpaca-eval", id="q", category="x", turns=[row["instruction"]],
                     baseline="gpt4_1106_preview", baseline_answer=row["output_1"])
        req, swapped = ae.request(q, row["output_2"], prompt)
        assert swapped == bool(flag)
        # what openai_completions sends for a chat model: the stripped prompt through prompt_to_chatml
        assert req.messages == ae_utils.prompt_to_chatml(upstream_prompt.strip())
        flips.append(swapped)
    assert 15 < sum(flips) < 45
    assert (req.max_tokens, req.temperature, req.top_logprobs) == (1, 1.0, 5)
    assert ae.upstream_judge_model() == "gpt-4-1106-preview" == ae.JUDGE_MODEL


TOP_LOGPROBS = [
    {"M": -0.0176, "m": -4.05, "Both": -14.9},
    {"m": -0.3, "Output": -1.0},
    {"M": -0.3, "x": -1.0},
    {" M": -0.2, "m": -2.0},
    {" m": -0.1, " M": -2.0},
    {"Model": -0.1, "mm": -0.2},
    {"m": -2000.0, "M": -2001.0},
    {"m": float("nan"), "M": -1.0},
    {},
]


@pytest.mark.parametrize("top", TOP_LOGPROBS)
@pytest.mark.parametrize("swapped", [False, True])
def test_preference_equals_logprob_parser(top, swapped):
    completion = {"logprobs": {"content": [{"top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()]}]}}
    want = completion_parsers.logprob_parser(completion, numerator_token="m", denominator_tokens=["m", "M"],
                                             is_binarize=False)[0]
    if swapped:
        want = 3 - want  # the pairwise annotator's postprocessing of a switched row
    got = ae.preference(JudgeReply(text="M", top_logprobs=top), swapped=swapped)
    assert (math.isnan(got) and math.isnan(want)) or got == want
