"""vLLM's OpenAI-compatible server (the CPU build from .venv-vllm, on 127.0.0.1) as the endpoint of
``engine: openai`` and of ``fusedata build``. The same session-wide server also answers and judges
the ``evals run`` tests (tests/test_eval_run.py, tests/test_eval_comparable.py) and the HTTP judge
reward test (tests/test_rewards.py)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from fractions import Fraction

import yaml

from fusedata.endpoint import EndpointSettings
from fusedata.engines import EngineConfig, GenRequest, make_engine
from fusedata.records import Prompt, SamplingParams
from fusedata.verifiers.math import LABELS
from tests.conftest import REPO

PROMPTS = [
    Prompt.make("math", "t", [{"role": "user", "content": "What is 7 + 5?"}]),
    Prompt.make("instruction", "t", [{"role": "user", "content": "Give three tips for sleeping better."}]),
]


def served(url: str, **endpoint) -> EngineConfig:
    return EngineConfig(name="smol", model="smollm2-135m", engine="openai",
                        endpoint=EndpointSettings(url, "smollm2-135m", **endpoint))


def test_openai_engine_gets_all_samples_of_a_prompt_in_one_request(vllm_server):
    sp = SamplingParams(temperature=0.8, max_tokens=24, n=3, seed=3)
    eng = make_engine(served(vllm_server, concurrency=2))
    out = eng.generate([GenRequest(PROMPTS[0], (0, 1, 2)), GenRequest(PROMPTS[1], (0,))], sp)
    # vLLM answers n=3 with three choices (llama.cpp answers one: tests/test_engines.py covers that fallback).
    assert eng.n_per_request is True
    eng.close()
    assert [(r.prompt_id, r.sample_idx) for r in out] == [(PROMPTS[0].id, i) for i in range(3)] + [(PROMPTS[1].id, 0)]
    assert all(r.ok and 0 < r.n_output_tokens <= 24 and r.n_input_tokens > 20 for r in out)
    assert all((r.finish_reason == "length") == (r.n_output_tokens == 24) for r in out)
    assert len({r.text for r in out[:3]}) == 3
    again = make_engine(served(vllm_server))
    assert [r.text for r in again.generate([GenRequest(PROMPTS[0], (0, 1, 2))], sp)] == [r.text for r in out[:3]]
    again.close()


def test_fusedata_build_against_the_vllm_server_verifies_math_answers(vllm_server, tmp_path):
    out = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "served", "out": str(out),
        "domains": {"math": {"sources": ["embedded:math"], "limit": 8}},
        "models": [{"name": "smol", "model": "smollm2-135m", "engine": "openai", "base_url": vllm_server,
                    "concurrency": 4, "sampling": {"temperature": 0.7, "max_tokens": 96, "n": 2, "seed": 1}}],
        "scoring": {"domains": {"math": ["math"]}, "reward": {"kind": "none"}},
    }))
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160")
    res = subprocess.run([sys.executable, "-m", "fusedata", "build", str(recipe), "--no-pairs"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    db = sqlite3.connect(out / "run.sqlite")
    try:
        responses = db.execute("SELECT COUNT(*), SUM(error IS NULL AND text != ''), SUM(n_input_tokens > 20) "
                               "FROM responses").fetchall()
        scores = db.execute("SELECT s.label, s.value, s.detail, p.gold FROM scores s JOIN prompts p "
                            "ON p.id = s.prompt_id WHERE s.scorer = 'math'").fetchall()
    finally:
        db.close()
    assert responses == [(16, 16, 16)]
    assert len(scores) == 16 and {label for label, *_ in scores} <= set(LABELS)
    assert all(value == (1.0 if label == "correct" else 0.0) for label, value, *_ in scores)
    # Checked a second way where the extracted answer is a plain number: equal as fractions to the gold one.
    numeric = [(label, Fraction(json.loads(detail)["extracted"]), Fraction(gold)) for label, _, detail, gold in scores
               if re.fullmatch(r"-?\d+(\.\d+)?", json.loads(detail).get("extracted") or "")]
    assert len(numeric) >= 4
    assert all((label == "correct") == (got == want) for label, got, want in numeric)
