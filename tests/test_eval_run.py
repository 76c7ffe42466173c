"""``evals run`` / ``evals score`` end to end: each judge protocol against real judges, resume, retries, bad input.

Real judges: vLLM's OpenAI-compatible server with the embedded SmolLM2 on 127.0.0.1 (tests/conftest.py),
and SmolLM2 in-process. ``FlakyOpenAI`` (tests/servers.py) stands in only where a real server
cannot behave as needed: one that fails on purpose, returns no logprobs, or answers a fixed verdict.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evals.cli import app
from tests.servers import FlakyOpenAI

MT_QUESTIONS_SHA = "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"
SMALL = ["--max-tokens", "32", "--judge-max-tokens", "48"]


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", *args], catch_exceptions=False)


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def arena_v01_dir(root: Path) -> Path:
    """Two Arena-Hard v0.1 questions with a baseline answer each, in upstream's layout."""
    d = root / "arena-hard-v0.1"
    (d / "model_answer").mkdir(parents=True)
    qs = [("q1", "Name the capital of France in one word."), ("q2", "What is 2 + 3? Reply with the number.")]
    with open(d / "question.jsonl", "w") as fh:
        for uid, prompt in qs:
            fh.write(json.dumps({"uid": uid, "category": "arena-hard-v0.1", "cluster": "c", "prompt": prompt}) + "\n")
    with open(d / "model_answer" / "gpt-4-0314.jsonl", "w") as fh:
        for uid, ans in zip(["q1", "q2"], ["Paris.", "5"]):
            fh.write(json.dumps({"question_id": uid, "answer_id": uid, "model_id": "gpt-4-0314",
                                 "choices": [{"index": 0, "turns": [{"content": ans, "token_len": 2}]}],
                                 "tstamp": 0}) + "\n")
    return d


