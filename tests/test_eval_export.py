"""``evals export``: run stores built through the store's own API, exported, and read back with the
upstream tools' own readers (alpaca_eval, FastChat) or, for Arena-Hard (not installable), a reader
written here after its ``show_result.py`` loaders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from evals.benches import load_questions
from evals.benches.arena_hard import style_metadata
from evals.export import ERROR_OUTPUT, UPSTREAM_ANNOTATOR, annotator_name, export_files, export_run
from evals.judges.alpaca_eval import is_swapped
from evals.records import Answer, Judgment, Question
from evals.score import ScoreOptions, score_bench
from evals.scoring.arena_hard import GamePair, arena_hard_v2
from evals.store import EvalStore
from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply, JudgeRequest
from tests import upstream_tools


# -- building a run store --------------------------------------------------------------------------
class RunBuilder:
    """One bench of a run store, filled the way `evals run` fills it."""

    def __init__(self, folder: Path, bench: str, judge: str, questions: list[Question], run_meta: dict):
        self.store = EvalStore(folder)
        self.bench, self.judge = bench, judge
        self.store.put_questions(questions)
        self.store.set_meta(f"{bench}:run", run_meta)
        self.store.set_meta(f"{bench}:judge", {"model": judge})
        self.judgments: list[Judgment] = []

    def answers(self, model: str, texts: dict[tuple[str, int], str | None], tokens: int = 7) -> None:
        self.store.set_model(self.bench, model, f"h-{model}", {"model": model})
        self.store.put_answers(Answer(self.bench, q, model, f"h-{model}", t, text, None if text else "HTTP 500",
                                      tokens) for (q, t), text in texts.items())

    def judged(self, model: str, q: Question, reply: JudgeReply | None, *, turn: int = 1, game: int = 0,
               mode: str = "single", baseline: str | None = None, swapped: bool = False,
               prompt: str = "p", version: str = "fusekit-1") -> None:
        """One judgment; ``reply`` None leaves its call never made."""
        req = JudgeRequest(messages=[{"role": "system", "content": "judge"},
                                     {"role": "user", "content": f"{q.id}/{turn}/{game}/{model}"}],
                           prompt=prompt, prompt_version=version, max_tokens=64)
        if reply is not None:
            self.store.put_calls(self.judge, [(req, reply)])
        self.judgments.append(Judgment(self.bench, self.judge, model, q.id, turn, game, mode, req.key(self.judge),
                                       baseline, swapped))

    def close(self) -> None:
        self.store.put_judgments(self.judgments)
        self.store.close()


def ok(text: str, logprobs: dict[str, float] | None = None) -> JudgeReply:
    return JudgeReply(text, logprobs, prompt_tokens=120, completion_tokens=1, seconds=0.25)


FAILED = JudgeReply(None, error="HTTP 503 after 4 retries")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- AlpacaEval --------------------------------------------------------------------------------------
def _alpaca_eval_modules():
    up = upstream_tools.alpaca_eval()
    return (up.utils, up.completion_parsers, up.metrics.get_winrate, up.metrics.get_length_controlled_winrate,
            up.glm_winrate)


@pytest.fixture(scope="module")
def alpaca_reference() -> list[Question]:
    return load_questions("alpaca-eval", source="package")[0]


def _alpaca_run(folder: Path, reference: list[Question], judge: str, version: str) -> list[Question]:
    picked = reference[3::13][:60]  # rows 3, 16, 29…: positions that are not 0..n-1
    run = RunBuilder(folder, "alpaca-eval", judge, picked, {"mode": "single"})
    texts = {(q.id, 1): ("x" * (40 + 37 * i) if i != 5 else q.baseline_answer) for i, q in enumerate(picked)}
    texts[(picked[7].id, 1)] = None  # the model's answer failed: nothing to judge
    run.answers("m1", texts)
    for i, q in enumerate(picked):
        if i == 7:
            continue
        if i == 5:
            run.judged("m1", q, None, mode="identical", baseline=q.baseline)
            continue
        # The first token's log-probs, in exact spellings (alpaca_eval's own parser matches tokens exactly):
        # the model's letter is mostly the likelier one, so that the LC fit has a signal to find.
        swapped = is_swapped(q.turns[0])
        mine, theirs = ("m", "M") if swapped else ("M", "m")
        lp = {mine: -0.05 * (i % 4) - (2.5 if i % 5 == 0 else 0.0), theirs: -1.5 - 0.2 * (i % 6), "The": -7.5}
        reply = {9: FAILED, 11: ok("The", {"The": -0.1, "A": -2.0})}.get(i, ok(max(lp, key=lp.get), lp))
        run.judged("m1", q, None if i == 13 else reply, mode="weighted", baseline=q.baseline,
                   swapped=swapped, prompt="alpaca-eval-weighted", version=version)
    run.close()
    return picked


def _lc_inputs(folder: Path, reference: list[Question]) -> Path:
    """Stand-ins for the two Hub CSVs (offline): a difficulty per instruction, and gamed-baseline rows
    whose preferences are empty, so both fits use the model's rows alone and see the same difficulties."""
    folder.mkdir()
    diff = [round(math.sin(i) * 1.5, 6) for i in range(len(reference))]
    pd.DataFrame({"instruction": [q.turns[0] for q in reference], "instruction_difficulty": diff}
                 ).to_csv(folder / "instruction_difficulty.csv", index=False)
    rows = [{"index": i, "instruction": q.turns[0], "instruction_difficulty": diff[i], "std_delta_len": 0.0,
             "preference": None, "not_gamed_baseline": False, "model": model}
            for model in ("gpt4_gamed_verbose", "gpt4_gamed_concise") for i, q in enumerate(reference)]
    pd.DataFrame(rows).to_csv(folder / "df_gamed.csv", index=False)
    return folder


