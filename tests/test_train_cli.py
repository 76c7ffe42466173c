"""The ``trainer`` command line's contract, end to end on a tiny random Llama.

Every packaged recipe parses and is listed; bad input stops before any model loads with
exit 2 and one message naming the problem; ``--dry-run`` plans without writing a model;
a short real run of every method leaves a complete, reloadable model folder whose
metrics carry the method's keys; LoRA runs merge into a plain model or save an adapter.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.fixtures.train_data import rows_for, write_jsonl
from trainer import config
from trainer.cli import app
from trainer.losses import alpha_at

torch.set_num_threads(1)

RECIPES = sorted(config.RECIPES_DIR.glob("*.yaml"))
METHOD_KEYS = {
    "sft": {"nll", "logps/response"},
    "fusesft": {"nll", "logps/response"},
    "dpo": {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected"},
    "simpo": {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"},
    "wrpo": {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "rewards/source_chosen",
             "rewards/target_chosen", "rewards/source_accuracies", "rewards/pivot_accuracies", "alpha",
             "logps/source_chosen", "logps/target_chosen", "logps/rejected"},
    "fusepo": {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"},
    "rloo": {"reward", "advantage_abs", "logps/response"},
}
STEPS = 3


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # A precomputed reference from another run must never be read back here.
    monkeypatch.setenv("FUSEKIT_CACHE", str(tmp_path / "cache"))


def flat(text: str) -> str:
    """Whitespace removed: rich wraps error lines at the console width, anywhere in a path."""
    return re.sub(r"\s+", "", text)


def invoke(*args: object, code: int = 0, columns: int = 400) -> str:
    """Run ``trainer ARGS`` in process; assert the exit code and that no traceback leaked out."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})
    out = result.output
    crashed = result.exception if not isinstance(result.exception, SystemExit) else None
    assert crashed is None, f"unexpected {type(crashed).__name__}: {crashed}\n{out}"
    assert result.exit_code == code, out
    assert "Traceback" not in out
    return out


def recipe(tmp_path: Path, tiny: Path, method: str, rows: Path, **sections) -> Path:
    """A small recipe file for the tiny model; ``sections`` update its sections."""
    raw = {"method": method, "model": {"name": str(tiny)},
           "data": {"path": str(rows), "max_length": 96, "max_prompt_length": 48},
           "train": {"max_steps": STEPS, "batch_size": 2, "grad_accum": 1, "lr": 1e-3, "warmup_ratio": 0.0},
           "output": {"dir": str(tmp_path / "out"), "tensorboard": False}}
    for sect, vals in sections.items():
        if isinstance(raw.get(sect), dict):
            raw[sect].update(vals)
        else:
            raw[sect] = vals
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def data_for(tmp_path: Path, method: str, n: int = 6) -> Path:
    return write_jsonl(rows_for(method, n), tmp_path / f"{method}.jsonl")


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- packaged recipes


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_packaged_recipe_parses_and_says_what_it_is(path):
    cfg = config.load(path.stem)
    text = path.read_text()
    assert text.startswith("# ") and len(text.splitlines()[0]) > 20
    assert cfg.method in config.METHODS and cfg.data.path


def test_the_expected_recipes_are_packaged():
    names = {p.stem for p in RECIPES}
    assert {"wrpo-llama3-8b", "fusechat3-dpo-llama3.1-8b", "fusechat3-dpo-qwen2.5-7b", "fusechat3-dpo-gemma2-9b",
            "fusechat3-dpo-llama3.2-3b", "fusechat3-sft-llama3.1-8b", "fuserl-fusesft", "fuserl-fusepo-dpo",
            "wrpo-smollm2-cpu", "dpo-smollm2-cpu", "sft-smollm2-cpu"} <= names


