"""`fusedata build --ray`: generation, verifiers, the reward judge and the WRPO target sampling as Ray
Data pipelines on a local Ray instance (2 CPUs), giving the same dataset as the local run, record for
record; and a killed Ray run resumes without duplicates or losses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from fusedata.dataset import run_dataset_folder

pytest.importorskip("ray.data")

VOLATILE = {"duration_s", "stderr_tail"}
RECIPE = {
    "name": "ray-equality",
    "domains": {"math": {"sources": ["embedded:math"], "limit": 2}, "code": {"sources": ["embedded:code"], "limit": 2},
                "instruction": {"sources": ["embedded:instruction"], "limit": 2}},
    "models": [{"name": "smollm2-135m", "model": "embedded:smollm2-135m", "batch_size": 4,
                "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 16, "n": 2, "seed": 0},
                "extra": {"ray": {"replicas": 2, "num_cpus": 1}}}],
    "target": {"name": "smollm2-target", "model": "embedded:smollm2-135m", "batch_size": 4,
               "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 16, "n": 3, "seed": 1}},
    "scoring": {"reward": {"kind": "judge", "model": "embedded:smollm2-135m", "ray": {"replicas": 1}},
                "domains": {"instruction": ["reward"], "math": ["math", "reward"], "code": ["code", "reward"]},
                "batch_size": 8, "math": {"timeout": 5}, "code": {"timeout": 10, "ray": {"replicas": 2}}},
    # 16-token answers are all truncated; keep them, or WRPO would have no candidates
    "pairs": {"method": "wrpo", "test_fraction": 0.0, "keep_truncated": True},
}


def build(recipe: Path, out: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, "-m", "fusedata", "build", str(recipe), "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        # its own session: killing it takes the local Ray instance it started down too
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def rounded(value):
    """Floats to 12 digits, in any nesting: the judge's ratings may differ in their last bit."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def records(out: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(out / "run.sqlite") as c:
        return {
            "responses": sorted(c.execute("SELECT prompt_id, model, settings_hash, sample_idx, text, finish_reason, "
                                          "n_input_tokens, n_output_tokens, error FROM responses")),
            # A score's detail also holds timings and sandbox paths, which differ between any two runs; the
            # judge's expected rating can differ in its last bit between processes (1e-16), so 12 digits.
            "scores": sorted((*row[:5], None if row[5] is None else float(f"{row[5]:.12g}"), row[6],
                              {k: v for k, v in json.loads(row[7]).items() if k not in VOLATILE}, row[8])
                             for row in c.execute("SELECT prompt_id, model, settings_hash, sample_idx, scorer, value, "
                                                  "label, detail, error FROM scores")),
        }


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_ray_build_equals_local_build_record_for_record(recipe, tmp_path):
    build(recipe, tmp_path / "local")
    build(recipe, tmp_path / "ray", "--ray", "local", "--ray-cpus", "2")
    local, ray = records(tmp_path / "local"), records(tmp_path / "ray")
    targeted = {row[0] for row in local["responses"] if row[1] == "smollm2-target"}
    assert len(local["responses"]) == 6 * 2 + len(targeted) * 3
    assert ray["responses"] == local["responses"]
    assert ray["scores"] == local["scores"]
    scorers = {row[4] for row in ray["scores"]}
    assert {"math", "code"} <= scorers and any(s.startswith("judge:") for s in scorers)
    # each run names its dataset folder after its rows; the ray run's may differ in a float's last bit
    folders = {run: run_dataset_folder(tmp_path / run) for run in ("local", "ray")}
    files = {run: sorted((folder / "data").rglob("*.parquet")) for run, folder in folders.items()}
    assert [f.relative_to(folders["local"]) for f in files["local"]] == \
        [f.relative_to(folders["ray"]) for f in files["ray"]]
    assert any("wrpo" in str(f.relative_to(folders["ray"])) for f in files["ray"])
    for a, b in zip(files["local"], files["ray"]):
        rows_a, rows_b = ([{k: json.loads(v) if k == "meta" else v for k, v in r.items()}
                           for r in pq.read_table(f).to_pylist()] for f in (a, b))
        assert rounded(rows_a) == rounded(rows_b)
    # a second Ray run finds everything in the store and redoes nothing
    build(recipe, tmp_path / "ray", "--ray", "local", "--ray-cpus", "2")
    assert records(tmp_path / "ray") == ray


def test_killed_ray_build_resumes_without_duplicates(recipe, tmp_path):
    out = tmp_path / "ray"
    proc = build(recipe, out, "--ray", "local", "--ray-cpus", "2", "--no-score", wait=False)
    deadline = time.monotonic() + 300
    killed = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(out / "run.sqlite") as c:
                n = c.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= 4:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = n
            break
        time.sleep(0.1)
    proc.wait(timeout=60)
    assert killed is not None and killed < 12, "the run ended before it could be killed"
    build(recipe, out, "--ray", "local", "--ray-cpus", "2", "--no-score")
    with sqlite3.connect(out / "run.sqlite") as c:
        rows = c.execute("SELECT COUNT(*), COUNT(DISTINCT prompt_id || model || sample_idx), MAX(attempts), "
                         "SUM(error IS NULL) FROM responses").fetchone()
    assert rows == (12, 12, 1, 12)