def test_alpaca_eval_export_reproduces_fusekit_win_rates_with_alpaca_eval(tmp_path, alpaca_reference, monkeypatch):
    picked = _alpaca_run(tmp_path / "run", alpaca_reference, "gpt-4-1106-preview", "upstream-0123456789ab")
    lc_dir = _lc_inputs(tmp_path / "lc", alpaca_reference)
    with EvalStore(tmp_path / "run") as store:
        report = score_bench(store, "alpaca-eval", ScoreOptions(lc_inputs=str(lc_dir)))
    ours = report.models[0].columns
    files = export_files(tmp_path / "run", tmp_path / "out")
    utils, parsers, get_winrate, get_lc, glm = _alpaca_eval_modules()

    base = tmp_path / "out" / "alpaca_eval" / "m1"
    outputs = utils.load_or_convert_to_dataframe(base / "model_outputs.json")
    assert len(outputs) == 59 and set(outputs["datasplit"]) == {"eval"}
    assert utils.get_generator_name(None, outputs) == "m1"
    ann = utils.load_or_convert_to_dataframe(base / UPSTREAM_ANNOTATOR / "annotations.json")
    # 58 judged items (one never sent is left out); the failed call and the reply without m/M are null
    assert len(ann) == 58 and int(ann["preference"].isna().sum()) == 2
    positions = {q.turns[0]: i for i, q in enumerate(alpaca_reference)}
    assert list(ann["index"]) == sorted(positions[i] for i in ann["instruction"]) and ann["index"].iloc[0] == 3

    upstream = get_winrate(ann)
    for col in ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate"):
        assert upstream[col] == pytest.approx(ours[col], rel=1e-9), col

    # upstream's LC reads df_gamed.csv from the Hub: hand it the same stand-in file fusekit read
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kw: str(lc_dir / kw["filename"]))
    # The exported annotations re-score to fusekit's LC exactly: a reply without m/M stays (NaN, as upstream
    # keeps it), the failed call is left out (upstream never stores a failed annotation).
    failed = ann["raw_completion"].isna() & ann["preference"].isna()
    lc = get_lc(ann[~failed].reset_index(drop=True), save_weights_dir=None)
    for col in ("length_controlled_winrate", "lc_standard_error"):
        assert lc[col] == pytest.approx(ours[col], abs=1e-6), col
    assert abs(lc["length_controlled_winrate"] - 50.0) > 10

    judged = ann[ann["raw_completion"].notna()]
    judged = judged[judged["preference"].notna()]
    for _, row in judged.iterrows():  # alpaca_eval's parser reads the stored completion back
        parsed = parsers.logprob_parser(row["raw_completion"], "m", ["m", "M"], is_binarize=False)[0]
        assert (3 - parsed if row["is_switched_outputs"] else parsed) == pytest.approx(row["preference"])
    summary = {(f.kind, f.model): f for f in files}
    a = summary[("annotations", "m1")]
    assert (a.rows, a.failed, a.unparsed, a.left_out) == (58, 1, 1, 1)
    assert summary[("answers", "m1")].failed == 1 and picked[7].turns[0] not in set(outputs["instruction"])


