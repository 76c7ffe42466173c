"""`fusedata build` end to end through the real CLI: output, resume after kill -9, failure
records and their retry, and the bad-input exits."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.servers import FlakyOpenAI


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "fusedata", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def write_recipe(path: Path, **over) -> Path:
    recipe = {"name": "t", "out": str(path.parent / "run"),
              "domains": {"math": {"sources": ["embedded:math"], "limit": 5},
                          "code": {"sources": ["embedded:code"], "limit": 5}}}
    recipe.update(over)
    path.write_text(yaml.safe_dump(recipe))
    return path


def rows(out: Path, q: str) -> list[tuple]:
    db = sqlite3.connect(out / "run.sqlite")
    try:
        return db.execute(q).fetchall()
    finally:
        db.close()


def tiny_models(tiny: Path) -> list[dict]:
    return [
        {"name": "tiny-a", "model": str(tiny), "batch_size": 4, "sampling": {"max_tokens": 8, "n": 2}},
        {"name": "tiny-b", "model": str(tiny), "sampling": {"max_tokens": 6, "n": 3, "temperature": 0.5, "seed": 1}},
    ]


def test_build_writes_every_response_once_and_a_summary(tmp_path, tiny_llama):
    recipe = write_recipe(tmp_path / "r.yaml", models=tiny_models(tiny_llama))
    res = run_cli("build", str(recipe), "--no-score")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "run"
    # 10 prompts × (2 + 3) samples
    assert rows(out, "SELECT COUNT(*), COUNT(DISTINCT prompt_id || model || settings_hash || sample_idx) "
                     "FROM responses") == [(50, 50)]
    assert rows(out, "SELECT domain, COUNT(*) FROM prompts GROUP BY domain ORDER BY domain") == \
        [("code", 5), ("math", 5)]
    assert rows(out, "SELECT COUNT(*) FROM responses WHERE error IS NOT NULL OR text IS NULL") == [(0,)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == {"math": 5, "code": 5}
    assert summary["models"]["tiny-a"]["responses"] == 20 and summary["models"]["tiny-b"]["responses"] == 30
    assert summary["models"]["tiny-a"]["output_tokens"] <= 20 * 8
    assert "fusedata build — generation" in res.stderr and "tiny-b" in res.stderr
    # A second run finds nothing to do and changes nothing.
    before = rows(out, "SELECT prompt_id, model, sample_idx, text, updated FROM responses ORDER BY 1, 2, 3")
    again = run_cli("build", str(recipe), "--no-score")
    assert again.returncode == 0, again.stderr
    assert rows(out, "SELECT prompt_id, model, sample_idx, text, updated FROM responses ORDER BY 1, 2, 3") == before
    assert json.loads((out / "summary.json").read_text())["new_responses"] == {}
    # --domains narrows the run; raising n adds samples without redoing the old ones.
    more = run_cli("build", str(recipe), "--domains", "math", "--model", "tiny-a", "--n", "3", "--no-score")
    assert more.returncode == 0, more.stderr
    assert rows(out, "SELECT COUNT(*) FROM responses WHERE model = 'tiny-a'") == [(25,)]
    assert rows(out, "SELECT text, updated FROM responses WHERE model = 'tiny-a' AND sample_idx < 2 "
                     "ORDER BY prompt_id, sample_idx") == [(t, u) for p, m, i, t, u in before if m == "tiny-a"]


def test_killed_build_resumes_without_loss_or_duplicates(tmp_path, tiny_llama):
    models = [{"name": "tiny", "model": str(tiny_llama), "batch_size": 2, "sampling": {"max_tokens": 48, "n": 4}}]
    recipe = write_recipe(tmp_path / "r.yaml", models=models,
                          domains={"math": ["embedded:math"], "code": ["embedded:code"]})
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "fusedata", "build", str(recipe), "--no-score"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, n = time.monotonic() + 120, 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "run.sqlite").exists():
            try:
                n = rows(out, "SELECT COUNT(*) FROM responses")[0][0]
            except sqlite3.OperationalError:
                n = 0  # tables not created yet
            if n >= 20:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed; make the work larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    survivors = rows(out, "SELECT prompt_id, sample_idx, text, updated FROM responses")
    n_prompts = rows(out, "SELECT COUNT(*) FROM prompts")[0][0]
    assert 20 <= len(survivors) < n_prompts * 4
    assert all(len(r) == 4 for r in survivors)

    res = run_cli("build", str(recipe), "--no-score")
    assert res.returncode == 0, res.stderr
    final = rows(out, "SELECT prompt_id, sample_idx, text, updated FROM responses")
    assert len(final) == n_prompts * 4 == len({(p, i) for p, i, _, _ in final})
    # What was committed before the kill was kept as it was, not generated again.
    assert set(survivors) <= set(final)


def test_failed_requests_are_stored_and_retried_on_the_next_run(tmp_path):
    with FlakyOpenAI(fail_first=10**6, status=503) as srv:
        models = [{"name": "remote", "model": "flaky", "engine": "openai", "base_url": srv.url, "max_retries": 0,
                   "sampling": {"max_tokens": 8, "n": 2}}]
        recipe = write_recipe(tmp_path / "r.yaml", models=models,
                              domains={"math": {"sources": ["embedded:math"], "limit": 3}})
        res = run_cli("build", str(recipe), "--no-score")
        assert res.returncode == 0, res.stderr
        out = tmp_path / "run"
        assert rows(out, "SELECT COUNT(*), MIN(error), MAX(text IS NULL) FROM responses") == \
            [(6, "HTTP 503: failing on purpose", 1)]
        assert "6 failed requests stored" in res.stderr
        srv.fail_first = 0  # the endpoint recovers
        res = run_cli("build", str(recipe), "--no-score")
        assert res.returncode == 0, res.stderr
    assert rows(out, "SELECT COUNT(*), COUNT(error), MIN(attempts), MAX(text) FROM responses") == \
        [(6, 0, 2, "The answer is \\boxed{12}.")]


def test_bad_input_exits_2_with_one_line_and_keeps_the_run(tmp_path, tiny_llama):
    good = write_recipe(tmp_path / "r.yaml", models=tiny_models(tiny_llama)[:1],
                        domains={"math": {"sources": ["embedded:math"], "limit": 2}})
    assert run_cli("build", str(good), "--no-score").returncode == 0
    out = tmp_path / "run"
    kept = rows(out, "SELECT * FROM responses ORDER BY 1, 2, 3, 4")
    assert len(kept) == 4

    bad_fields = tmp_path / "omi.jsonl"
    bad_fields.write_text(json.dumps({"problem": "1+1?", "generated_solution": "2"}) + "\n")
    cases = {
        "unknown domain": (["build", str(good), "--domains", "physics"], "unknown domain 'physics'"),
        "malformed recipe": ([ "build", str(tmp_path / "broken.yaml")], "not valid YAML"),
        "missing model": (["build", str(write_recipe(tmp_path / "m.yaml", models=[
            {"name": "gone", "model": str(tmp_path / "no" / "model")}]))], "model not found"),
        "unreachable endpoint": (["build", str(write_recipe(tmp_path / "u.yaml", models=[
            {"name": "remote", "model": "m", "engine": "openai", "base_url": "http://127.0.0.1:9/v1", "timeout": 5}]))],
            "endpoint http://127.0.0.1:9/v1 is unreachable"),
        "source with wrong fields": (["build", str(write_recipe(tmp_path / "s.yaml", models=tiny_models(tiny_llama)[:1],
            domains={"math": {"sources": [{"name": "openmathinstruct2", "data_files": str(bad_fields)}]}}))],
            "missing field 'expected_answer'"),
        "unknown recipe key": (["build", str(write_recipe(tmp_path / "k.yaml", modles=[]))], "unknown key 'modles'"),
    }
    (tmp_path / "broken.yaml").write_text("models: [\n")
    for name, (args, message) in cases.items():
        res = run_cli(*args)
        assert res.returncode == 2, (name, res.stderr)
        assert message in res.stderr, (name, res.stderr)
        assert "Traceback" not in res.stderr, name
    # None of the failed commands touched what the first run generated.
    assert rows(out, "SELECT * FROM responses ORDER BY 1, 2, 3, 4") == kept


@pytest.mark.slow
def test_default_recipe_math_code_on_embedded_models(tmp_path):
    """`fusedata build --domains math,code` alone, on the embedded heterogeneous sources."""
    res = run_cli("build", "--domains", "math,code", "--limit", "1", "--n", "1", "--max-tokens", "24",
                  "--out", str(tmp_path / "run"), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    got = rows(tmp_path / "run", "SELECT model, COUNT(*), SUM(error IS NULL), SUM(LENGTH(text) > 0) FROM responses "
                                 "GROUP BY model ORDER BY model")
    # Both sources answered both prompts; a tiny base model may legitimately stop at once (empty text).
    assert [g[:3] for g in got] == [("gemma3-270m", 2, 2), ("smollm2-135m", 2, 2)]
    assert all(g[3] >= 1 for g in got)