# -- the in-process path: embedded model as model and judge -------------------------------------
def test_mt_bench_embedded_model_and_judge_offline(tmp_path):
    out = tmp_path / "run"
    r = invoke("--bench", "mt-bench", "--limit", "4", *SMALL, "--out", str(out))
    assert r.exit_code == 0, r.output
    db = out / "evals.sqlite"
    # 4 questions × 2 turns answered and judged, nothing failed
    assert rows(db, "SELECT COUNT(*), SUM(error IS NULL) FROM answers") == [(8, 8)]
    assert rows(db, "SELECT COUNT(*), SUM(error IS NULL) FROM calls") == [(8, 8)]
    board = read_csv(out / "mt-bench" / "leaderboard.csv")
    assert [b["model"] for b in board] == ["smollm2-135m"]
    judged = int(board[0]["n_judged"])
    assert judged + int(board[0]["n_failed"]) == 8
    if judged:
        assert 1.0 <= float(board[0]["score"]) <= 10.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["benches"]["mt-bench"]["data"]["mt_bench/question.jsonl"] == MT_QUESTIONS_SHA
    # --limit 4 takes one question from each of the first four categories (81, 91, 101, 111):
    # writing/roleplay graded plainly, reasoning/math against the reference answers
    assert sorted(rows(db, "SELECT DISTINCT question_id FROM answers")) == [("101",), ("111",), ("81",), ("91",)]
    # FastChat's own prompts by default, read from the installed judge_prompts.jsonl and pinned
    upstream = "upstream-fd283293406d"
    assert manifest["benches"]["mt-bench"]["settings"]["prompts"] == {
        "single-v1": upstream, "single-v1-multi-turn": upstream,
        "single-math-v1": upstream, "single-math-v1-multi-turn": upstream}
    png = (out / "mt-bench" / "scores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "smollm2-135m" in report and MT_QUESTIONS_SHA in report

    # A finished run makes no call again, and `evals score` recomputes the same table from the store.
    again = invoke("--bench", "mt-bench", "--limit", "4", *SMALL, "--out", str(out))
    assert again.exit_code == 0 and "0 calls to make" in again.output
    (out / "mt-bench" / "leaderboard.csv").unlink()
    s = CliRunner().invoke(app, ["score", str(out)], catch_exceptions=False)
    assert s.exit_code == 0, s.output
    assert read_csv(out / "mt-bench" / "leaderboard.csv") == board


def test_in_process_judge_reads_logprobs_for_alpaca_eval(tmp_path, vllm_server):
    out = tmp_path / "run"
    r = invoke("--bench", "alpaca-eval", "--limit", "3", "--model", "smollm2-135m", "--base-url", vllm_server,
               "--max-tokens", "32", "--out", str(out))
    assert r.exit_code == 0, r.output
    calls = rows(out / "evals.sqlite", "SELECT c.top_logprobs, c.error, j.swapped FROM calls c "
                                       "JOIN judgments j ON j.key = c.key")
    assert len(calls) == 3 and all(err is None for _, err, _ in calls)
    prefs = []
    for lp, _, swapped in calls:
        alts = json.loads(lp)
        assert len(alts) == 5 and all(v <= 0 for v in alts.values())
        assert sum(math.exp(v) for v in alts.values()) <= 1.0 + 1e-6
        # recompute AlpacaEval's preference by hand from the stored alternatives: upstream's parser
        # reads the exact tokens "m" and "M" only
        pm = math.exp(alts["m"]) if "m" in alts else 0.0
        pM = math.exp(alts["M"]) if "M" in alts else 0.0
        if pm + pM > 0:
            pref = 2 - pm / (pm + pM)
            prefs.append(3 - pref if swapped else pref)
    board = read_csv(out / "alpaca-eval" / "leaderboard.csv")
    assert int(board[0]["n_total"]) == len(prefs)
    if prefs:
        assert math.isclose(float(board[0]["win_rate"]), 100 * sum(p - 1 for p in prefs) / len(prefs), rel_tol=1e-9)
    report = (out / "report.md").read_text()
    assert "LC not computed" in report and "df_gamed.csv" in report


# -- each protocol against the vLLM server: answers and judge (AlpacaEval's reads top_logprobs) -----
@pytest.mark.parametrize("bench,extra", [
    ("mt-bench", ["--categories", "math", "--limit", "1"]),
    ("alpaca-eval", ["--limit", "2"]),
    ("arena-hard-v0.1", []),
])
def test_protocols_with_vllm_server_judge(tmp_path, vllm_server, bench, extra):
    out = tmp_path / "run"
    if bench == "arena-hard-v0.1":
        extra = ["--data-dir", str(arena_v01_dir(tmp_path))]
    r = invoke("--bench", bench, *extra, "--model", "smollm2-135m", "--base-url", vllm_server,
               "--judge", "smollm2-135m", "--judge-base-url", vllm_server, *SMALL, "--out", str(out))
    assert r.exit_code == 0, r.output
    db = out / "evals.sqlite"
    calls = rows(db, "SELECT request, text, top_logprobs, error, prompt_tokens FROM calls")
    assert calls and all(err is None and text is not None and pt > 0 for _, text, _, err, pt in calls)
    judgments = rows(db, "SELECT question_id, turn, game, mode, swapped FROM judgments")
    if bench == "mt-bench":
        # one math question: both turns graded against the reference answers
        assert sorted((t, g) for _, t, g, _, _ in judgments) == [(1, 0), (2, 0)]
        prompts = sorted(json.loads(req)["prompt"] for req, *_ in calls)
        assert prompts == ["single-math-v1", "single-math-v1-multi-turn"]
        assert all("Reference" in json.dumps(json.loads(req)["messages"]) or "reference" in
                   json.dumps(json.loads(req)["messages"]) for req, *_ in calls)
    elif bench == "alpaca-eval":
        assert len(calls) == 2 and all(lp is not None for _, _, lp, _, _ in calls)
        board = read_csv(out / "alpaca-eval" / "leaderboard.csv")
        n = int(board[0]["n_total"])
        if n:  # when the judge put m or M among its top 5, the win rate is a percentage
            assert 0.0 <= float(board[0]["win_rate"]) <= 100.0
    else:
        # two games per question, positions swapped in the second
        assert sorted((q, g, s) for q, _, g, _, s in judgments) == [
            ("q1", 1, 0), ("q1", 2, 1), ("q2", 1, 0), ("q2", 2, 1)]
        first = [json.loads(req)["messages"][-1]["content"] for req, *_ in calls]
        assert any("Paris." in m.split("<|The End of Assistant A's Answer|>")[0] for m in first)
    assert (out / bench / "leaderboard.csv").exists() and (out / bench / "scores.png").exists()


# -- fixed verdicts: the mapping from games to scores --------------------------------------------
def test_fixed_verdict_judge_maps_games_to_scores(tmp_path):
    """A judge that always says "A" prefers whoever sits first: swapped games disagree, so every
    MT-Bench pair is an inconsistent tie and Arena-Hard's strong verdicts cancel to 50%."""
    with FlakyOpenAI(fail_first=0, text="Paris is the capital of France.") as answers, \
            FlakyOpenAI(fail_first=0, text="Both are fine. [[A]]") as pair_judge:
        common = ["--base-url", answers.url, "--judge", "flaky", "--judge-base-url", pair_judge.url]
        out = tmp_path / "pair"
        r = invoke("--bench", "mt-bench", "--limit", "2", "--model", "one=flaky", "--model", "two=flaky",
                   "--mode", "pairwise", "--baseline-model", "two", *common, "--out", str(out))
        assert r.exit_code == 0, r.output
        board = read_csv(out / "mt-bench" / "leaderboard.csv")
        assert [(b["model"], b["tie"], b["n_inconsistent"], float(b["win_rate_adjusted"])) for b in board] == \
            [("one", "4", "4", 0.5)]
    with FlakyOpenAI(fail_first=0, text="Paris.") as answers, \
            FlakyOpenAI(fail_first=0, text="My final verdict: [[A>>B]]") as arena_judge:
        out = tmp_path / "arena"
        r = invoke("--bench", "arena-hard-v0.1", "--data-dir", str(arena_v01_dir(tmp_path)), "--model", "m=flaky",
                   "--base-url", answers.url, "--judge", "flaky", "--judge-base-url", arena_judge.url,
                   "--out", str(out))
        assert r.exit_code == 0, r.output
        board = {b["model"]: b for b in read_csv(out / "arena-hard-v0.1" / "leaderboard.csv")}
        assert math.isclose(float(board["m"]["score"]), 50.0, abs_tol=1e-6)
        assert float(board["gpt-4-0314"]["score"]) == 50.0
    # style control re-fits from the stored verdicts: still balanced, so still 50 at equal style
    s = CliRunner().invoke(app, ["score", str(out), "--style-control"], catch_exceptions=False)
    assert s.exit_code == 0, s.output
    board = {b["model"]: b for b in read_csv(out / "arena-hard-v0.1" / "leaderboard.csv")}
    assert math.isclose(float(board["m"]["score_style_controlled"]), 50.0, abs_tol=1e-3)
    assert "feature coefficients" in (out / "report.md").read_text()


# -- a recipe file is the same run as its flags -------------------------------------------------
def test_recipe_run_equals_the_flag_run(tmp_path):
    by_flags, by_recipe = tmp_path / "flags", tmp_path / "recipe"
    with FlakyOpenAI(fail_first=0, text="An answer.") as answers, \
            FlakyOpenAI(fail_first=0, text="Rating: [[7]]") as judge:
        r = invoke("--bench", "mt-bench", "--limit", "2", "--model", "m=flaky", "--base-url", answers.url,
                   "--max-tokens", "32", "--judge", "flaky", "--judge-base-url", judge.url, "-o", str(by_flags))
        assert r.exit_code == 0, r.output
        recipe = tmp_path / "evals.yaml"
        recipe.write_text(yaml.safe_dump({
            "bench": "mt-bench", "limit": 2,
            "models": [{"name": "m", "model": "flaky", "base_url": answers.url, "max_tokens": 32}],
            "judge": {"model": "flaky", "base_url": judge.url}, "out": str(by_recipe)}))
        r = invoke(str(recipe))
        assert r.exit_code == 0, r.output

    def stored(out: Path) -> list[list[tuple]]:
        db = out / "evals.sqlite"
        return [rows(db, sql) for sql in (
            "SELECT bench, model, settings_hash, settings FROM models",
            "SELECT bench, question_id, model, settings_hash, turn, text, error FROM answers "
            "ORDER BY question_id, turn",
            "SELECT key, request, text, error FROM calls ORDER BY key",
            "SELECT * FROM judgments ORDER BY key",
            "SELECT key, value FROM meta WHERE key NOT LIKE '%wall_seconds' ORDER BY key")]

    flags_rows = stored(by_flags)
    assert len(flags_rows[1]) == 4 and len(flags_rows[2]) == 4  # 2 questions × 2 turns, answered and judged
    assert stored(by_recipe) == flags_rows
    board = read_csv(by_flags / "mt-bench" / "leaderboard.csv")
    assert board == read_csv(by_recipe / "mt-bench" / "leaderboard.csv") and float(board[0]["score"]) == 7.0


# -- failures are stored, counted and retried ----------------------------------------------------
def test_failed_judge_calls_are_kept_and_retried(tmp_path):
    out = tmp_path / "run"
    with FlakyOpenAI(fail_first=0, text="An answer.") as answers:
        with FlakyOpenAI(fail_first=10_000, status=503) as down:
            r = invoke("--bench", "mt-bench", "--limit", "1", "--model", "m=flaky", "--base-url", answers.url,
                       "--judge", "flaky", "--judge-base-url", down.url, "--retries", "1", "--out", str(out))
            assert r.exit_code == 0, r.output
            assert down.chat_calls == 4  # 2 calls × (1 try + 1 retry), then it stops
        db = out / "evals.sqlite"
        assert rows(db, "SELECT COUNT(*), SUM(error LIKE 'HTTP 503%'), SUM(text IS NULL) FROM calls") == [(2, 2, 2)]
        board = read_csv(out / "mt-bench" / "leaderboard.csv")
        assert board[0]["n_judged"] == "0" and board[0]["n_failed"] == "2"
        assert "judge failed" in (out / "report.md").read_text()
        with FlakyOpenAI(fail_first=0, text="Rating: [[7]]") as up:
            r = invoke("--bench", "mt-bench", "--limit", "1", "--model", "m=flaky", "--base-url", answers.url,
                       "--judge", "flaky", "--judge-base-url", up.url, "--out", str(out))
            assert r.exit_code == 0, r.output
            assert up.chat_calls == 2
    assert rows(db, "SELECT COUNT(*), SUM(error IS NULL), MIN(attempts), MAX(attempts) FROM calls") == [(2, 2, 2, 2)]
    board = read_csv(out / "mt-bench" / "leaderboard.csv")
    assert board[0]["n_judged"] == "2" and float(board[0]["score"]) == 7.0


def test_killed_run_resumes_without_duplicates(tmp_path, vllm_server):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "evals", "run", "--bench", "mt-bench", "--limit", "4", "--model", "smollm2-135m",
           "--base-url", vllm_server, "--judge", "smollm2-135m", "--judge-base-url", vllm_server,
           "--concurrency", "1", "--max-tokens", "24", "--judge-max-tokens", "64", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    db = out / "evals.sqlite"
    deadline = time.monotonic() + 240
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            n = rows(db, "SELECT COUNT(*) FROM calls")[0][0]
        except sqlite3.Error:
            n = 0
        if n >= 2:
            proc.send_signal(signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_at is not None and killed_at < 8, "the run finished before it could be killed"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"8 items, {8 - killed_at}" in done.stderr.replace("\n", " ") or "calls to make" in done.stderr
    # every call made once: the killed run's replies were kept, not re-sent
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT key), MAX(attempts), SUM(error IS NULL) FROM calls") == [
        (8, 8, 1, 8)]
    assert rows(db, "SELECT COUNT(*), MAX(attempts) FROM answers") == [(8, 1)]
    assert rows(db, "SELECT COUNT(*) FROM judgments") == [(8,)]


