"""The embedded SmolLM2-135M trains a few WRPO steps: the loss leaves ln 2 and the metrics are defined."""

from __future__ import annotations

import json
import math

import pytest

from tests.fixtures.train_data import rows_for, write_jsonl
from trainer import config
from trainer.loop import train


@pytest.mark.slow
def test_smollm2_trains_a_few_wrpo_steps(smollm2, tmp_path):
    data = write_jsonl(rows_for("wrpo", 8), tmp_path / "wrpo.jsonl")
    cfg = config.parse({
        "method": "wrpo", "model": {"name": smollm2},
        "data": {"path": str(data), "max_length": 96, "max_prompt_length": 48},
        # beta 0.1 instead of the paper's 0.01 and a large lr: a handful of steps must move the loss.
        "loss": {"beta": 0.1, "alpha": 0.1},
        "train": {"max_steps": 4, "batch_size": 2, "grad_accum": 2, "lr": 2e-5, "warmup_ratio": 0.0},
        "output": {"dir": str(tmp_path / "out"), "tensorboard": False},
    })
    summary = train(cfg)
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 0
    assert rows[-1]["loss"] < math.log(2) - 0.01
    for r in rows:
        for key in ("rewards/accuracies", "rewards/source_accuracies", "rewards/pivot_accuracies"):
            assert 0.0 <= r[key] <= 1.0
        assert math.isfinite(r["grad_norm"]) and r["tokens_per_s"] > 0
    assert rows[-1]["rewards/margins"] > 0
    assert summary["reference"] == "precompute" and summary["parameters"] > 100_000_000

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert (tmp_path / "out" / "curves.png").stat().st_size > 10_000
    assert "wrpo" in (tmp_path / "out" / "README.md").read_text()
