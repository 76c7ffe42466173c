"""`fusedata plan`: prompt counts, generations, tokens and hours from a recipe, offline."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fusedata import plan as plan_mod
from fusedata import recipe
from fusedata.cli import app
from fusedata.errors import FusekitError
from fusedata.records import Response
from fusedata.sources import load_source
from fusedata.store import RunStore
from tests.conftest import REPO

FUSECHAT3 = REPO / "recipes" / "fusechat3" / "fusedata.yaml"
WRPO = REPO / "recipes" / "wrpo" / "fusedata.yaml"

# Prompts per domain from the documented table (plan.HUB_PROMPTS) and the recipe's limits.
IF = 61_135 + 98_000 + 10_162  # ultrafeedback + magpie-pro-dpo + helpsteer2
MATH = 60_000  # the recipe's math limit; OpenMathInstruct-2 has ≈600k unique problems
CODE = 2_360 + 50_000  # leetcode + sc2-exec
ZH = 42_715 + 200_000  # alpaca-gpt4-zh + magpie-qwen2-pro-zh


@pytest.fixture
def no_hub(monkeypatch):
    """Planning must never read a Hub dataset."""

    def refuse(*args, **kwargs):
        raise AssertionError("plan tried to load a Hub dataset")

    monkeypatch.setattr("fusedata.sources.hub.open_rows", refuse)


def test_hub_table_covers_every_hub_source_at_its_default_split():
    from fusedata.sources.hub import HUB_SOURCES

    assert {(s.name, s.split) for s in HUB_SOURCES} == set(plan_mod.HUB_PROMPTS)
    assert plan_mod.HUB_PROMPTS[("leetcode", "train")].prompts == 2_360  # docs/data.md#prompt-sources
    assert [plan_mod.HUB_PROMPTS[k].prompts for k in (("ultrafeedback", "train_prefs"), ("magpie-pro-dpo", "train"),
                                                      ("helpsteer2", "train"))] == [61_135, 98_000, 10_162]


def test_fusechat3_recipe_plans_offline_from_the_documented_counts(no_hub, tmp_path):
    """Without the recipe's domain limits every prompt of the sources is planned (math keeps its 60k cap)."""
    r = recipe.load(FUSECHAT3)
    r = dataclasses.replace(r, domains={d: dataclasses.replace(s, limit=60_000 if d == "math" else None)
                                        for d, s in r.domains.items()})
    p = plan_mod.plan_recipe(r, store_folder=tmp_path)
    assert {d: c.prompts for d, c in p.domains.items()} == {"instruction": IF, "math": MATH, "code": CODE, "zh": ZH}
    assert not any(c.exact for c in p.domains.values())
    gens = {m.name: m.total_generations for m in p.models}
    # IF 5 and code 8 samples per prompt (docs/data.md#sampling-per-source-model)
    per_source = IF * 5 + CODE * 8
    assert gens == {"gemma-2-27b-it": per_source, "mistral-large-2407": per_source,
                    "llama-3.1-70b-instruct": per_source, "qwen-2.5-72b-instruct": per_source + ZH * 1,
                    "qwen-2.5-math-72b-instruct": MATH * 5}
    assert p.totals()["generations"] == 4 * per_source + ZH + MATH * 5 == 5_604_175
    # Expected output = generations × max_tokens × fill; worst case every response hits max_tokens.
    assert p.totals()["output_tokens"] == 5_604_175 * 4096 // 2
    assert p.totals()["output_tokens_worst"] == 5_604_175 * 4096
    llama = next(m for m in p.models if m.name == "llama-3.1-70b-instruct")
    assert (llama.units_per_replica, llama.rate.tokens_per_s, llama.rate.source) == (4, 2000, "default")
    assert llama.hours == pytest.approx(per_source * 2048 / 2000 / 3600 * 4)
    assert llama.input_tokens == IF * 200 + CODE * 400
    assert p.scoring is not None and p.scoring.items == 5_604_175 and p.scoring.device == "gpu"