def test_alpaca_eval_annotator_folder_names_the_judge_truthfully(tmp_path, alpaca_reference):
    _alpaca_run(tmp_path / "run", alpaca_reference, "embedded:smollm2-135m", "fusekit-1")
    paths = export_run(tmp_path / "run", tmp_path / "out")
    folder = "weighted_alpaca_eval_embedded_smollm2-135m_prompt-fusekit-1"
    assert tmp_path / "out" / "alpaca_eval" / "m1" / folder / "annotations.json" in paths
    ann = json.loads((tmp_path / "out" / "alpaca_eval" / "m1" / folder / "annotations.json").read_text())
    assert {r["annotator"] for r in ann} == {folder}
    assert annotator_name("gpt-4-1106-preview", {"alpaca-eval-weighted@fusekit-1"}) != UPSTREAM_ANNOTATOR
    assert annotator_name("gpt-4o", {"alpaca-eval-weighted"}) == "weighted_alpaca_eval_gpt-4o"
    assert annotator_name("gpt-4-1106-preview", {"alpaca-eval-weighted"}) == UPSTREAM_ANNOTATOR
    assert annotator_name("gpt-4-1106-preview", {"alpaca-eval-weighted"}, lenient=True).endswith("_lenient")


# -- Arena-Hard --------------------------------------------------------------------------------------
LABEL_TO_SCORE = {"A>B": [1], "A>>B": [1] * 3, "A=B": [0.5], "A<<B": [0] * 3, "A<B": [0], "B>A": [0],
                  "B>>A": [0] * 3, "B=A": [0.5], "B<<A": [1] * 3, "B<A": [1]}


def read_v2_battles(root: Path, judge: str) -> pd.DataFrame:
    """show_result.py (v2.0) ``load_judgments``: drop judgments with a null game or score, then game 2's
    outcomes followed by one minus game 1's, exploded."""
    data = pd.concat([pd.read_json(f, lines=True) for f in sorted((root / "model_judgment" / judge).glob("*.jsonl"))])
    data = data.reset_index(drop=True)
    null = data.games.map(lambda g: g[0] is None or g[1] is None or g[0]["score"] is None or g[1]["score"] is None)
    kept = data[~null].reset_index(drop=True)
    kept["scores"] = kept.games.map(lambda g: LABEL_TO_SCORE[g[1]["score"]] +
                                    [1 - s for s in LABEL_TO_SCORE[g[0]["score"]]])
    return kept[["uid", "model", "category", "scores", "games"]].explode("scores").reset_index(drop=True)


def read_v01_battles(root: Path, judge: str, baseline: str) -> list[dict]:
    """show_result.py (0489bf3) ``get_battles_from_row``: game 1 has the baseline as A, game 2 as B;
    strong verdicts count three times, anything else is dropped."""
    winners = {1: {"A>B": "model_a", "A>>B": "model_a", "B>A": "model_b", "B>>A": "model_b", "A=B": "tie"},
               2: {"A>B": "model_b", "A>>B": "model_b", "B>A": "model_a", "B>>A": "model_a", "A=B": "tie"}}
    battles = []
    for f in sorted((root / "model_judgment" / judge).glob("*.jsonl")):
        for row in read_jsonl(f):
            for n, game in enumerate(row["games"], start=1):
                winner = winners[n].get(game["score"])
                if winner:
                    weight = 3 if ">>" in game["score"] else 1
                    battles += [{"question_id": row["question_id"], "model_a": baseline, "model_b": row["model"],
                                 "winner": winner}] * weight
    return battles