def test_paper_recipes_hold_the_published_numbers():
    w = config.load("wrpo-llama3-8b")
    assert (w.method, w.loss.beta, w.loss.alpha, w.loss.alpha_schedule, w.loss.normalize) == \
        ("wrpo", 0.01, 0.1, "linear", "sum")
    assert (w.train.lr, w.train.scheduler, w.train.warmup_ratio, w.train.epochs) == (3e-7, "cosine", 0.1, 1.0)
    # Per-device values; 8 processes make the paper's global batch of 128.
    assert w.train.batch_size * w.train.grad_accum * 8 == 128
    assert (w.data.max_length, w.data.max_prompt_length) == (2048, 1800)
    assert (w.reference_mode, w.model.precision, w.model.gradient_checkpointing, w.train.distributed) == \
        ("precompute", "auto", True, "fsdp2")
    dpo = {"llama3.1-8b": ("mean", 10.0, 8e-7), "qwen2.5-7b": ("sum", 0.01, 3e-7),
           "gemma2-9b": ("sum", 0.01, 5e-7), "llama3.2-3b": ("mean", 10.0, 1e-6)}
    for target, (norm, beta, lr) in dpo.items():
        c = config.load(f"fusechat3-dpo-{target}")
        assert (c.method, c.loss.normalize, c.loss.beta, c.train.lr) == ("dpo", norm, beta, lr), target
        assert (c.train.epochs, c.train.batch_size * c.train.grad_accum * 8, c.data.max_length) == (1.0, 128, 2048)
        assert (c.train.scheduler, c.train.warmup_ratio) == ("cosine", 0.1)
    s = config.load("fusechat3-sft-llama3.1-8b")
    assert (s.method, s.train.epochs, s.train.lr, s.train.batch_size * s.train.grad_accum * 8, s.data.max_length,
            s.train.scheduler, s.train.warmup_ratio) == ("sft", 3.0, 5e-6, 128, 2048, "cosine", 0.1)
    for name in ("fuserl-fusesft", "fuserl-fusepo-dpo"):
        assert "reconstructed" in (config.RECIPES_DIR / f"{name}.yaml").read_text().splitlines()[0].lower()


def test_recipes_command_lists_every_packaged_recipe_with_its_description():
    out = invoke("recipes")
    for path in RECIPES:
        assert path.stem in out
        assert path.read_text().splitlines()[0].lstrip("# ").strip()[:40] in out


def test_recipes_command_keeps_names_whole_at_80_columns():
    # `trainer recipes | cat` gets 80 columns: three recipes printed as 'fusechat3-dpo-llama…'
    # cannot be told apart or copied into `trainer train`.
    out = invoke("recipes", columns=80)
    assert all(path.stem in out for path in RECIPES)


# --------------------------------------------------------------------------- bad input: exit 2 before training


def refused(tmp_path: Path, *args: object, says: list[str]) -> str:
    out = invoke("train", *args, code=2)
    assert out.count("error:") == 1, out
    for phrase in says:
        assert flat(phrase) in flat(out), f"{phrase!r} not in {out!r}"
    # Nothing was written: the run stopped before any model loaded.
    assert not (tmp_path / "out").exists()
    return out


def test_missing_column_is_named(tiny_llama, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "rejected"} for r in rows_for("dpo", 4)]
    data = write_jsonl(rows, tmp_path / "no_rejected.jsonl")
    refused(tmp_path, recipe(tmp_path, tiny_llama, "dpo", data), says=["method dpo needs column(s) rejected"])


def test_prompt_budget_that_would_empty_responses_is_refused(tiny_llama, tmp_path):
    # truncate() keeps max_prompt_length prompt tokens and always leaves responses
    # max_length - max_prompt_length >= 1 tokens, so with a valid config no response can
    # truncate to nothing; the configuration that would is what validation refuses.
    r = recipe(tmp_path, tiny_llama, "dpo", data_for(tmp_path, "dpo"), data={"max_length": 64})
    refused(tmp_path, r, "data.max_prompt_length=64",
            says=["data.max_prompt_length (64) must be smaller than data.max_length (64)"])


def test_zero_prompt_budget_is_refused_by_validation(tiny_llama, tmp_path):
    """``max_prompt_length: 0`` would make truncate()'s ``prompt[-0:]`` keep the WHOLE prompt."""
    r = recipe(tmp_path, tiny_llama, "dpo", data_for(tmp_path, "dpo"))
    refused(tmp_path, r, "data.max_prompt_length=0", "--dry-run", says=["data.max_prompt_length"])


def test_zero_prompt_budget_with_a_long_prompt_stops_before_training(tiny_llama, tmp_path):
    # Today this is the one way into tokenize()'s "a response truncates to nothing" branch
    # (prompt[-0:] keeps the whole long prompt, leaving no room); once validation refuses 0
    # it is stopped earlier. Either way: exit 2, one message naming the knob to change.
    rows = rows_for("dpo", 2)
    rows[1]["prompt"] = [{"role": "user", "content": "the answer is 12 " * 40}]
    data = write_jsonl(rows, tmp_path / "long_prompt.jsonl")
    refused(tmp_path, recipe(tmp_path, tiny_llama, "dpo", data), "data.max_prompt_length=0",
            says=["data.max_prompt_length"])


