"""The trainer's core invariants on a tiny random Llama (fp32, one thread, deterministic).

Tokenization keeps the prefix property; packed and padded batches give the same log-probs
and losses; gradient accumulation equals the large batch; the precomputed reference equals
the live one; step 0 of DPO is ln 2; the data order is a pure function of (seed, step).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.train_data import rows_for, write_jsonl
from trainer import config
from trainer.data import Encoder, collate, to_groups, tokenize, truncate
from trainer.loop import lr_factor, micro_batches, step_indices, train
from trainer.losses import weighted_sft_loss
from trainer.model import SequenceLogps

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture(scope="module")
def lm(tiny_llama):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    return m.eval()


def run(tiny_llama: Path, tmp_path: Path, method: str, name: str, n: int = 8, **sections) -> list[dict]:
    data = write_jsonl(rows_for(method, n), tmp_path / f"{method}.jsonl")
    raw = {"method": method, "model": {"name": str(tiny_llama)},
           "data": {"path": str(data), "max_length": 96, "max_prompt_length": 48},
           "train": {"max_steps": 3, "lr": 1e-3, "batch_size": 2, "grad_accum": 2, "warmup_ratio": 0.0},
           "output": {"dir": str(tmp_path / name), "tensorboard": False}}
    for sect, vals in sections.items():
        raw.setdefault(sect, {}).update(vals)
    train(config.parse(raw))
    return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_run(a: list[dict], b: list[dict], keys=("loss",), tol: float = 1e-5) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in keys:
            assert ra[k] == pytest.approx(rb[k], rel=tol, abs=tol), (k, ra["step"], ra[k], rb[k])


# --------------------------------------------------------------------------- tokenization


def test_prompt_and_response_ids_concatenate_to_the_rendered_conversation(tok):
    enc = Encoder(tok)
    prompt = [{"role": "user", "content": "What is 7 + 5?"}]
    answer = {"role": "assistant", "content": "The answer is 12."}
    p_ids, (r_ids,) = enc.encode(prompt, [answer])
    full = tok.apply_chat_template(prompt + [answer], tokenize=False)
    # The response ends at the end-of-turn token (the template's trailing newline is never generated).
    assert tok.decode(p_ids + r_ids) == full.rstrip("\n")
    assert r_ids[-1] == tok.eos_token_id
    assert tok.decode(r_ids) == "The answer is 12.<|im_end|>"
    assert tok.decode(p_ids).endswith("<|im_start|>assistant\n")
    assert enc.fallbacks == 0


def test_string_prompts_get_eos_appended(tok):
    p_ids, (r_ids,) = Encoder(tok).encode("Q: 2+2?\nA:", [" 4"])
    assert tok.decode(p_ids) == "Q: 2+2?\nA:"
    assert r_ids[-1] == tok.eos_token_id and tok.decode(r_ids[:-1]) == " 4"


def test_truncation_keeps_the_prompt_end_then_cuts_responses():
    prompt = list(range(100))
    p, rs, pcut, rcut = truncate(prompt, [[1] * 30, [2] * 5], max_length=40, max_prompt_length=20)
    assert p == list(range(80, 100)) and pcut
    assert [len(r) for r in rs] == [20, 5] and rcut == 1
    # Short enough: untouched.
    p, rs, pcut, rcut = truncate(list(range(10)), [[1] * 5], max_length=40, max_prompt_length=20)
    assert p == list(range(10)) and rs == [[1] * 5] and not pcut and rcut == 0


def test_wrpo_groups_keep_source_target_rejected_order():
    rows = [{"prompt": [{"role": "user", "content": "q"}], "chosen_source": [{"role": "assistant", "content": "S"}],
             "chosen_target": [{"role": "assistant", "content": "T"}],
             "rejected": [{"role": "assistant", "content": "L"}]},
            {"prompt": {"role": "user", "content": "q"}, "chosen": [{"role": "assistant", "content": "S"},
                                                                    {"role": "assistant", "content": "T"}],
             "rejected": [{"role": "assistant", "content": "L"}]}]
    for prompt, responses, _ in to_groups(rows, "wrpo"):
        assert [r["content"] for r in responses] == ["S", "T", "L"]
        assert prompt == [{"role": "user", "content": "q"}]


def test_fusepo_and_fusesft_group_rows_by_prompt_with_weights():
    rows = rows_for("fusepo", 6, k=3)
    groups = to_groups(rows, "fusepo")
    assert len(groups) == 6
    for (_, responses, w), pid in zip(groups, dict.fromkeys(r["prompt_id"] for r in rows)):
        n = sum(r["prompt_id"] == pid for r in rows)
        assert len(responses) == 2 * n and len(w) == n and sum(w) == pytest.approx(1.0)
    sft = to_groups(rows_for("fusesft", 4), "fusesft")
    assert all(len(r) == len(w) >= 2 for _, r, w in sft)


def test_implicit_prompt_preference_rows():
    rows = [{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
             "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}]
    (prompt, (c, r), _), = to_groups(rows, "dpo")
    assert prompt == [{"role": "user", "content": "q"}] and c["content"] == "good" and r["content"] == "bad"


# --------------------------------------------------------------------------- log-probs


def test_packed_and_padded_batches_give_the_same_logps_and_grads(tok, lm):
    groups = to_groups(rows_for("wrpo", 3), "wrpo")
    examples, _ = tokenize(groups, tok, 96, 48)
    fwd = SequenceLogps(lm, chunk_size=16)
    out = {}
    for packing in (False, True):
        lm.zero_grad()
        b = collate(examples, tok.pad_token_id, packing)
        sums, means, counts = fwd(**b.inputs())
        sums.sum().backward()
        out[packing] = (sums.detach(), means.detach(), counts, lm.model.layers[0].self_attn.q_proj.weight.grad.clone())
    (s0, m0, c0, g0), (s1, m1, c1, g1) = out[False], out[True]
    assert torch.equal(c0, c1) and c0.tolist() == [len(r) for ex in examples for r in ex.responses]
    assert torch.allclose(s0, s1, atol=1e-5) and torch.allclose(m0, m1, atol=1e-6)
    assert torch.allclose(g0, g1, atol=1e-5)


def test_sequence_logps_equal_a_plain_forward(tok, lm):
    examples, _ = tokenize(to_groups(rows_for("dpo", 2), "dpo"), tok, 96, 48)
    ex = examples[0]
    sums, _, _ = SequenceLogps(lm, chunk_size=5)(**collate([ex], tok.pad_token_id).inputs())
    for k, resp in enumerate(ex.responses):
        ids = torch.tensor([ex.prompt_ids + resp])
        with torch.no_grad():
            logp = torch.log_softmax(lm(ids).logits[0, :-1], -1)
        expected = sum(logp[len(ex.prompt_ids) - 1 + j, t].item() for j, t in enumerate(resp))
        assert sums[k].item() == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------- loop invariants


@pytest.mark.parametrize("method, normalize, shares", [
    # NLLs 2, 0.5 (prompt A, weights 0.6 / 0.4) and 3 (prompt B): Σ w·nll over Σ w = 2
    ("fusesft", "response", [(0.6 * 2.0 + 0.4 * 0.5) / 2.0, 3.0 / 2.0]),
    # token NLLs 6, 1, 12 over Σ w·tokens = 0.6·3 + 0.4·2 + 1·4 = 6.6
    ("sft", "token", [(0.6 * 6.0 + 0.4 * 1.0) / 6.6, 12.0 / 6.6]),
])
def test_sft_trains_through_the_tested_loss_over_the_step_denominator(monkeypatch, method, normalize, shares):
    import trainer.objectives as objectives
    from trainer.data import Example

    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        return weighted_sft_loss(*args, **kwargs)

    monkeypatch.setattr(objectives, "weighted_sft_loss", spy)
    cfg = config.parse({"method": method, "model": {"name": "m"}, "data": {"path": "d"}})
    assert cfg.sft_normalize == normalize
    a = Example(0, [1], [[5, 6, 7], [8, 9]], [0.6, 0.4])
    b = Example(1, [1], [[5, 6, 7, 8]], [1.0])
    den = objectives.denominator(cfg, [a, b])
    assert den == pytest.approx(2.0 if normalize == "response" else 6.6)
    got = []
    for ex, sums in ((a, [-6.0, -1.0]), (b, [-12.0])):
        s = torch.tensor(sums, dtype=torch.float64)
        c = torch.tensor([float(len(r)) for r in ex.responses], dtype=torch.float64)
        loss, metrics = objectives.micro_batch_loss(cfg, [ex], s, s / c, c, None, 0.0, den)
        got.append(loss.item())
        assert metrics["logps/response"] == pytest.approx([sum(sums), len(sums)])
    assert got == pytest.approx(shares, abs=1e-12)
    assert sum(got) == pytest.approx(sum(shares), abs=1e-12)
    assert len(calls) == 2 and all(args[3] == normalize and args[4] == den for args in calls)


def test_packing_matches_padding_over_a_run(tiny_llama, tmp_path):
    a = run(tiny_llama, tmp_path, "wrpo", "pad")
    b = run(tiny_llama, tmp_path, "wrpo", "pack", train={"packing": True})
    assert_same_run(a, b, keys=("loss", "rewards/margins", "grad_norm"), tol=1e-5)


@pytest.mark.parametrize("method", ["dpo", "sft", "fusesft"])
def test_gradient_accumulation_equals_the_large_batch(tiny_llama, tmp_path, method):
    # SFT is token-normalised over the whole step: unequal response lengths would expose a
    # per-micro-batch mean.
    a = run(tiny_llama, tmp_path, method, "big", train={"batch_size": 4, "grad_accum": 1})
    b = run(tiny_llama, tmp_path, method, "accum", train={"batch_size": 1, "grad_accum": 4})
    assert_same_run(a, b, keys=("loss", "grad_norm"), tol=1e-5)
    wa, wb = weights(tmp_path / "big"), weights(tmp_path / "accum")
    # Adam divides by sqrt(v): float-order noise in near-zero gradients moves a weight by ~1e-6
    # after three lr-1e-3 steps; a real normalisation error moves it by ~lr.
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst < 1e-5, worst


def test_precomputed_reference_equals_live_and_step0_is_ln2(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEKIT_CACHE", str(tmp_path / "cache"))
    a = run(tiny_llama, tmp_path, "dpo", "pre", loss={"reference": "precompute"})
    b = run(tiny_llama, tmp_path, "dpo", "live", loss={"reference": "live"})
    assert a[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert a[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert_same_run(a, b, keys=("loss", "rewards/chosen", "rewards/rejected"), tol=1e-5)
    assert len(list((tmp_path / "cache" / "reference_logps").glob("*.safetensors"))) == 1
    # Second run: the cache is read, same numbers.
    c = run(tiny_llama, tmp_path, "dpo", "pre2", loss={"reference": "precompute"})
    assert json.loads((tmp_path / "pre2" / "summary.json").read_text())["reference_cached"] is True
    assert_same_run(a, c, keys=("loss",), tol=1e-7)


def test_wrpo_alpha_follows_the_global_step(tiny_llama, tmp_path):
    rows = run(tiny_llama, tmp_path, "wrpo", "w", train={"max_steps": 4})
    assert [r["alpha"] for r in rows] == pytest.approx([0.0, 0.025, 0.05, 0.075])


def test_simpo_and_lndpo_run_reference_free_and_mean_normalised(tiny_llama, tmp_path):
    s = run(tiny_llama, tmp_path, "simpo", "simpo", loss={"gamma_beta_ratio": 0.5, "beta": 2.0})
    summary = json.loads((tmp_path / "simpo" / "summary.json").read_text())
    assert summary["reference"] == "none"
    # SimPO rewards are beta * mean log-prob: large negative numbers, not ~0 like DPO's.
    assert s[0]["rewards/chosen"] < -1.0
    ln = run(tiny_llama, tmp_path, "dpo", "ln", loss={"normalize": "mean"})
    assert ln[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert json.loads((tmp_path / "ln" / "train_config.json").read_text())["loss"]["beta"] == 10.0


# --------------------------------------------------------------------------- pure schedule pieces


def test_step_indices_cover_each_epoch_and_are_deterministic():
    n, g = 10, 4
    epoch0 = [i for s in range(3) for i in step_indices(s, n, g, seed=1)]
    assert sorted(epoch0[:10]) == list(range(10))  # the third step wraps around: 2 repeats
    assert step_indices(5, n, g, 1) == step_indices(5, n, g, 1)
    assert step_indices(3, n, g, 1) != step_indices(0, n, g, 1)  # epoch 1 has its own permutation
    mbs = [micro_batches(list(range(8)), 2, 2, r, 2) for r in range(2)]
    assert mbs == [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]


def test_lr_schedule_warmup_then_cosine_to_zero():
    assert lr_factor(0, 10, 2, "cosine") == pytest.approx(1 / 3)
    assert lr_factor(2, 10, 2, "cosine") == pytest.approx(1.0)
    assert lr_factor(6, 10, 2, "cosine") == pytest.approx(0.5)
    assert lr_factor(10, 10, 2, "linear") == pytest.approx(0.0)
    assert lr_factor(7, 10, 0, "constant") == 1.0


# --------------------------------------------------------------------------- fusedata folders


def _fusedata_folder(tmp_path: Path) -> Path:
    from fusedata.pairs import to_trl_rows, wrpo_quadruple_rows
    from fusedata.publish import write_dataset
    from fusedata.records import Pair

    def msg(text: str) -> dict:
        return {"role": "assistant", "content": text}

    prompt = [{"role": "user", "content": "What is 7 + 5?"}]
    sft = [Pair(f"p{i}", "math", "wrpo", prompt, [msg(f"It is 12 ({i}).")], chosen_models=["a"], chosen_scores=[0.9],
                meta={"source_dataset": "embedded:math"}) for i in range(4)]
    wrpo = [Pair(f"q{i}", "math", "wrpo", prompt, [msg("12."), msg(f"Twelve ({i}).")], [msg("13.")], ["a", "t"], ["t"],
                 [0.9, 0.7], [0.1]) for i in range(4)]
    dpo = [Pair(f"d{i}", "math", "fusechat3", prompt, [msg("12.")], [msg(f"13 ({i}).")], ["a"], ["a"], [0.9], [0.2],
                meta={"source_dataset": "embedded:math"}) for i in range(4)]
    # FuseRL: per-source pairs (fusepo) and top-m weighted responses (fusesft) share prompt ids.
    po = [Pair(f"f{i // 2}", "math", "fuserl-po", prompt, [msg(f"12 ({i}).")], [msg("13.")], [f"s{i % 2}"],
               [f"s{i % 2}"], [0.9], [0.1], [0.5], {}) for i in range(4)]
    fsft = [Pair(f"f{i // 2}", "math", "fuserl-sft", prompt, [msg(f"12 ({i}).")], chosen_models=[f"s{i % 2}"],
                 chosen_scores=[0.9 - i / 10], weights=[0.6 if i % 2 == 0 else 0.4], meta={}) for i in range(4)]
    configs = {"sft": {"train": to_trl_rows(sft, "sft")}, "wrpo": {"train": wrpo_quadruple_rows(wrpo)},
               "dpo": {"train": to_trl_rows(dpo, "preference")},
               "fuserl_po": {"train": to_trl_rows(po, "preference")}, "fuserl_sft": {"train": to_trl_rows(fsft, "sft")}}
    return write_dataset(tmp_path / "dataset", configs, card_info={"pretty_name": "trainer check"})


def test_every_method_trains_from_a_fusedata_folder(tiny_llama, tmp_path):
    from trainer.loop import prepare_examples

    folder = _fusedata_folder(tmp_path)
    expect = {"sft": (4, 1), "wrpo": (4, 3), "dpo": (4, 2), "simpo": (4, 2), "fusepo": (2, 4), "fusesft": (2, 2),
              "rloo": (2, 2)}
    tok = pytest.importorskip("transformers").AutoTokenizer.from_pretrained(tiny_llama)
    for method, (n, r) in expect.items():
        cfg = config.parse({"method": method, "model": {"name": str(tiny_llama)}, "data": {"path": str(folder)},
                            "output": {"dir": str(tmp_path / method)}})
        examples, report = prepare_examples(cfg, tok)
        assert len(examples) == n and all(len(ex.responses) == r for ex in examples), method
        assert report["config"] == {"simpo": "dpo", "fusepo": "fuserl_po", "fusesft": "fuserl_sft",
                                    "rloo": "fuserl_sft"}.get(method, method)
    cfg = config.parse({"method": "wrpo", "model": {"name": str(tiny_llama)}, "data": {"path": str(folder)},
                        "train": {"max_steps": 2, "lr": 1e-3},
                        "output": {"dir": str(tmp_path / "w"), "tensorboard": False}})
    summary = train(cfg)
    assert summary["examples"] == 4 and summary["steps"] == 2


def test_gradient_checkpointing_changes_memory_not_numbers(tiny_llama, tmp_path):
    a = run(tiny_llama, tmp_path, "dpo", "plain")
    b = run(tiny_llama, tmp_path, "dpo", "ckpt", model={"gradient_checkpointing": True})
    assert_same_run(a, b, keys=("loss", "grad_norm"), tol=1e-6)


def test_lora_with_live_reference_uses_the_adapter_free_base(tiny_llama, tmp_path):
    pytest.importorskip("peft")
    rows = run(tiny_llama, tmp_path, "dpo", "lora", model={"lora": {"r": 4, "alpha": 8}},
               loss={"reference": "live"}, train={"lr": 1e-2})
    # LoRA's B starts at zero, so step 0 is ln 2 against the adapter-disabled reference; then it learns.
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert rows[-1]["loss"] != pytest.approx(math.log(2), abs=1e-4)
    summary = json.loads((tmp_path / "lora" / "summary.json").read_text())
    assert summary["trainable_parameters"] < summary["parameters"] / 5


def test_same_named_dataset_folders_are_not_served_from_each_others_cache(tmp_path):
    """`datasets` caches local folders by name: every fusedata folder is `dataset`, so without
    re-reading, the second one here would come back with the first one's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.data import load_rows

    card = "---\nconfigs:\n- config_name: sft\n  data_files:\n  - split: train\n    path: data/sft/train-*\n---\n"
    for run, n in (("a", 7), ("b", 4)):
        folder = tmp_path / run / "dataset"
        (folder / "data" / "sft").mkdir(parents=True)
        (folder / "README.md").write_text(card)
        rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": run}]}
                for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "sft" / "train-00000-of-00001.parquet")
    assert len(load_rows(str(tmp_path / "a" / "dataset"), "sft", "train")) == 7
    got = load_rows(str(tmp_path / "b" / "dataset"), "sft", "train")
    assert len(got) == 4 and got[0]["messages"][1]["content"] == "b"
