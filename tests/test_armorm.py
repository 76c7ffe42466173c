"""ArmoRM loaded natively (no remote code) from a tiny random checkpoint with the published
tensor names and config keys.

Expected scores are computed here from the formula with plain torch ops: a ``LlamaModel`` given
the saved ``model.*`` tensors, the head tensors read straight from model.safetensors, and the
gating position found by scanning the token strings — never by calling the code under test twice.
"""

from __future__ import annotations

import math
import shutil

import pytest

from fusedata.errors import FusekitError
from fusedata.rewards import make_reward, validate_spec
from fusedata.rewards.armorm import ArmoRM
from fusedata.rewards.seqcls import SeqClsReward
from tests.fixtures.tiny_armorm import SHAPE, build_tiny_armorm

MATH = [{"role": "user", "content": "What is 7 + 5?"}]
SLEEP = [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Give three tips for sleeping better."}]
ITEMS = [
    (MATH, "12"),
    (SLEEP, "Go to bed at the same time. Keep the room dark. " * 6),
    (MATH, "The answer is 12."),
    (SLEEP, "Sleep."),
    (MATH, "7 + 5 = 13, no: 12. " * 3),
]
GATE_TOKENS = ["<|eot_id|>", "<|start_header_id|>", "assistant", "<|end_header_id|>", "ĊĊ"]  # ĊĊ is "\n\n"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_tiny_armorm(tmp_path_factory.mktemp("tiny-armorm"))


@pytest.fixture(scope="module")
def rm(ckpt):
    r = make_reward({"kind": "seqcls", "model": str(ckpt), "batch_size": 3, "max_length": 512})
    yield r
    r.close()


@pytest.fixture(scope="module")
def by_hand(ckpt):
    """Score one token-id list from the formula: the backbone's hidden states, then the head
    written out with the saved tensors."""
    import torch
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaModel

    saved = load_file(ckpt / "model.safetensors")
    backbone = LlamaModel(LlamaConfig.from_pretrained(ckpt)).eval()
    backbone.load_state_dict({k.removeprefix("model."): v for k, v in saved.items() if k.startswith("model.")})

    def score(ids: list[int], gate_at: int) -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            h = backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
        x = h[gate_at]
        for i in range(SHAPE["gating_n_hidden"]):
            x = torch.clamp(saved[f"gating.layers.{i}.weight"] @ x + saved[f"gating.layers.{i}.bias"], min=0)
        last = SHAPE["gating_n_hidden"]
        z = saved[f"gating.layers.{last}.weight"] @ x + saved[f"gating.layers.{last}.bias"]
        e = torch.exp(z / SHAPE["gating_temperature"])
        gate = saved["gating.logit_scale"][0] * e / e.sum()
        ratings = saved["regression_layer.weight"] @ h[-1]
        adjusted = ratings @ saved["reward_transform_matrix"]
        return float((gate * adjusted).sum()), gate

    return score


def gate_position(tok, ids: list[int]) -> int:
    """Start of the last eot/assistant-header run, found by comparing token strings."""
    toks = tok.convert_ids_to_tokens(ids)
    return max(j for j in range(len(toks)) if toks[j:j + len(GATE_TOKENS)] == GATE_TOKENS)


def test_loads_published_layout_natively(rm, ckpt):
    from safetensors.torch import load_file

    assert isinstance(rm.model, ArmoRM) and not (ckpt / "modeling_custom.py").exists()
    saved = load_file(ckpt / "model.safetensors")
    state = rm.model.state_dict()
    assert set(state) == set(saved)
    for name in ("reward_transform_matrix", "gating.logit_scale", "gating.layers.2.bias", "regression_layer.weight"):
        assert (state[name] == saved[name]).all(), name
    assert rm.model.gating.temperature == SHAPE["gating_temperature"] and len(rm.model.gating.layers) == 3
    assert rm.gating_pattern == tuple(rm.tokenizer.convert_tokens_to_ids(GATE_TOKENS))
    # a recipe still carrying trust_remote_code gets the native model too (there is no remote code to run)
    old = make_reward({"kind": "seqcls", "model": str(ckpt), "trust_remote_code": True})
    assert isinstance(old.model, ArmoRM) and old.score_many(ITEMS[:1]) == pytest.approx(rm.score_many(ITEMS[:1]))


def test_scores_equal_the_formula(rm, by_hand):
    got = rm.score_many(ITEMS)
    for (prompt, response), score in zip(ITEMS, got):
        ids, _ = rm.encode(prompt, response)
        gate_at = gate_position(rm.tokenizer, ids)
        # the documented position: the <|eot_id|> that closes the prompt, just before the assistant header
        prompt_ids = rm.tokenizer(rm.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                                  add_special_tokens=False)["input_ids"]
        assert gate_at == len(prompt_ids) - len(GATE_TOKENS) and ids[:len(prompt_ids)] == prompt_ids
        assert score == pytest.approx(by_hand(ids, gate_at)[0], abs=1e-5)
    assert len({round(s, 6) for s in got}) == len(ITEMS) and rm.last_errors == {}


def test_gate_reads_the_prompt_only(rm, by_hand):
    import torch

    def forward(prompt, response):
        ids, _ = rm.encode(prompt, response)
        with torch.no_grad():
            return rm.model(input_ids=torch.tensor([ids]))

    a, b, c = forward(MATH, "12"), forward(MATH, "The answer is 12."), forward(SLEEP, "12")
    assert torch.equal(a.gating_output, b.gating_output)  # a new response leaves the weights alone
    assert not torch.allclose(a.gating_output, c.gating_output, atol=1e-4)  # a new prompt moves them
    assert not torch.allclose(a.rewards, b.rewards, atol=1e-4)
    assert torch.equal(a.score, a.logits)
    ids, _ = rm.encode(MATH, "12")
    assert a.gating_output[0] == pytest.approx(by_hand(ids, gate_position(rm.tokenizer, ids))[1], abs=1e-6)
    assert float(a.gating_output.sum()) == pytest.approx(1.7, abs=1e-5)  # softmax times logit_scale


def test_batched_equals_one_by_one(rm):
    lengths = [len(rm.encode(p, r)[0]) for p, r in ITEMS]
    assert max(lengths) > 4 * min(lengths)  # real padding
    assert rm.pad_id >= rm.model.config.vocab_size  # the added [PAD] is outside the embedding
    batched = rm.score_many(ITEMS)
    single = [rm.score_many([item])[0] for item in ITEMS]
    assert batched == pytest.approx(single, abs=1e-5)
    assert all(math.isfinite(s) for s in batched)


def test_truncation_past_the_header_is_an_error_not_a_score(ckpt, rm):
    long = "Go to bed at the same time. Keep the room dark. " * 6
    short = make_reward({"kind": "seqcls", "model": str(ckpt), "max_length": 40})
    assert len(rm.encode(SLEEP, long)[0]) > 40 >= len(rm.encode(MATH, "12")[0])
    scores = short.score_many([(SLEEP, long), (MATH, "12")])
    assert math.isnan(scores[0]) and "no '<|eot_id|>" in short.last_errors[0]
    assert "max_length=40" in short.last_errors[0]
    assert scores[1] == pytest.approx(rm.score_many([(MATH, "12")])[0], abs=1e-6) and list(short.last_errors) == [0]


def test_incomplete_checkpoint_is_refused(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "armorm-no-transform"
    shutil.copytree(ckpt, folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors["reward_transform_matrix"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(FusekitError, match="lacks reward_transform_matrix"):
        make_reward({"kind": "seqcls", "model": str(folder)})


def test_tokenizer_without_llama3_chat_tokens_is_refused(rm, ckpt, tmp_path):
    from tests.fixtures.tiny import build_tokenizer

    chatml = build_tokenizer(tmp_path)
    cfg = validate_spec({"kind": "seqcls", "model": str(ckpt)})
    with pytest.raises(FusekitError, match="needs a Llama-3 tokenizer; this one has no <\\|eot_id\\|>"):
        SeqClsReward(cfg, model=rm.model, tokenizer=chatml)