ARENA_REPLIES = ["Verdict: [[B>A]]", "My final verdict is [[A>>B]].", "[[A=B]]", "I cannot decide.", "[[B>>A]]",
                 "Quoting [[A>B]] first, then the real one: [[B>A]]"]


def _arena_games(run: RunBuilder, model: str, qs: list[Question]) -> None:
    for i, q in enumerate(qs):
        for game in (1, 2):
            n = 2 * i + game
            reply = None if n == 5 else FAILED if n == 8 else ok(ARENA_REPLIES[n % len(ARENA_REPLIES)])
            run.judged(model, q, reply, game=game, mode="pairwise", baseline=q.baseline, swapped=game == 2,
                       prompt="arena-hard-v2-hard-prompt")


def test_arena_hard_v2_export_reads_back_like_show_result(tmp_path):
    qs = load_questions("arena-hard-v2.0", source="package", limit=12)[0]
    run = RunBuilder(tmp_path / "run", "arena-hard-v2.0", "gpt-4.1", qs, {"mode": "single"})
    run.answers("m1", {(q.id, 1): f"# Title\n\n- item {i}\n\n**bold** text" for i, q in enumerate(qs)}, tokens=30)
    _arena_games(run, "m1", qs)
    run.close()
    with EvalStore(tmp_path / "run") as store:
        report = score_bench(store, "arena-hard-v2.0", ScoreOptions())
    export_files(tmp_path / "run", tmp_path / "out")
    root = tmp_path / "out" / "arena-hard-v2.0"

    answers = {f.stem: read_jsonl(f) for f in (root / "model_answer").glob("*.jsonl")}
    assert set(answers) == {"m1", "o3-mini-2025-01-31"}
    mine = answers["m1"][0]
    assert mine["messages"][1]["content"]["answer"].startswith("# Title") and mine["metadata"]["token_len"] == 30
    assert mine["metadata"] == style_metadata(mine["messages"][1]["content"]["answer"], 30)
    baseline = {r["uid"]: r for r in answers["o3-mini-2025-01-31"]}
    assert baseline[qs[0].id]["metadata"] == qs[0].meta["baseline_style"]

    battles = read_v2_battles(root, "gpt-4.1")
    raw = read_jsonl(root / "model_judgment" / "gpt-4.1" / "m1.jsonl")
    assert len(raw) == 12 and raw[2]["games"][0] is None  # question 3's game 1 was never made: a null game
    assert sum(g is None for r in raw for g in r["games"]) == 2  # the never-made and the failed call
    pairs = [GamePair(r["uid"], r["model"], tuple(g["score"] if g else None for g in r["games"]), r["category"])
             for r in raw]
    result = arena_hard_v2(pairs, "o3-mini-2025-01-31", seed=42)
    assert result.scores["m1"].score == pytest.approx(report.models[0].score, abs=1e-9)
    assert result.scores["m1"].point_estimate == pytest.approx(100 * battles.scores.astype(float).mean())
    assert len(battles) == result.scores["m1"].n_rows


def _v01_questions(n: int) -> list[Question]:
    qs = []
    for i in range(n):
        answer = f"## Answer {i}\n\n1. first\n2. second\n"
        qs.append(Question("arena-hard-v0.1", f"{i:032x}", "arena-hard-v0.1", [f"question {i}"], baseline="gpt-4-0314",
                           baseline_answer=answer, meta={"baseline_style": style_metadata(answer, 20 + i)}))
    return qs


