"""The preflight: every model a recipe names is checked before any model loads or prompt is sent.

Models here are config.json files in temporary folders (no weights: the preflight never loads one),
endpoints are SyntheticOpenAI servers on 127.0.0.1, and what only the network or a GPU can tell
(the Hub fetch, the GPU count, the disk size) is a fake passed in or patched.
"""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path

from typer.testing import CliRunner

from fusedata import preflight as pf
from fusedata import recipe as recipe_mod
from fusedata.cli import app
from tests.servers import SyntheticOpenAI


def model_folder(root: Path, name: str, arch: str, **config: object) -> str:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": "llama", **config}))
    return str(folder)


def make_recipe(tmp_path: Path, models: list[dict], reward: dict | None = None, **top: object):
    raw = {"name": "t", "out": str(tmp_path / "run"), "domains": {"math": ["embedded:math"]}, "models": models,
           "scoring": {"reward": reward or {"kind": "none"}}, **top}
    return recipe_mod.parse(raw)


def checks(problems: list[pf.Problem]) -> list[tuple[str, str, str]]:
    return [(p.model, p.role, p.check) for p in problems]


def no_fetch(repo_id: str) -> dict:
    raise AssertionError(f"the Hub was asked for {repo_id}")


def test_default_recipe_is_clean_without_loading_anything():
    assert pf.preflight(recipe_mod.load(None), fetch=no_fetch) == []


def test_references_that_do_not_resolve(tmp_path):
    (tmp_path / "empty").mkdir()
    r = make_recipe(tmp_path, [
        {"name": "gone", "model": str(tmp_path / "missing")},
        {"name": "empty", "model": str(tmp_path / "empty")},
        {"name": "typo", "model": "embedded:smollm3"},
        {"name": "gguf", "model": str(tmp_path / "x.gguf")},
        {"name": "ok", "model": "embedded:smollm2-135m"},
    ])
    problems = pf.preflight(r, fetch=no_fetch)
    assert checks(problems) == [(n, "source", "reference") for n in ("gone", "empty", "typo", "gguf")]
    assert "no config.json" in problems[1].problem and "known: embedded:smollm2-135m" in problems[2].problem


def test_architecture_must_exist_in_transformers_armorm_is_native(tmp_path):
    r = make_recipe(tmp_path, [
        {"name": "llama", "model": model_folder(tmp_path, "llama", "LlamaForCausalLM")},
        {"name": "alien", "model": model_folder(tmp_path, "alien", "AlienForCausalLM")},
    ], reward={"kind": "seqcls", "model": model_folder(tmp_path, "armo", "LlamaForRewardModelWithGating"),
               "name": "armo"})
    problems = pf.preflight(r, fetch=no_fetch)
    assert checks(problems) == [("alien", "source", "architecture")]
    assert "AlienForCausalLM" in problems[0].problem


def test_remote_code_import_error_is_the_problem(tmp_path):
    folder = model_folder(tmp_path, "custom", "CustomRM", auto_map={"AutoModelForSequenceClassification":
                                                                    "modeling_custom.CustomRM"})
    Path(folder, "modeling_custom.py").write_text("import no_such_package_xyz\n\n\nclass CustomRM:\n    pass\n")
    reward = {"kind": "seqcls", "model": folder, "name": "custom", "trust_remote_code": True}
    problems = pf.preflight(make_recipe(tmp_path, [{"model": "embedded:smollm2-135m"}], reward), fetch=no_fetch)
    assert checks(problems) == [("custom", "reward", "remote code")]
    assert "no_such_package_xyz" in problems[0].problem
    # Without trust_remote_code the class is not loadable at all: transformers has no CustomRM.
    reward["trust_remote_code"] = False
    problems = pf.preflight(make_recipe(tmp_path, [{"model": "embedded:smollm2-135m"}], reward), fetch=no_fetch)
    assert checks(problems) == [("custom", "reward", "architecture")]


def test_endpoints_must_list_the_model(tmp_path):
    with SyntheticOpenAI(("m",), judges=("j",)) as srv:
        dead = srv.url.rsplit(":", 1)[0] + ":9/v1"  # port 9 (discard): nothing listens on loopback
        r = make_recipe(tmp_path, [
            {"name": "served", "model": "m", "engine": "openai", "base_url": srv.url},
            {"name": "wrong", "model": "other", "engine": "openai", "base_url": srv.url},
            {"name": "dead", "model": "m", "engine": "openai", "base_url": dead},
        ], reward={"kind": "judge", "model": "j", "base_url": srv.url})
        problems = pf.preflight(r, fetch=no_fetch)
    assert checks(problems) == [("wrong", "source", "endpoint"), ("dead", "source", "endpoint")]
    assert "does not serve 'other'" in problems[0].problem and "m, j" in problems[0].problem
    assert srv.calls == 0  # /models only: not one chat request


def fake_python(tmp_path: Path, has_vllm: bool) -> str:
    """A stand-in for a Python: require_vllm's probe exits 0 when vLLM imports, 3 when it does not."""
    exe = tmp_path / f"python-{has_vllm}"
    exe.write_text(f"#!/bin/sh\nexit {0 if has_vllm else 3}\n")
    exe.chmod(0o755)
    return str(exe)


