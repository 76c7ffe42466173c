"""`fusedata build` against a flaky endpoint: a fifth of the chat calls answer 429, 500 or a
body that is not JSON. Killed three times at different points and re-run until it finishes,
the build ends with every response stored exactly once and no failure left."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.servers import ScriptedOpenAI

PROMPTS, SAMPLES = 12, 2


def faults(seed: int = 2, n: int = 1000) -> list:
    """What chat call number i gets: 20 % faults, split evenly between 429, 500 and a non-JSON 200."""
    rng = random.Random(seed)
    return [rng.choice((429, 500, "nonjson")) if rng.random() < 0.2 else "ok" for _ in range(n)]


def count(out: Path, sql: str) -> int:
    if not (out / "run.sqlite").exists():
        return 0
    db = sqlite3.connect(out / "run.sqlite")
    try:
        return db.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        db.close()


def test_killed_builds_against_a_flaky_endpoint_finish_with_every_response_once(tmp_path):
    plan = faults()
    with ScriptedOpenAI(lambda n: plan[n % len(plan)], delay=0.1, retry_after="0.1") as srv:
        recipe = tmp_path / "r.yaml"
        out = tmp_path / "run"
        recipe.write_text(yaml.safe_dump({
            "name": "faults", "out": str(out),
            "domains": {"math": {"sources": ["embedded:math"], "limit": PROMPTS}},
            "models": [{"name": "remote", "model": "m", "engine": "openai", "base_url": srv.url, "concurrency": 2,
                        "sampling": {"max_tokens": 16, "n": SAMPLES}}],
            "scoring": {"domains": {"math": ["math"]}, "reward": {"kind": "none"}},
        }))
        env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160")
        cmd = [sys.executable, "-m", "fusedata", "build", str(recipe)]

        rows = "SELECT COUNT(*) FROM responses"
        # Each reply is committed as it lands, with a window of 4 (2 × concurrency) in flight: the first kill
        # lands after the first few replies, the others in the middle of the run.
        kill_when = (lambda: srv.ok >= 3, lambda: count(out, rows) >= 8, lambda: count(out, rows) >= 16)
        for kill_now in kill_when:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while not kill_now() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proc.poll() is None, "the build finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        stored_before_reruns = count(out, "SELECT COUNT(*) FROM responses WHERE error IS NULL")
        assert 0 < stored_before_reruns < PROMPTS * SAMPLES

        for _ in range(8):  # failures stay stored and are retried by the next run
            res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
            assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
            if count(out, "SELECT COUNT(*) FROM responses WHERE error IS NULL") == PROMPTS * SAMPLES:
                break

    total = PROMPTS * SAMPLES
    assert count(out, "SELECT COUNT(*) FROM responses") == total
    keys = "SELECT COUNT(DISTINCT prompt_id || model || settings_hash || sample_idx) FROM responses"
    assert count(out, keys) == total
    assert count(out, "SELECT COUNT(*) FROM responses WHERE error IS NOT NULL OR text IS NULL") == 0
    # The faults really happened: some responses needed a later run.
    served = plan[:srv.calls]
    assert served.count("nonjson") >= 1 and served.count(429) >= 1 and served.count(500) >= 1
    assert count(out, "SELECT MAX(attempts) FROM responses") >= 2
