"""The scoring stage on hand-built runs: verifier scores, skipped items, resume, the reward
model wiring, and the `fusedata score` / `fusedata sandbox` commands."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from fusedata.errors import FusekitError
from fusedata.recipe import parse_scoring
from fusedata.records import Prompt, Response
from fusedata.score import domain_stats, score_run
from fusedata.store import RunStore
from tests.test_build import run_cli

MATH = Prompt.make("math", "t", [{"role": "user", "content": "What is 1/2 + 1/4?"}], gold="3/4")
NO_GOLD = Prompt.make("math", "t", [{"role": "user", "content": "What is 2 + 2?"}])
CODE = Prompt.make("code", "t", [{"role": "user", "content": "Write add(a, b)."}],
                   tests="assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 4")
NO_TESTS = Prompt.make("code", "t", [{"role": "user", "content": "Write sub(a, b)."}])
CHAT = Prompt.make("instruction", "t", [{"role": "user", "content": "Say hi."}])


def resp(p: Prompt, i: int, text: str | None, model: str = "m", error: str | None = None) -> Response:
    return Response(p.id, model, "h", i, text, "stop", 5, 5, error)


def build_run(folder) -> RunStore:
    st = RunStore(folder)
    st.put_prompts([MATH, NO_GOLD, CODE, NO_TESTS, CHAT])
    st.put_responses([
        resp(MATH, 0, "1/2 + 1/4 = 3/4, so the answer is \\boxed{\\frac{3}{4}}."),
        resp(MATH, 1, "The answer is \\boxed{0.75}."),
        resp(MATH, 2, "It is \\boxed{1/6}."),
        resp(MATH, 3, "\\boxed{3/4} or maybe \\boxed{1/2}"),
        resp(NO_GOLD, 0, "\\boxed{4}"),
        resp(CODE, 0, "```python\ndef add(a, b):\n    return a + b\n```"),
        resp(CODE, 1, "```python\ndef add(a, b):\n    return abs(a) + b\n```"),  # add(-1, 1) fails: 2 of 3
        resp(CODE, 2, "```python\ndef add(a, b)\n    return a + b\n```"),
        resp(NO_TESTS, 0, "```python\ndef sub(a, b):\n    return a - b\n```"),
        resp(CHAT, 0, "hi"),
        resp(CHAT, 1, None, error="HTTP 503: busy"),  # a failed request is not scored
    ])
    return st


QUIET = Console(file=open("/dev/null", "w"))
VERIFIERS_ONLY = {"domains": {"math": ["math"], "code": ["code"], "instruction": []}}


def test_verifier_scores_labels_and_skips(tmp_path):
    with build_run(tmp_path) as st:
        rep = score_run(st, parse_scoring(VERIFIERS_ONLY), QUIET)
        got = {(s.scorer, s.prompt_id, s.sample_idx): (s.value, s.label) for s in st.scores()}
        assert got[("math", MATH.id, 0)] == (1.0, "correct")
        assert got[("math", MATH.id, 1)] == (1.0, "correct")   # 0.75 == 3/4
        assert got[("math", MATH.id, 2)] == (0.0, "wrong")
        assert got[("math", MATH.id, 3)][0] == 0.0              # two different boxed answers are wrong
        assert got[("math", NO_GOLD.id, 0)] == (None, "skipped")
        assert got[("code", CODE.id, 0)] == (1.0, "passed")
        assert got[("code", CODE.id, 1)] == (pytest.approx(2 / 3), "failed")
        assert got[("code", CODE.id, 2)] == (0.0, "syntax_error")
        assert got[("code", NO_TESTS.id, 0)] == (None, "skipped")
        assert len(got) == 9 and rep.new == {"math": 5, "code": 4}
        assert any("has no gold answer" in e and NO_GOLD.id[:12] in e for e in rep.errors)
        assert any("has no tests" in e for e in rep.errors)
        stats = domain_stats(st)
        assert stats["math"]["accuracy"] == pytest.approx(2 / 4) and stats["math"]["skipped"] == 1
        assert stats["code"]["accuracy"] == pytest.approx(1 / 3)
        # Re-running scores nothing new.
        again = score_run(st, parse_scoring(VERIFIERS_ONLY), QUIET)
        assert dict(again.new) == {}
        # A new response is the only thing scored next time.
        st.put_responses([resp(MATH, 4, "\\boxed{3/4}")])
        assert dict(score_run(st, parse_scoring(VERIFIERS_ONLY), QUIET).new) == {"math": 1}


def test_reward_scores_are_stored_per_response_and_resumable(tmp_path, tiny_llama):
    cfg = parse_scoring({"domains": {"math": ["reward"], "code": [], "instruction": ["reward"]},
                        "reward": {"kind": "judge", "model": str(tiny_llama)}})
    with build_run(tmp_path) as st:
        rep = score_run(st, cfg, QUIET)
        rewards = [s for s in st.scores() if s.scorer.startswith("judge:")]
        # 4 + 1 math responses and the one successful chat response
        assert len(rewards) == 6 == rep.new["reward"]
        assert all(1.0 <= s.value <= 9.0 for s in rewards)
        assert dict(score_run(st, cfg, QUIET).new) == {}


def test_bad_scoring_config():
    with pytest.raises(FusekitError, match="unknown scorer 'armo'"):
        parse_scoring({"domains": {"math": ["armo"]}})
    with pytest.raises(FusekitError, match="unknown key 'timeuot'"):
        parse_scoring({"code": {"timeuot": 3}})


def test_score_command_and_reward_model_that_will_not_load(tmp_path):
    build_run(tmp_path).close()
    (tmp_path / "r.yaml").write_text(json.dumps({
        "domains": {"math": ["embedded:math"]}, "models": [{"model": "embedded:smollm2-135m"}],
        "scoring": {**VERIFIERS_ONLY, "domains": {"math": ["math", "reward"], "code": ["code"], "instruction": []},
                    "reward": {"kind": "seqcls", "model": str(tmp_path / "no-such-rm")}}}))
    res = run_cli("score", str(tmp_path), "--recipe", str(tmp_path / "r.yaml"))
    # Verifier scores are all stored; the reward model's failure is one clear message and exit 2.
    assert res.returncode == 2, res.stderr
    assert "reward scores not computed" in res.stderr and "Traceback" not in res.stderr
    with RunStore(tmp_path) as st:
        assert len(st.scores("math")) == 5 and len(st.scores("code")) == 4
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scores"]["math"]["accuracy"] == pytest.approx(0.5)
    assert run_cli("score", str(tmp_path / "nope")).returncode == 2


def test_sandbox_command_prints_json(tmp_path):
    (tmp_path / "sol.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "t.py").write_text("assert add(1, 2) == 3\nassert add(1, 1) == 3\n")
    res = run_cli("sandbox", str(tmp_path / "sol.py"), "--tests", str(tmp_path / "t.py"), "--timeout", "10")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["status"] == "failed" and out["tests_passed"] == 1 and out["tests_total"] == 2
    assert run_cli("sandbox", str(tmp_path / "missing.py")).returncode == 2