def test_fusechat3_with_the_papers_retained_prompts_gives_the_documented_volume(no_hub, tmp_path):
    """The shipped recipe limits each domain to the prompts FuseChat-3.0 kept (docs/data.md#throughput-planning):
    IF 80,907 × 4 × 5 ≈ 1.62M, code 16,005 × 4 × 8 ≈ 0.51M, maths 51,803 × 5, zh ≈10k."""
    r = recipe.load(FUSECHAT3)
    kept = {"instruction": 80_907, "math": 51_803, "code": 16_005, "zh": 10_000}
    assert {d: s.limit for d, s in r.domains.items()} == kept
    p = plan_mod.plan_recipe(r, store_folder=tmp_path)
    by_domain = {d: sum(m.generations.get(d, 0) for m in p.models) for d in kept}
    assert by_domain == {"instruction": 80_907 * 4 * 5, "code": 16_005 * 4 * 8, "math": 51_803 * 5, "zh": 10_000}
    assert by_domain["instruction"] == 1_618_140 and by_domain["code"] == 512_160
    assert p.totals()["generations"] == 2_399_315


def test_embedded_default_recipe_counts_the_shipped_prompts(tmp_path):
    r = recipe.load()
    p = plan_mod.plan_recipe(r, store_folder=tmp_path)
    shipped = {d: len(load_source(f"embedded:{d}")) for d in r.domains}
    expected = {d: min(shipped[d], spec.limit) for d, spec in r.domains.items()}
    assert {d: c.prompts for d, c in p.domains.items()} == expected
    assert all(c.exact for c in p.domains.values())
    for spec, m in zip(r.models, p.models):
        assert m.generations == {d: expected[d] * spec.n_for(d) for d in r.domains if spec.serves(d)}
        assert m.device == "cpu"
    # The default recipe builds fusechat3 pairs, so its target samples nothing.
    assert [m.role for m in p.models] == ["source", "source"]
    assert p.totals()["gpu_hours"] == 0 and p.totals()["cpu_hours"] > 0


def test_tokens_per_s_override_gives_the_formulas_hours(no_hub, tmp_path):
    r = recipe.load(WRPO)
    base = plan_mod.plan_recipe(r, store_folder=tmp_path)
    fast = plan_mod.plan_recipe(r, store_folder=tmp_path, tokens_per_s={"llama-3-70b-instruct": 4000.0})
    m = next(x for x in fast.models if x.name == "llama-3-70b-instruct")
    assert m.rate.source == "--tokens-per-s"
    # GPU-hours = output tokens / (tokens/s per replica) / 3600 × GPUs per replica (TP 4 for 70B).
    assert m.hours == pytest.approx(m.output_tokens / 4000 / 3600 * 4)
    assert m.wall_hours == pytest.approx(m.output_tokens / 4000 / 3600)
    before = next(x for x in base.models if x.name == "llama-3-70b-instruct")
    assert m.hours == pytest.approx(before.hours / 2)  # the default is 2,000 tok/s per replica
    others = [(x.name, x.hours) for x in fast.models if x.name != m.name]
    assert others == [(x.name, x.hours) for x in base.models if x.name != m.name]


def test_devices_and_replicas_come_from_extra(tmp_path):
    r = recipe.parse({
        "domains": {"math": ["embedded:math"]},
        "models": [{"name": "big", "model": "org/Some-70B", "engine": "vllm", "sampling": {"n": 4, "max_tokens": 1000},
                    "extra": {"engine_kwargs": {"tensor_parallel_size": 2}, "ray": {"replicas": 3}}}],
    })
    p = plan_mod.plan_recipe(r, store_folder=tmp_path, fill=0.25, tokens_per_s={"big": 500.0})
    m = p.models[0]
    assert m.total_generations == 38 * 4 and m.output_tokens == 38 * 4 * 250
    assert (m.units_per_replica, m.replicas) == (2, 3)
    assert m.hours == pytest.approx(38 * 4 * 250 / 500 / 3600 * 2)
    assert m.wall_hours == pytest.approx(m.hours / (3 * 2))


def _store_with(folder, model: str, n: int, tokens: int, seconds: float) -> None:
    with RunStore(folder) as store:
        store.put_responses([Response(f"{i:064x}", model, "h", 0, "x", "stop", 10, tokens, None, seconds)
                             for i in range(n)])


def test_a_previous_runs_store_gives_the_measured_rate(tmp_path):
    r = recipe.load()
    _store_with(tmp_path, "smollm2-135m", 10, 100, 0.5)  # 1,000 tokens in 5 s of batch time
    p = plan_mod.plan_recipe(r, store_folder=tmp_path)
    m = next(x for x in p.models if x.name == "smollm2-135m")
    assert (m.rate.source, m.rate.tokens_per_s) == ("measured", pytest.approx(200.0))
    assert m.hours == pytest.approx(m.output_tokens / 200 / 3600)
    assert next(x for x in p.models if x.name == "gemma3-270m").rate.source == "default"
    # An explicit rate wins over the measured one.
    again = plan_mod.plan_recipe(r, store_folder=tmp_path, tokens_per_s={"smollm2-135m": 50.0})
    assert next(x for x in again.models if x.name == "smollm2-135m").rate.tokens_per_s == 50.0