def test_unknown_method_gets_a_did_you_mean(tiny_llama, tmp_path):
    r = recipe(tmp_path, tiny_llama, "wrpo", data_for(tmp_path, "wrpo"))
    refused(tmp_path, r, "method=wrp0", says=["method: unknown value 'wrp0' (did you mean 'wrpo'?)"])


def test_recipe_key_typo_gets_a_did_you_mean(tiny_llama, tmp_path):
    r = recipe(tmp_path, tiny_llama, "dpo", data_for(tmp_path, "dpo"), loss={"betta": 0.1})
    refused(tmp_path, r, says=["loss: unknown key 'betta' (did you mean 'beta'?)"])


def test_malformed_yaml_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: dpo\nloss: {beta: 0.1\n")
    refused(tmp_path, bad, says=[f"{bad}: not valid YAML"])


def test_override_without_equals_is_refused(tiny_llama, tmp_path):
    r = recipe(tmp_path, tiny_llama, "dpo", data_for(tmp_path, "dpo"))
    refused(tmp_path, r, "loss.beta", says=["override 'loss.beta': expected key=value"])


def test_missing_dataset_is_named(tiny_llama, tmp_path):
    r = recipe(tmp_path, tiny_llama, "dpo", data_for(tmp_path, "dpo"))
    missing = tmp_path / "nowhere" / "pairs.jsonl"
    refused(tmp_path, r, "--data", missing, says=[f"dataset not found: {missing}"])


def test_packaged_cpu_recipe_before_make_demo_names_its_dataset(tiny_llama, tmp_path, monkeypatch):
    # The CPU recipes default to the demo run folder runs/demo/data, relative to where trainer runs.
    monkeypatch.chdir(tmp_path)
    refused(tmp_path, "dpo-smollm2-cpu", f"model.name={tiny_llama}", "--dry-run",
            says=["cannot load dataset runs/demo/data (config dpo, split train)"])


def test_unknown_packaged_recipe_gets_a_did_you_mean(tmp_path):
    refused(tmp_path, "wrpo-smollm2-cup", says=["recipe not found: wrpo-smollm2-cup",
                                                "(did you mean 'wrpo-smollm2-cpu'?)"])


def test_non_number_beta_is_refused(tiny_llama, tmp_path):
    r = recipe(tmp_path, tiny_llama, "dpo", data_for(tmp_path, "dpo"))
    refused(tmp_path, r, "loss.beta=big", says=["loss.beta: expected float, got 'big'"])


def test_rloo_needs_two_responses_per_prompt(tiny_llama, tmp_path):
    rows = [{"messages": r["messages"], "prompt_id": r["prompt_id"], "score": 0.5} for r in rows_for("sft", 4)]
    data = write_jsonl(rows, tmp_path / "single.jsonl")
    refused(tmp_path, recipe(tmp_path, tiny_llama, "rloo", data),
            says=["rloo needs at least 2 responses per prompt; 4 prompts have one"])


def test_a_fusedata_run_folder_as_data_path_means_its_dataset_folder(tiny_llama, tmp_path):
    from fusedata.publish import write_dataset
    from fusedata.store import RunStore

    run = tmp_path / "run"
    folder = write_dataset(run / "t-fusechat3-0123abcd", {"sft": {"train": rows_for("sft", 5)}},
                           card_info={"pretty_name": "run folder check"})
    with RunStore(run) as store:
        refused(tmp_path, "sft-smollm2-cpu", f"model.name={tiny_llama}", "--data", run, "--dry-run",
                says=[f"data.path {run} is a fusedata run folder without a dataset", f"fusedata pairs {run}"])
        store.set_meta("dataset", {"method": "fusechat3", "counts": {"sft": {"train": 5}}, "folder": str(folder)})
    # --out, and the old --output-dir, set output.dir
    for flag in ("--out", "--output-dir"):
        out = invoke("train", "sft-smollm2-cpu", f"model.name={tiny_llama}", "--data", run, flag, tmp_path / "o",
                     "--dry-run")
        plan = json.loads(out[out.index("{"):])
        assert plan["examples"] == 5 and plan["config"]["data"]["path"] == str(folder)
        assert plan["config"]["output"]["dir"] == str(tmp_path / "o")


# --------------------------------------------------------------------------- --dry-run


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_llama, tmp_path):
    data = data_for(tmp_path, "wrpo", n=5)
    out = invoke("train", "wrpo-smollm2-cpu", f"model.name={tiny_llama}", "--data", data, "-o", tmp_path / "out",
                 "--max-steps", 2, "loss.beta=0.2", "--dry-run")
    plan = json.loads(out[out.index("{"):])
    assert plan["examples"] == 5
    assert plan["data"]["rows"] == 5 and plan["data"]["dropped_empty"] == 0
    cfg = plan["config"]
    assert (cfg["method"], cfg["loss"]["beta"], cfg["train"]["max_steps"]) == ("wrpo", 0.2, 2)
    assert cfg["data"]["path"] == str(data) and cfg["output"]["dir"] == str(tmp_path / "out")
    # The packaged recipe's own numbers survive the overrides.
    assert cfg["data"]["max_length"] == config.load("wrpo-smollm2-cpu").data.max_length
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- real runs


