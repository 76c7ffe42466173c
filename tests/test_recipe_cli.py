"""The recipe is checked whole before anything runs: every typo, in any block, is one `error:` line
with exit code 2 within 2 seconds and leaves no run folder; dotted overrides and the shortcut flags
are checked the same way; the CLIs' shared conventions (--version, repeatable --model, choices)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fusedata.cli import app
from tests.test_build import run_cli
from trainer.cli import app as trainer_app

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "fusedata.yaml"


def flat(text: str) -> str:
    """Rich wraps long lines at the console width; one logical line is what counts."""
    return re.sub(r"\s+", " ", text).strip()


def invoke(*args: str, cli=app) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, list(args), env={"COLUMNS": "400"})
    return res.exit_code, res.output, time.perf_counter() - t0


@pytest.fixture()
def demo_copy(tmp_path) -> Path:
    """The demo recipe writing into tmp_path/run, which no failed check may create."""
    raw = yaml.safe_load(DEMO.read_text())
    raw["out"] = str(tmp_path / "run")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("override, message", [
    ("models.0.sampling.temprature=1", "models[0].sampling: unknown key 'temprature' (did you mean 'temperature'?)"),
    ("models.1.engine=vlm", "models[1].engine: unknown engine 'vlm' (did you mean 'vllm'?)"),
    ("models.0.n_per_domain={mth: 3}", "models[0].n_per_domain: unknown domain 'mth' (did you mean 'math'?)"),
    ("models.0.timeout=5", "timeout only apply to engine 'openai'"),
    ("target.sampling.n=0", "target.sampling: need n >= 1"),
    ("domains.math.sources=[embeded:math]", "unknown prompt source 'embeded:math' (did you mean 'embedded:math'?)"),
    ("domains.math.sources=[embedded:code]", "source 'embedded:code' gives code prompts, listed under domain 'math'"),
    ("domains.code.limit=0", "domains.code.limit must be >= 1, got 0"),
    ("domains.mth={sources: [embedded:math]}", "unknown domain 'mth' (did you mean 'math'?)"),
    ("scoring.domains.math=[math, rewrd]", "scoring.domains.math: unknown scorer 'rewrd' (did you mean 'reward'?)"),
    ("scoring.math.timeuot=3", "scoring.math: unknown key 'timeuot' (did you mean 'timeout'?)"),
    ("scoring.reward.kind=sqcls", "scoring.reward: unknown reward kind 'sqcls'"),
    ("scoring.reward.batch_sise=4", "unknown key 'batch_sise'"),
    ("pairs.metod=wrpo", "pairs: unknown key 'metod' (did you mean 'method'?)"),
    ("pairs.method=wrp", "unknown pair method 'wrp' (did you mean 'wrpo'?)"),
    ("pairs.pick=largest", "pairs.pick: unknown value 'largest' (did you mean 'largest_gap'?)"),
    ("pairs.test_fraction=1.5", "pairs.test_fraction must be in [0, 1)"),
    ("pairs.gap=[0.5, 0.1]", "a gap window is [low, high] with low <= high"),
    ("targte={model: x}", "unknown key 'targte' (did you mean 'target'?)"),
])
def test_a_typo_anywhere_is_exit_2_in_one_line_before_anything_runs(demo_copy, tmp_path, override, message):
    code, out, seconds = invoke("build", str(demo_copy), override)
    assert code == 2, out
    assert out.startswith("error: recipe") and message in flat(out), out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
    assert seconds < 2.0
    assert not (tmp_path / "run").exists()


def test_a_wrpo_recipe_without_a_target_is_refused_at_load(demo_copy, tmp_path):
    raw = yaml.safe_load(demo_copy.read_text())
    del raw["target"]
    demo_copy.write_text(yaml.safe_dump(raw))
    code, out, _ = invoke("build", str(demo_copy))
    assert code == 2 and "pairs.method 'wrpo' needs a 'target' model" in flat(out)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["build", "--limit", "-1"], "--limit must be >= 1, got -1"),
    (["build", "--n", "0"], "--n must be >= 1, got 0"),
    (["build", "--model", "smollm"], "unknown model 'smollm' (did you mean 'smollm2-135m'?)"),
    (["build", "--domains", "math,physics"], "unknown domain 'physics'"),
    (["build", str(DEMO), "pairs.seed"], "override 'pairs.seed': expected key=value"),
    (["pairs", "/nonexistent", "--method", "dpo"], "Invalid value for '--method'"),
    (["sandbox", __file__, "--timeout", "-5"], "--timeout must be a positive number of seconds, got -5.0"),
    (["sandbox", __file__, "--memory-mb", "0"], "--memory-mb must be >= 1, got 0"),
    (["buidl"], "No such command 'buidl'"),
])
def test_bad_flags_are_exit_2_in_one_line(args, message):
    code, out, _ = invoke(*args)
    assert code == 2, out
    assert message in flat(out) and len(out.strip().splitlines()) == 1, out


def test_a_real_process_exits_2_with_one_line_for_a_typo(demo_copy, tmp_path):
    res = run_cli("build", str(demo_copy), "pairs.metod=wrpo", timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert flat(res.stderr) == "error: recipe: pairs: unknown key 'metod' (did you mean 'method'?)"
    assert not (tmp_path / "run").exists()


def _plan(*args: str) -> dict:
    code, out, _ = invoke("plan", *args, "--json")
    assert code == 0, out
    return json.loads(out[out.index("{"):])


def test_overrides_and_flags_reach_the_recipe(tmp_path):
    base = _plan(str(DEMO), "--out", str(tmp_path))
    more = _plan(str(DEMO), "models.0.sampling.n=4", "-o", str(tmp_path))
    counts = {p["name"]: p["generations"] for p in base["models"]}
    assert {p["name"]: p["generations"] for p in more["models"]}["smollm2-135m"] == \
        {d: 2 * n for d, n in counts["smollm2-135m"].items()}
    # An override in place of the recipe applies to the embedded default.
    default = _plan("models.0.sampling.n=1", "--out", str(tmp_path))
    assert {d: n for d, n in default["models"][0]["generations"].items()} == default["models"][0]["prompts"]
    # --model takes a comma list or repeats.
    one = _plan(str(DEMO), "--model", "smollm2-135m,gemma3-270m", "--out", str(tmp_path))
    two = _plan(str(DEMO), "--model", "smollm2-135m", "--model", "gemma3-270m", "--out", str(tmp_path))
    assert one == two and [m["name"] for m in one["models"]][:2] == ["smollm2-135m", "gemma3-270m"]


@pytest.mark.parametrize("cli, prog", [(app, "fusedata"), (trainer_app, "trainer")])
def test_version(cli, prog):
    from importlib.metadata import version

    code, out, _ = invoke("--version", cli=cli)
    assert code == 0 and out.strip() == f"{prog} {version('fusekit')}"


def test_help_lists_the_choices():
    code, out, _ = invoke("pairs", "--help")
    assert code == 0 and "fusechat3|wrpo|fuserl" in out.replace(" ", "")