def vllm_model(name: str, python: str, tp: int = 1, replicas: int = 1) -> dict:
    return {"name": name, "model": "embedded:smollm2-135m", "engine": "vllm",
            "extra": {"python": python, "engine_kwargs": {"tensor_parallel_size": tp}, "ray": {"replicas": replicas}}}


def test_vllm_must_import_under_its_python(tmp_path):
    r = make_recipe(tmp_path, [vllm_model("with", fake_python(tmp_path, True)),
                               vllm_model("without", fake_python(tmp_path, False))])
    problems = pf.preflight(r, fetch=no_fetch)
    assert checks(problems) == [("without", "source", "vllm")]
    assert "cannot import" in problems[0].problem


def test_gpu_count_covers_parallel_size_times_replicas(tmp_path, monkeypatch):
    python = fake_python(tmp_path, True)
    r = make_recipe(tmp_path, [vllm_model("fits", python, tp=2), vllm_model("big", python, tp=2, replicas=2)])
    monkeypatch.setattr(pf, "gpu_count", lambda: 2)  # fake: this machine has no GPU
    problems = pf.preflight(r, fetch=no_fetch)
    assert checks(problems) == [("big", "source", "gpus")]
    assert "needs 4 GPUs" in problems[0].problem and "has 2" in problems[0].problem
    assert pf.preflight(r, cluster=True, fetch=no_fetch) == []  # Ray places replicas on other nodes
    monkeypatch.setattr(pf, "gpu_count", lambda: 0)  # no GPU: vLLM's CPU build, nothing to count
    assert pf.preflight(r, fetch=no_fetch) == []


def test_disk_must_hold_the_planned_store(tmp_path, monkeypatch):
    r = make_recipe(tmp_path, [{"name": "s", "model": "embedded:smollm2-135m"}])
    assert pf.preflight(r, fetch=no_fetch) == []
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda path: usage(1000, 1000, 1000))
    problems = pf.preflight(r, fetch=no_fetch)
    assert checks(problems) == [("(run store)", "output", "disk")]
    assert "1kB free" in problems[0].problem


def test_hub_ids_offline_are_a_note_online_use_the_fetch(tmp_path, monkeypatch):
    r = make_recipe(tmp_path, [{"name": "hub", "model": "org/model"}])
    monkeypatch.setattr(pf, "hub_offline", lambda: True)
    notes = pf.preflight(r, fetch=no_fetch)
    assert [(p.check, p.note) for p in notes] == [("reference", True)] and pf.failures(notes) == []
    # Online: a fake stands in for the Hub (tests never reach it).
    monkeypatch.setattr(pf, "hub_offline", lambda: False)
    assert pf.preflight(r, fetch=lambda repo: {"architectures": ["LlamaForCausalLM"]}) == []
    assert checks(pf.preflight(r, fetch=lambda repo: {"architectures": ["NopeModel"]})) == [
        ("hub", "source", "architecture")]

    def missing(repo: str) -> dict:
        raise OSError(f"404: {repo} not found")

    problems = pf.preflight(r, fetch=missing)
    assert checks(problems) == [("hub", "source", "reference")] and "404: org/model" in problems[0].problem


def test_build_stops_before_the_store_with_one_table(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({
        "name": "t", "out": str(tmp_path / "run"), "domains": {"math": ["embedded:math"]},
        "models": [{"name": "gone", "model": str(tmp_path / "missing")},
                   {"name": "typo", "model": "embedded:smollm3"}], "scoring": {"reward": {"kind": "none"}}}))
    for args in (["build", str(recipe), "--check"], ["build", str(recipe)]):
        res = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
        assert res.exit_code == 2, res.output
        assert "2 problem(s)" in res.output and "gone" in res.output and "typo" in res.output
        assert not (tmp_path / "run").exists()  # no store, no prompt, no model


def test_check_on_a_clean_recipe_exits_0():
    res = CliRunner().invoke(app, ["build", "--check"])
    assert res.exit_code == 0, res.output
    assert "no problems" in res.output


def test_the_target_is_checked_only_where_wrpo_samples_it(tmp_path):
    target = {"name": "tgt", "model": str(tmp_path / "missing")}
    src = [{"name": "s", "model": "embedded:smollm2-135m"}]
    wrpo = make_recipe(tmp_path, src, target=target, pairs={"method": "wrpo"})
    assert checks(pf.preflight(wrpo, fetch=no_fetch)) == [("tgt", "target", "reference")]
    assert pf.preflight(make_recipe(tmp_path, src, target=target), fetch=no_fetch) == []


def test_plan_sizes_the_store_from_output_tokens_and_generations():
    from fusedata.plan import STORE_BYTES_PER_GENERATION, STORE_BYTES_PER_TOKEN, plan_recipe

    tot = plan_recipe(recipe_mod.load(None)).totals()
    assert tot["store_bytes_worst"] == (tot["output_tokens_worst"] * STORE_BYTES_PER_TOKEN
                                        + tot["generations"] * STORE_BYTES_PER_GENERATION)
    assert tot["generations"] > 0 and tot["store_bytes"] < tot["store_bytes_worst"]
