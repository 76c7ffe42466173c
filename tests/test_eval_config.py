"""The ``evals run`` recipe: typed, checked whole before anything loads, flags as shortcuts for its keys;
the bench registry; the CLI's choices, --version and bad-input exits."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.benches import get_bench
from evals.benches.registry import REGISTRY
from evals.cli import app
from evals.config import load, model_entry
from evals.records import BENCHES
from fusedata.errors import FusekitError

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "evals.yaml"
DEMO_FLAGS = {"bench": "mt-bench", "limit": 4, "models": ["base=embedded:smollm2-135m", "wrpo=runs/demo/model"],
              "judge.model": "embedded:smollm2-135m", "judge.prefill": "Rating: [[", "judge.max_tokens": 16,
              "out": "runs/demo/evals"}


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_demo_recipe_is_the_demo_flags():
    from_file = load(DEMO)
    from_flags = load(None, [], DEMO_FLAGS, {"max_tokens": 128})
    assert from_file == from_flags
    assert [m.name for m in from_file.eval_models()] == ["base", "wrpo"]
    hashes = [m.settings_hash("mt-bench") for m in from_file.eval_models()]
    assert hashes == [m.settings_hash("mt-bench") for m in from_flags.eval_models()]
    assert from_file.judge.record() == {"model": "embedded:smollm2-135m", "base_url": None, "api_key_env": None,
                                        "concurrency": None, "timeout": None, "max_retries": None, "rpm": None,
                                        "batch_size": 4, "max_tokens": 16, "prefill": "Rating: [[",
                                        "kind": "transformers", "routed": "in-process"}


def test_overrides_and_flags_set_the_same_keys():
    cfg = load(DEMO, ["limit=2", "models.1.max_tokens=64", "judge.max_tokens=8"])
    assert (cfg.limit, cfg.models[1].max_tokens, cfg.models[0].max_tokens, cfg.judge.max_tokens) == (2, 64, 128, 8)
    # A flag wins over an override of its key, as in the trainer's CLI.
    assert load(DEMO, ["limit=2"], {"limit": 3}).limit == 3
    # A flag's text is taken as given, not parsed as YAML.
    cfg = load(DEMO, [], {}, {"system_prompt": "yes"})
    assert [m.system_prompt for m in cfg.models] == ["yes", "yes"]


def test_per_model_flags_and_served_models():
    cfg = load(None, [], {"bench": "mt-bench", "models": ["a=served-a", "b=served-b"], "judge.concurrency": 2},
               {"base_url": "http://127.0.0.1:9/v1", "concurrency": 2, "temperature": 0.0})
    served = cfg.eval_models()
    assert [(m.name, m.engine.engine, m.engine.endpoint.base_url, m.engine.endpoint.model,
             m.engine.endpoint.concurrency, m.temperature) for m in served] == [
        ("a", "openai", "http://127.0.0.1:9/v1", "served-a", 2, 0.0),
        ("b", "openai", "http://127.0.0.1:9/v1", "served-b", 2, 0.0)]
    assert served[0].engine.chunk_size == 8 and cfg.judge.settings().endpoint is None
    # --concurrency is the endpoints' setting: an in-process model keeps none and is not refused.
    local = load(None, [], {"bench": "mt-bench", "judge.concurrency": 3}, {"concurrency": 3}).eval_models()
    assert [(m.name, m.engine.engine, m.engine.endpoint) for m in local] == [("smollm2-135m", "transformers", None)]
    judge = load(None, [], {"bench": "mt-bench", "judge.base_url": "http://127.0.0.1:9/v1",
                            "judge.model": "gpt-4.1", "judge.api_key_env": "MY_KEY"}).judge.settings()
    assert (judge.model, judge.endpoint.base_url, judge.endpoint.model, judge.endpoint.api_key_env,
            judge.endpoint.timeout) == ("gpt-4.1", "http://127.0.0.1:9/v1", "gpt-4.1", "MY_KEY", 300.0)


def test_model_entries():
    assert model_entry("base=embedded:smollm2-135m") == {"name": "base", "model": "embedded:smollm2-135m"}
    assert model_entry("./runs/a=b/model") == {"model": "./runs/a=b/model"}
    assert model_entry(" runs/x/ ") == {"model": "runs/x/"}
    with pytest.raises(FusekitError, match="empty model reference"):
        model_entry("name=")
    names = [m.name for m in load(None, [], {"bench": "mt-bench",
                                             "models": ["embedded:smollm2-135m", "runs/x/", "w=runs/y"]}).eval_models()]
    assert names == ["smollm2-135m", "x", "w"]


@pytest.mark.parametrize("overrides,message", [
    (["limitt=3"], "unknown key 'limitt' (did you mean 'limit'?)"),
    (["models.0.engin=vllm"], "recipe.models[0]: unknown key 'engin' (did you mean 'engine'?)"),
    (["judge.prefil=x"], "recipe.judge: unknown key 'prefil' (did you mean 'prefill'?)"),
    (["bench=mt-bnch"], "unknown bench 'mt-bnch' (did you mean 'mt-bench'?)"),
    (["mode=pair"], "mode: unknown value 'pair' (did you mean 'pairwise'?)"),
    (["categories=[maths]"], "unknown category 'maths' (did you mean 'math'?)"),
    (["source=hubb"], "unknown source 'hubb' (did you mean 'hub'?)"),
    (["reference=gpt-5"], "unknown reference 'gpt-5'"),
    (["limit=0"], "limit must be at least 1, got 0"),
    (["limit=four"], "limit: expected int, got 'four'"),
    (["models.0.engine=vlm"], "models[0].engine: unknown value 'vlm' (did you mean 'vllm'?)"),
    (["models.0.max_tokens=0"], "models[0].max_tokens must be at least 1"),
    (["models.0.temperature=-1"], "models[0].temperature must be >= 0"),
    (["models.0.engine=openai"], "engine 'openai' needs base_url"),
    (["models.0.timeout=5"], "timeout: for engine 'openai' only"),
    (["models.1.name=base"], "model names must be unique"),
    (["judge.base_url=http://127.0.0.1:9/v1"], "needs an in-process judge"),
    (["judge.timeout=0"], "judge.timeout must be a positive number of seconds"),
    (["prompt=single-v9"], "unknown judge prompt 'single-v9' (did you mean 'single-v1'?)"),
    (["mode=pairwise"], "needs baseline_model (--baseline-model NAME)"),
    (["bench=arena-hard-v2.0", "mode=pairwise", "baseline_model=base"], "mode pairwise (--mode) is MT-Bench's"),
    (["lc_inputs=/nonexistent/lc"], "/nonexistent/lc: no such folder"),
    (["models=[]"], "models is empty"),
])
def test_every_typo_is_refused_before_anything_runs(tmp_path, overrides, message):
    with pytest.raises(FusekitError) as err:
        load(DEMO, [*overrides, f"out={tmp_path / 'run'}"])
    assert message in str(err.value)
    r = cli("run", str(DEMO), *overrides, f"out={tmp_path / 'run'}")
    assert r.exit_code == 2 and message in " ".join(r.output.split()) and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_missing_bench_and_recipe_file(tmp_path):
    with pytest.raises(FusekitError, match="no bench; set bench"):
        load(None)
    r = cli("run", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 2 and "recipe file not found" in r.output
    # Without a file, leading key=value arguments are overrides.
    r = cli("run", "bench=mt-bench", "limit=0")
    assert r.exit_code == 2 and "limit must be at least 1" in r.output


def test_lc_inputs_folder_must_exist_and_hold_both_files(tmp_path):
    r = cli("score", str(tmp_path), "--lc-inputs", "/nonexistent")
    assert r.exit_code == 2 and "/nonexistent" in r.output and "Traceback" not in r.output
    (tmp_path / "lc").mkdir()
    (tmp_path / "lc" / "instruction_difficulty.csv").write_text("instruction,instruction_difficulty\n")
    r = cli("score", str(tmp_path), "--lc-inputs", str(tmp_path / "lc"))
    assert r.exit_code == 2 and "df_gamed.csv" in r.output
    r = cli("run", "--bench", "alpaca-eval", "--lc-inputs", "/nonexistent", "--out", str(tmp_path / "run"))
    assert r.exit_code == 2 and "/nonexistent" in r.output and not (tmp_path / "run").exists()


def test_cli_lists_choices_and_version():
    r = cli("--version")
    assert r.exit_code == 0 and r.output.strip() == f"evals {version('fusekit')}"
    text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "300"}).output
    for choices in ("mt-bench|arena-hard-v0.1|arena-hard-v2.0|alpaca-eval", "single|pairwise", "auto|package|hub",
                    "transformers|vllm|openai", "gpt-4|gpt-4-0125-preview"):
        assert choices in text, choices
    assert any("--out " in line and " -o " in line for line in text.splitlines())
    r = cli("run", "--bench", "mt-bnch")
    assert r.exit_code == 2 and "mt-bench" in r.output and "Traceback" not in r.output
    assert r.output.startswith("error:") and "Usage:" not in r.output  # one message, no usage box


def test_registry_is_the_bench_list():
    assert tuple(REGISTRY) == BENCHES
    mt, v01, v2, alpaca = (get_bench(b) for b in BENCHES)
    assert (mt.balanced_limit, mt.pairwise_mode, mt.references) == (True, True, ("gpt-4", "gpt-4-0125-preview"))
    assert not (v01.pairwise_mode or v2.pairwise_mode or alpaca.pairwise_mode)
    assert [b.logprob_judge for b in (mt, v01, v2, alpaca)] == [False, False, False, True]
    with pytest.raises(FusekitError, match=r"unknown bench 'alpaca' \(did you mean 'alpaca-eval'\?\)"):
        get_bench("alpaca")