# -- bad input: one message, exit 2, nothing lost ------------------------------------------------
def test_unknown_bench_and_prompt_exit_2(tmp_path):
    r = invoke("--bench", "mt-bnch", "--out", str(tmp_path))
    assert r.exit_code == 2 and "mt-bench" in r.output and "Traceback" not in r.output
    r = invoke("--bench", "mt-bench", "--prompt", "single-v9", "--out", str(tmp_path))
    assert r.exit_code == 2 and "single-v1" in r.output
    r = invoke("--bench", "mt-bench", "--mode", "pairwise", "--out", str(tmp_path))
    assert r.exit_code == 2 and "--baseline-model" in r.output
    r = invoke("--bench", "mt-bench", "--judge-prefill", "Rating: [[", "--judge-base-url", "http://127.0.0.1:9/v1",
               "--out", str(tmp_path))
    assert r.exit_code == 2 and "in-process judge" in r.output
    r = CliRunner().invoke(app, ["score", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "evals.sqlite" in r.output


def test_judge_without_logprobs_stops_alpaca_eval_and_keeps_answers(tmp_path):
    out = tmp_path / "run"
    with FlakyOpenAI(fail_first=0, text="An answer.") as answers, FlakyOpenAI(fail_first=0, text="m") as judge:
        r = invoke("--bench", "alpaca-eval", "--limit", "3", "--model", "m=flaky", "--base-url", answers.url,
                   "--judge", "flaky", "--judge-base-url", judge.url, "--out", str(out))
        assert r.exit_code == 2 and "returned no logprobs" in r.output
        assert judge.chat_calls == 1  # one probe, not 3 calls
    assert rows(out / "evals.sqlite", "SELECT COUNT(*), SUM(error IS NULL) FROM answers") == [(3, 3)]
    assert rows(out / "evals.sqlite", "SELECT COUNT(*) FROM calls") == [(1,)]


def test_unreachable_judge_exits_2_and_keeps_answers(tmp_path):
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    with FlakyOpenAI(fail_first=0, text="An answer.") as answers:
        r = invoke("--bench", "mt-bench", "--limit", "1", "--model", "m=flaky", "--base-url", answers.url,
                   "--judge", "gpt-4", "--judge-base-url", f"http://127.0.0.1:{port}/v1", "--out", str(out))
    assert r.exit_code == 2 and "unreachable" in r.output and "Traceback" not in r.output
    assert rows(out / "evals.sqlite", "SELECT COUNT(*), SUM(error IS NULL) FROM answers") == [(2, 2)]


def test_corrupted_data_file_exits_2(tmp_path):
    d = arena_v01_dir(tmp_path)
    (d / "question.jsonl").write_text('{"uid": "q1", "category": "x", "prompt": "hi"}\n{not json\n')
    r = invoke("--bench", "arena-hard-v0.1", "--data-dir", str(d), "--out", str(tmp_path / "run"))
    msg = r.output.replace("\n", "")
    assert r.exit_code == 2 and "question.jsonl: line 2: malformed JSON" in msg

    # a pinned file whose bytes changed: the hash check names it before anything runs
    from evals.benches import load_questions

    _, files = load_questions("mt-bench", categories=["math"])
    mt = tmp_path / "mt"
    (mt / "reference_answer").mkdir(parents=True)
    for f in files:
        text = Path(f.path).read_text()
        if f.name.endswith("question.jsonl"):
            text = text.replace("Benjamin", "Benjamim", 1)
        (mt / f.name.split("mt_bench/", 1)[-1]).write_text(text)
    r = invoke("--bench", "mt-bench", "--data-dir", str(mt), "--out", str(tmp_path / "run2"))
    msg = r.output.replace("\n", "")
    assert r.exit_code == 2 and "sha256" in msg and MT_QUESTIONS_SHA in msg
    assert not (tmp_path / "run2").exists()