def test_arena_hard_v01_export_reads_back_like_show_result(tmp_path):
    qs = _v01_questions(10)
    run = RunBuilder(tmp_path / "run", "arena-hard-v0.1", "gpt-4-1106-preview", qs, {"mode": "single"})
    run.answers("m1", {(q.id, 1): "short answer " * (i + 1) for i, q in enumerate(qs)}, tokens=11)
    _arena_games(run, "m1", qs)
    run.close()
    with EvalStore(tmp_path / "run") as store:
        report = score_bench(store, "arena-hard-v0.1", ScoreOptions())
    export_files(tmp_path / "run", tmp_path / "out")
    root = tmp_path / "out" / "arena-hard-v0.1"

    rows = read_jsonl(root / "model_judgment" / "gpt-4-1106-preview" / "m1.jsonl")
    assert all(len(r["games"]) == 2 for r in rows)  # show_result indexes both games of every row
    failed = [g for r in rows for g in r["games"] if g["judgment"] == ERROR_OUTPUT]
    assert len(failed) == 2 and all(g["score"] is None for g in failed)
    battles = read_v01_battles(root, "gpt-4-1106-preview", "gpt-4-0314")
    # Each model meets only the baseline, so the Bradley-Terry point estimate is the mean outcome.
    outcome = [1.0 if b["winner"] == "model_b" else 0.5 if b["winner"] == "tie" else 0.0 for b in battles]
    ours = next(m for m in report.models if m.model == "m1")
    assert ours.score == pytest.approx(100 * sum(outcome) / len(outcome), abs=1e-6)
    answers = {f.stem: read_jsonl(f) for f in (root / "model_answer").glob("*.jsonl")}
    tokens = [r["choices"][0]["turns"][0]["token_len"] for r in answers["gpt-4-0314"]]
    assert tokens == [20 + i for i in range(10)] and answers["m1"][0]["model_id"] == "m1"


# -- MT-Bench ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fastchat_common():
    return upstream_tools.fastchat().common


SINGLE_REPLIES = ["Rating: [[7]]", "Rating: [[8.5]]", "no rating given", "[[3]] then [[9]]", "Rating: [10]"]
PAIR_REPLIES = ["[[A]]", "[[B]]", "[[C]]", "I prefer [[A]]... final verdict: [[B]]", "no verdict"]


def _mt_run(folder: Path, mode: str) -> list[Question]:
    qs = load_questions("mt-bench", source="package", limit=8)[0]
    run = RunBuilder(folder, "mt-bench", "gpt-4", qs, {"mode": mode, "pairwise_baseline": "base"})
    for model in ("m1", "base"):
        texts = {(q.id, t): f"{model} answer {q.id}.{t}" for q in qs for t in (1, 2)}
        texts[(qs[1].id, 2)] = None if model == "m1" else texts[(qs[1].id, 2)]
        run.answers(model, texts)
    n = 0
    for q in qs:
        for turn in (1, 2):
            if mode == "single":
                reply = FAILED if n == 4 else ok(SINGLE_REPLIES[n % len(SINGLE_REPLIES)])
                run.judged("m1", q, None if n == 6 else reply, turn=turn, prompt="single-v1", version="upstream-aa")
            else:
                for game in (1, 2):
                    reply = FAILED if n == 5 else ok(PAIR_REPLIES[(n + game) % len(PAIR_REPLIES)])
                    run.judged("m1", q, reply, turn=turn, game=game, mode="pairwise", baseline="base",
                               swapped=game == 2, prompt="pair-v2", version="fusekit-1")
            n += 1
    run.close()
    return qs