def initial_weights(tiny: Path) -> dict[str, torch.Tensor]:
    return load_file(str(tiny / "model.safetensors"))


@pytest.mark.parametrize("method", list(METHOD_KEYS))
def test_every_method_trains_through_the_cli(tiny_llama, tmp_path, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    invoke("train", recipe(tmp_path, tiny_llama, method, data_for(tmp_path, method)))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
                 "metrics.jsonl", "curves.png", "summary.json"):
        assert (out / name).is_file(), name
    assert f"**{method}**" in (out / "README.md").read_text()
    assert (out / "curves.png").stat().st_size > 10_000

    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        assert METHOD_KEYS[method] <= set(r), METHOD_KEYS[method] - set(r)
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])
        for k in r:
            if "accuracies" in k:
                assert 0.0 <= r[k] <= 1.0, (k, r[k])
        if method == "wrpo":
            assert r["alpha"] == pytest.approx(alpha_at(r["step"] - 1, STEPS, 0.1))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["method"], summary["steps"], summary["examples"]) == (method, STEPS, 6)

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert AutoTokenizer.from_pretrained(out).chat_template
    before = initial_weights(tiny_llama)
    after = model.state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    # Every matrix is on the gradient path of every loss, so an lr-1e-3 run moves them all.
    assert set(moved) == set(before), set(before) - set(moved)


def test_dpo_step_one_is_ln2_with_a_precomputed_reference(tiny_llama, tmp_path):
    invoke("train", recipe(tmp_path, tiny_llama, "dpo", data_for(tmp_path, "dpo"), loss={"reference": "precompute"}))
    rows = metrics(tmp_path / "out")
    # Policy == reference before the first update: every log-ratio is 0, so -log sigmoid(0).
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert rows[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert rows[-1]["loss"] != pytest.approx(math.log(2), abs=1e-4)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["reference"] == "precompute"


# --------------------------------------------------------------------------- LoRA


def lora_run(tiny: Path, tmp_path: Path, merge: bool) -> Path:
    pytest.importorskip("peft")
    r = recipe(tmp_path, tiny, "dpo", data_for(tmp_path, "dpo"), train={"max_steps": 2, "lr": 1e-2},
               output={"dir": str(tmp_path / f"lora-{merge}")})
    invoke("train", r, "model.lora={r: 4, alpha: 8, merge: %s}" % str(merge).lower())
    return tmp_path / f"lora-{merge}"


def test_lora_run_merges_into_a_plain_model(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    out = lora_run(tiny_llama, tmp_path, merge=True)
    before = initial_weights(tiny_llama)
    after = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    assert set(load_file(str(out / "model.safetensors"))) == set(before)  # plain names, no lora_A/B
    assert not (out / "adapter_config.json").exists()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    # LoRA adapts the decoder's linear layers only; embeddings, norms and the head stay put.
    assert moved and all(k.endswith("proj.weight") for k in moved), moved
    assert torch.equal(before["lm_head.weight"], after["lm_head.weight"])


def test_lora_without_merge_saves_an_adapter_that_rebuilds_the_merged_model(tiny_llama, tmp_path):
    import peft
    from transformers import AutoModelForCausalLM

    adapter = lora_run(tiny_llama, tmp_path, merge=False)
    merged = lora_run(tiny_llama, tmp_path, merge=True)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert not (adapter / "model.safetensors").exists()
    assert all("lora_" in k for k in load_file(str(adapter / "adapter_model.safetensors")))
    assert (adapter / "metrics.jsonl").is_file() and "**dpo**" in (adapter / "README.md").read_text()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    rebuilt = peft.PeftModel.from_pretrained(base, adapter).merge_and_unload().state_dict()
    want = load_file(str(merged / "model.safetensors"))
    worst = max((rebuilt[k] - want[k]).abs().max().item() for k in want)
    assert worst < 1e-6, worst