def test_an_endpoints_measured_rate_counts_the_requests_in_flight(tmp_path):
    r = recipe.parse({"domains": {"math": ["embedded:math"]},
                      "models": [{"name": "served", "model": "m-8b", "engine": "openai", "base_url": "http://h/v1",
                                  "concurrency": 8}]})
    _store_with(tmp_path, "served", 10, 100, 0.5)  # per-request latencies: one stream at 200 tok/s
    m = plan_mod.plan_recipe(r, store_folder=tmp_path).models[0]
    assert m.rate.tokens_per_s == pytest.approx(200.0 * 8)


def test_wrpo_recipe_adds_the_targets_samples_on_the_preference_split(no_hub, tmp_path):
    p = plan_mod.plan_recipe(recipe.load(WRPO), store_folder=tmp_path)
    target = p.models[-1]
    assert (target.name, target.role) == ("llama-3-8b-instruct", "target")
    assert target.prompts == {"instruction": round(61_135 * 2 / 3)} == {"instruction": 40_757}
    assert target.total_generations == 40_757 * 5
    assert p.totals()["generations"] == 4 * 61_135 * 5 + 40_757 * 5 == 1_426_485


@pytest.mark.parametrize("text, size", [("meta-llama/Llama-3.1-70B-Instruct", 70), ("google/gemma-2-27b-it", 27),
                                        ("embedded:smollm2-135m", 0.135),
                                        ("mistralai/Mistral-Large-Instruct-2407", 123),
                                        ("Qwen/Qwen2.5-Math-72B-Instruct", 72), ("runs/fc3-sft", None)])
def test_model_size_from_the_name(text, size):
    assert plan_mod.model_size_b(text) == size


@pytest.mark.parametrize("value", ["gemma", "=5", "gemma=fast", "gemma=0", "gemma=-3", "gemma=nan"])
def test_malformed_assignments_are_user_errors(value):
    with pytest.raises(FusekitError):
        plan_mod.parse_assignments([value], "--tokens-per-s")


def test_cli_prints_the_tables_and_json(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["plan", str(WRPO), "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("fusedata plan — prompts (wrpo)", "fusedata plan — generation", "llama-3-8b-instruct", "1,426,485",
                 "GPU-h"):
        assert text in res.stdout
    res = runner.invoke(app, ["plan", str(WRPO), "--out", str(tmp_path), "--json", "--fill", "0.25",
                              "--tokens-per-s", "gemma-2-27b-it=1000"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["totals"]["generations"] == 1_426_485 and data["fill"] == 0.25
    gemma = next(m for m in data["models"] if m["name"] == "gemma-2-27b-it")
    assert gemma["rate"]["source"] == "--tokens-per-s"
    assert gemma["hours"] == pytest.approx(305_675 * 4096 * 0.25 / 1000 / 3600 * 2)


def test_cli_limit_flag_plans_what_build_would_do(tmp_path):
    res = CliRunner().invoke(app, ["plan", str(FUSECHAT3), "--out", str(tmp_path), "--json", "--limit", "1000"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {d: c["prompts"] for d, c in data["domains"].items()} == \
        {d: 1000 for d in ("instruction", "math", "code", "zh")}
    assert data["totals"]["generations"] == 4 * (1000 * 5 + 1000 * 8) + 1000 + 1000 * 5


def test_bad_input_exits_2_with_one_line(tmp_path):
    env = dict(os.environ, COLUMNS="300")
    cases = {
        "missing recipe": (["plan", str(tmp_path / "nope.yaml")], "recipe file not found"),
        "malformed rate": (["plan", str(WRPO), "--tokens-per-s", "gemma-2-27b-it"], "expected NAME=NUMBER"),
        "unknown model": (["plan", str(WRPO), "--tokens-per-s", "gpt-9=100"], "unknown name 'gpt-9'"),
        "bad fill": (["plan", str(WRPO), "--fill", "1.5"], "--fill must be in (0, 1]"),
    }
    for name, (args, message) in cases.items():
        res = subprocess.run([sys.executable, "-m", "fusedata", *args], capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=120)
        assert res.returncode == 2, (name, res.stderr)
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, (name, res.stderr)
        assert res.stdout == "", name
