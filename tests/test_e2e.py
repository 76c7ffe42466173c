"""The whole loop, as `make demo` runs it but smaller: build → train → eval on the embedded models.

One real run of ``recipes/demo.py --small`` (minutes on 2 cores), then every stage's artefacts are
checked the way a user would use them: the dataset through ``load_dataset``, the model through
``from_pretrained`` and ``generate``, the report's numbers, and the hashes that tie them together.
A second run must finish from the stores without redoing anything.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "demo.py"), "--small", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=1500, cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return out, r.stdout


def dataset_folder(out: Path) -> Path:
    """The folder the build wrote; its name is unique to its rows, so `datasets`' cache serves no other run."""
    return Path(json.loads((out / "data" / "summary.json").read_text())["dataset"]["folder"])


def test_dataset_loads_with_datasets(demo):
    from datasets import load_dataset

    out, _ = demo
    folder = dataset_folder(out)
    wrpo = load_dataset(str(folder), "wrpo", split="train")
    sft = load_dataset(str(folder), "sft", split="train")
    assert wrpo.num_rows >= 1 and sft.num_rows >= 1
    row = wrpo[0]
    # WRPO quadruples as named TRL conversational columns: y_ws from a source, y_wt and y_l from the target
    assert row["prompt"][-1]["role"] == "user"
    for col in ("chosen_source", "chosen_target", "rejected"):
        assert row[col][0]["role"] == "assistant" and row[col][0]["content"]
    assert row["target_model"] == "smollm2-135m-target" and row["source_model"] in ("smollm2-135m", "gemma3-270m")
    assert float(row["score_target"]) > float(row["score_rejected"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["rows"] == {"sft": sft.num_rows, "wrpo": wrpo.num_rows}
    assert "smollm2-135m-target" in summary["dataset"]["responses"]
    assert (folder / "README.md").read_text().startswith("---") and summary["artefacts"]["dataset"] == str(folder)


def test_trained_model_loads_and_generates(demo):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = demo
    model_dir = out / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    train = json.loads((model_dir / "summary.json").read_text())
    metrics = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert train["method"] == "wrpo" and train["steps"] == 2 and len(metrics) == 2
    assert all(m["loss"] > 0 for m in metrics) and metrics[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert Path(train["data"]).resolve() == dataset_folder(out).resolve()
    assert (model_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrpo" in (model_dir / "README.md").read_text().lower()


def test_report_scores_are_in_range_and_hashes_match(demo):
    from evals.answers import weights_fingerprint
    from evals.benches import load_questions

    out, stdout = demo
    with open(out / "evals" / "mt-bench" / "leaderboard.csv", newline="") as fh:
        board = {r["model"]: r for r in csv.DictReader(fh)}
    assert set(board) == {"base", "wrpo"}
    for row in board.values():
        assert int(row["n_judged"]) == 4 and 1.0 <= float(row["score"]) <= 10.0
    manifest = json.loads((out / "evals" / "manifest.json").read_text())
    bench = manifest["benches"]["mt-bench"]
    # the data hashes in the manifest are the files' real hashes
    _, files = load_questions("mt-bench", limit=2)
    for f in files:
        assert bench["data"][f.name] == hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
    # the evaluated "wrpo" answers came from exactly the weights the trainer wrote
    assert bench["settings"]["models"]["wrpo"]["weights"] == weights_fingerprint(str(out / "model"))
    assert bench["settings"]["judge"]["prefill"] == "Rating: [["
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mt_bench"]["wrpo"]["score"] == pytest.approx(float(board["wrpo"]["score"]))
    assert "fusekit demo: build → train → eval" in stdout


def test_second_run_redoes_nothing(demo):
    out, _ = demo
    env = {**os.environ, "OMP_NUM_THREADS": "2", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "demo.py"), "--small", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipping training" in r.stdout
    assert "0 calls to make" in r.stderr.replace("\n", " ")
    seconds = json.loads((out / "summary.json").read_text())["seconds"]
    assert seconds["train"] == 0.0 and seconds["total"] < 120


def test_paper_recipes_parse_and_name_packaged_trainer_recipes():
    """The real-model recipes validate offline, and the trainer recipes their comments name exist."""
    import re

    from fusedata import recipe
    from fusedata.rewards import validate_spec
    from trainer.config import RECIPES_DIR

    for name in ("fusechat3", "wrpo", "demo"):
        path = ROOT / "recipes" / name / "fusedata.yaml"
        r = recipe.load(path)
        validate_spec(r.scoring.reward_spec)
        for packaged in re.findall(r"trainer train ([\w.-]+) ", path.read_text()):
            assert (RECIPES_DIR / f"{packaged}.yaml").exists(), packaged
    wrpo = recipe.load(ROOT / "recipes" / "wrpo" / "fusedata.yaml")
    assert wrpo.target is not None and wrpo.scoring.reward["model"] == "RLHFlow/ArmoRM-Llama3-8B-v0.1"