def test_mt_bench_single_export_is_read_by_fastchat(tmp_path, fastchat_common):
    qs = _mt_run(tmp_path / "run", "single")
    with EvalStore(tmp_path / "run") as store:
        report = score_bench(store, "mt-bench", ScoreOptions())
    files = export_files(tmp_path / "run", tmp_path / "out")
    root = tmp_path / "out" / "mt_bench"

    answers = fastchat_common.load_model_answers(str(root / "model_answer"))
    assert set(answers) == {"m1", "base"} and set(answers["m1"]) == {int(q.id) for q in qs}
    assert answers["m1"][int(qs[1].id)]["choices"][0]["turns"] == [f"m1 answer {qs[1].id}.1", ERROR_OUTPUT]
    path = root / "model_judgment" / "gpt-4_single.jsonl"
    judged = fastchat_common.load_single_model_judgments(str(path))
    assert set(judged) == {("gpt-4", "single-v1")}

    # show_result.py --mode single: drop score -1, mean per model (overall) and per turn
    df = pd.read_json(path, lines=True)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    ours = report.models[0]
    assert df.groupby("model")["score"].mean()["m1"] == pytest.approx(ours.score)
    assert df[df.turn == 1]["score"].mean() == pytest.approx(ours.columns["turn_1"])
    assert df[df.turn == 2]["score"].mean() == pytest.approx(ours.columns["turn_2"])
    rows = read_jsonl(path)
    assert len(rows) == 15 and [r["score"] for r in rows[:2]] == [7, 8.5]
    single = next(f for f in files if f.kind == "judgments")
    assert (single.rows, single.failed, single.unparsed, single.left_out) == (15, 1, 3, 1)


def test_mt_bench_pairwise_export_is_read_by_fastchat(tmp_path, fastchat_common):
    _mt_run(tmp_path / "run", "pairwise")
    with EvalStore(tmp_path / "run") as store:
        report = score_bench(store, "mt-bench", ScoreOptions())
    export_files(tmp_path / "run", tmp_path / "out")
    path = tmp_path / "out" / "mt_bench" / "model_judgment" / "gpt-4_pair.jsonl"
    judged = fastchat_common.load_pairwise_model_judgments(str(path))
    assert set(judged) == {("gpt-4", "pair-v2@fusekit-1")}  # not FastChat's prompt text: labelled so

    # show_result.py --mode pairwise-baseline
    df = pd.read_json(path, lines=True)
    df = df[(df.g1_winner != "error") & (df.g2_winner != "error")]
    win = loss = tie = 0
    for _, row in df.iterrows():
        if row.g1_winner == "tie" or row.g1_winner != row.g2_winner:
            tie += 1
        elif row.g1_winner == "model_1":
            win += 1
        else:
            loss += 1
    cols = report.models[0].columns
    assert (win, loss, tie) == (cols["win"], cols["loss"], cols["tie"])
    assert (win + 0.5 * tie) / (win + loss + tie) == pytest.approx(cols["win_rate_adjusted"])


# -- files -------------------------------------------------------------------------------------------
def test_export_is_idempotent_and_leaves_no_temporary_files(tmp_path):
    _mt_run(tmp_path / "run", "single")
    export_run(tmp_path / "run", tmp_path / "out")
    first = snapshot(tmp_path / "out")
    export_run(tmp_path / "run", tmp_path / "out")
    assert snapshot(tmp_path / "out") == first
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(FusekitError, match="holds no evals.sqlite"):
        export_run(tmp_path / "nothing", tmp_path / "out")
    _mt_run(tmp_path / "run", "single")
    with pytest.raises(FusekitError, match="no judgments by judge 'gpt-5'"):
        export_run(tmp_path / "run", tmp_path / "out", judge="gpt-5")
    with pytest.raises(FusekitError, match="no alpaca-eval in"):
        export_run(tmp_path / "run", tmp_path / "out", bench="alpaca-eval")


def test_export_command_prints_what_it_wrote(tmp_path):
    from typer.testing import CliRunner

    from evals.cli import app

    _mt_run(tmp_path / "run", "single")
    r = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "out")],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "gpt-4_single.jsonl" in r.output and "model_answer/m1.jsonl" in r.output
    assert (tmp_path / "out" / "mt_bench" / "model_answer" / "base.jsonl").is_file()
    r = CliRunner().invoke(app, ["export", str(tmp_path / "missing"), "--out", str(tmp_path / "out2")])
    assert r.exit_code == 2 and "holds no evals.sqlite" in r.output and "Traceback" not in r.output
