"""fusedata.pairs: FuseChat-3.0 / WRPO / FuseRL builders on hand-built candidates (no store)."""

from __future__ import annotations

import math

import pytest

from fusedata.pairs import (
    build_fusechat3,
    build_fuserl,
    build_wrpo,
    gather,
    split_fusechat3,
    split_wrpo,
    to_trl_rows,
    wrpo_quadruple_rows,
)
from fusedata.pairs.candidates import Candidate
from fusedata.records import Prompt, Response, Score


def P(i: int | str, domain: str = "instruction") -> Prompt:
    return Prompt.make(domain, "src", [{"role": "user", "content": f"question {i}"}])


def C(p: Prompt, model: str, idx: int, reward: float | None, verified: bool | None = None) -> Candidate:
    return Candidate(prompt=p, model=model, sample_idx=idx, text=f"{model}#{idx}", reward=reward,
                     verified=verified, finish_reason="stop")


def dpo_only(*cands: Candidate) -> dict[str, list[Candidate]]:
    return {cands[0].prompt_id: list(cands)}


def run_dpo(cands: dict, **kw):
    # sft_ratio=0 sends every non-zh prompt to DPO.
    return build_fusechat3(cands, sft_ratio=0.0, **kw)


# -- gather ---------------------------------------------------------------------------------

def test_gather_joins_and_counts_drops():
    pm, pc = P(1, "math"), P(2, "code")
    rs = [
        Response(pm.id, "a", "h", 0, "ans 4", "stop"),
        Response(pm.id, "a", "h", 1, "long...", "length"),
        Response(pm.id, "b", "h", 0, "   ", "stop"),
        Response(pm.id, "b", "h", 1, None, None, error="boom"),
        Response(pc.id, "a", "h", 0, "def f(): pass", "stop"),
        Response("nope", "a", "h", 0, "x", "stop"),
    ]
    sc = [
        Score(pm.id, "a", "h", 0, "math", 1.0, "correct"),
        Score(pm.id, "a", "h", 0, "rm:armo", 0.7),
        Score(pc.id, "a", "h", 0, "code", 0.5, "failed"),
        Score(pc.id, "a", "h", 0, "rm:armo", 0.2, error="oom"),  # not scored → ignored
    ]
    out = gather([pm, pc], rs, sc, None)
    assert out.reward_scorer == "rm:armo"
    assert dict(out.dropped) == {"truncated": 1, "empty": 1, "error": 1, "unknown_prompt": 1}
    (a,) = out[pm.id]
    assert (a.model, a.reward, a.verified) == ("a", 0.7, True)
    (c,) = out[pc.id]
    assert (c.reward, c.verified) == (None, False)
    with pytest.raises(ValueError):
        gather([pm], rs, sc + [Score(pm.id, "a", "h", 0, "judge:x", 3.0)], None)


# -- FuseChat-3.0 -----------------------------------------------------------------------------

@pytest.mark.parametrize("gap,kept", [(0.01, True), (0.1, True), (0.0099, False), (0.1001, False)])
def test_fusechat3_gap_window_edges(gap, kept):
    p = P("gap")
    cands = dpo_only(C(p, "a", 0, 0.5 + gap), C(p, "a", 1, 0.5))
    sft, dpo, rep = run_dpo(cands)
    assert sft == []
    assert (len(dpo) == 1) is kept
    if not kept:
        assert rep.to_dict()["dropped"]["dpo"]["instruction"] == {"gap_out_of_window": 1}


def test_fusechat3_all_fail_dropped_with_reason():
    pc, pm = P("c", "code"), P("m", "math")
    cands = {pc.id: [C(pc, "a", 0, 0.9, False), C(pc, "b", 0, 0.8, False)],
             pm.id: [C(pm, "a", 0, 0.9, False), C(pm, "a", 1, 0.3, False)]}
    for ratio in (1.0, 0.0):
        sft, dpo, rep = build_fusechat3(cands, sft_ratio=ratio)
        assert sft == [] and dpo == []
        part = "sft" if ratio else "dpo"
        d = rep.to_dict()["dropped"][part]
        assert d == {"code": {"all_fail": 1}, "math": {"all_fail": 1}}


def test_fusechat3_sft_best_among_correct():
    p = P("m", "math")
    cands = {p.id: [C(p, "a", 0, 0.95, False), C(p, "b", 0, 0.6, True), C(p, "c", 1, 0.7, True)]}
    sft, dpo, _ = build_fusechat3(cands, sft_ratio=1.0)
    assert dpo == [] and len(sft) == 1
    ex = sft[0]
    assert ex.chosen == [{"role": "assistant", "content": "c#1"}]
    assert ex.chosen_models == ["c"] and ex.chosen_scores == [0.7]
    assert ex.meta["source_models"] == ["c"] and ex.meta["sample_idx"] == [1]
    assert ex.meta["chosen"]["verified"] is True and "verified-correct" in ex.meta["why"]


def test_fusechat3_same_source_never_mixes_models():
    # Across models the best/worst gap (0.9 - 0.1) is out of window; within "b" it is 0.05.
    p = P("mix")
    cands = dpo_only(C(p, "a", 0, 0.9), C(p, "a", 1, 0.89 + 0.5), C(p, "b", 0, 0.55), C(p, "b", 1, 0.5),
                     C(p, "c", 0, 0.1))
    _, dpo, _ = run_dpo(cands)
    (pair,) = dpo
    assert pair.chosen_models == pair.rejected_models == ["b"]
    assert pair.chosen[0]["content"] == "b#0" and pair.rejected[0]["content"] == "b#1"
    assert pair.meta["source_models"] == ["b"] and pair.meta["sample_idx"] == [0, 1]
    assert pair.meta["margin"] == pytest.approx(0.05)


def test_fusechat3_verified_pair_is_correct_vs_incorrect():
    p = P("vm", "math")
    cands = dpo_only(C(p, "a", 0, 0.60, True), C(p, "a", 1, 0.58, True), C(p, "a", 2, 0.55, False),
                     C(p, "a", 3, 0.52, False))
    _, (pair,), _ = run_dpo(cands)
    assert pair.chosen[0]["content"] == "a#0" and pair.rejected[0]["content"] == "a#3"
    assert pair.meta["chosen"]["verified"] is True and pair.meta["rejected"]["verified"] is False


def test_fusechat3_selection_rule_two_sources():
    p = P("two")
    cands = dpo_only(C(p, "zeta", 0, 0.58), C(p, "zeta", 1, 0.5),   # gap 0.08
                     C(p, "alpha", 0, 0.53), C(p, "alpha", 1, 0.5))  # gap 0.03
    _, (pair,), _ = run_dpo(cands)
    assert pair.chosen_models == ["zeta"] and set(pair.meta["qualifying"]) == {"alpha", "zeta"}
    # tie on the gap → model name order
    tie = dpo_only(C(p, "zeta", 0, 0.55), C(p, "zeta", 1, 0.5), C(p, "alpha", 0, 0.55), C(p, "alpha", 1, 0.5))
    _, (pair,), _ = run_dpo(tie)
    assert pair.chosen_models == ["alpha"]
    # seeded random: deterministic per seed, and both sources get picked across seeds
    picks = {s: run_dpo(cands, pick="random", seed=s)[1][0].chosen_models[0] for s in range(40)}
    assert picks == {s: run_dpo(cands, pick="random", seed=s)[1][0].chosen_models[0] for s in range(40)}
    assert set(picks.values()) == {"alpha", "zeta"}
    with pytest.raises(ValueError):
        run_dpo(cands, pick="best")


def test_fusechat3_zh_sft_only():
    ps = [P(i, "zh") for i in range(30)]
    cands = {p.id: [C(p, "qwen", 0, 0.6), C(p, "qwen", 1, 0.55)] for p in ps}
    sft, dpo, rep = build_fusechat3(cands, sft_ratio=0.0)
    assert dpo == [] and len(sft) == 30
    assert rep.to_dict()["split"] == {"zh": {"sft": 30}}


def _many(n: int = 300, domain: str = "instruction") -> dict[str, list[Candidate]]:
    ps = [P(f"split-{i}", domain) for i in range(n)]
    return {p.id: [C(p, "a", 0, 0.55), C(p, "a", 1, 0.5)] for p in ps}


def test_fusechat3_split_proportion_and_determinism():
    cands = _many()
    s0, d0 = split_fusechat3(cands, seed=0)
    assert abs(len(s0) / 300 - 0.4) <= 0.06
    assert (s0, d0) == split_fusechat3(cands, seed=0)
    s1, _ = split_fusechat3(cands, seed=1)
    assert s1 != s0
    sft, dpo, rep = build_fusechat3(cands, seed=0)
    assert [x.prompt_id for x in sft] == s0 and [x.prompt_id for x in dpo] == d0
    assert rep.to_dict()["kept"] == {"dpo": {"instruction": len(d0)}, "sft": {"instruction": len(s0)}}


# -- WRPO -------------------------------------------------------------------------------------

def test_wrpo_split_proportion_and_determinism():
    cands = _many()
    s0, p0 = split_wrpo(cands, seed=0)
    assert abs(len(s0) / 300 - 1 / 3) <= 0.06 and len(s0) + len(p0) == 300
    assert (s0, p0) == split_wrpo(cands, seed=0)
    assert split_wrpo(cands, seed=7)[0] != s0


def test_wrpo_ws_cross_source_and_target_wt_l():
    ps = [P(f"w{i}") for i in range(60)]
    cands = {p.id: [C(p, "a", 0, 0.2), C(p, "b", 0, 0.9), C(p, "b", 1, 0.1), C(p, "c", 3, 0.5)] for p in ps}
    tgt = {p.id: [C(p, "tgt", 0, 0.4), C(p, "tgt", 1, 0.7), C(p, "tgt", 2, 0.3)] for p in ps}
    sft, pairs, rep = build_wrpo(cands, tgt, seed=0)
    s_ids, p_ids = split_wrpo(cands, seed=0)
    assert [x.prompt_id for x in sft] == s_ids and [x.prompt_id for x in pairs] == p_ids
    for ex in sft:
        assert ex.chosen == [{"role": "assistant", "content": "b#0"}] and ex.rejected == []
    for pr in pairs:
        assert [m["content"] for m in pr.chosen] == ["b#0", "tgt#1"]
        assert [m["content"] for m in pr.rejected] == ["tgt#2"]
        assert pr.chosen_models == ["b", "tgt"] and pr.chosen_scores == [0.9, 0.7]
        assert pr.rejected_scores == [0.3]
    rows = wrpo_quadruple_rows(pairs)
    assert rows[0]["chosen_source"][0]["content"] == "b#0"
    assert rows[0]["chosen_target"][0]["content"] == "tgt#1"
    assert rows[0]["rejected"][0]["content"] == "tgt#2"
    assert rows[0]["prompt"] == pairs[0].prompt


def test_wrpo_verified_first_and_target_drops():
    pm = P("wm", "math")
    src = {pm.id: [C(pm, "a", 0, 0.9, False), C(pm, "b", 0, 0.4, True)]}
    # Find a seed that puts this prompt in the preference split.
    seed = next(s for s in range(100) if split_wrpo(src, s)[1])
    for tgt, reason in (({pm.id: [C(pm, "t", 0, 0.5)]}, "target_lt_2_samples"),
                        ({pm.id: [C(pm, "t", 0, 0.5), C(pm, "t", 1, 0.5)]}, "target_equal_scores"),
                        ({}, "target_lt_2_samples")):
        _, pairs, rep = build_wrpo(src, tgt, seed=seed)
        assert pairs == [] and rep.to_dict()["dropped"]["preference"]["math"] == {reason: 1}
    _, (pr,), _ = build_wrpo(src, {pm.id: [C(pm, "t", 0, 0.5, True), C(pm, "t", 1, 0.8, False)]}, seed=seed)
    assert pr.chosen_models[0] == "b"  # verified-correct beats a higher-reward wrong answer
    assert pr.chosen[1]["content"] == "t#0" and pr.rejected[0]["content"] == "t#1"


# -- FuseRL -----------------------------------------------------------------------------------

def test_fuserl_weights_softmax():
    p = P("rl")
    rewards = {("a", 0): 0.9, ("a", 1): 0.2, ("b", 0): 0.8, ("b", 1): 0.8, ("c", 0): 0.5, ("c", 1): 0.7,
               ("d", 0): 0.1}
    cands = {p.id: [C(p, m, i, r) for (m, i), r in rewards.items()]}
    tau = 0.5
    sft, po, rep = build_fuserl(cands, m=4, tau=tau)
    top = [0.9, 0.8, 0.8, 0.7]
    z = [math.exp(r / tau) for r in top]
    assert [x.chosen_scores[0] for x in sft] == top
    assert [x.chosen[0]["content"] for x in sft] == ["a#0", "b#0", "b#1", "c#1"]
    assert [x.weights[0] for x in sft] == pytest.approx([v / sum(z) for v in z])
    assert sum(x.weights[0] for x in sft) == pytest.approx(1.0)
    # FusePO: a qualifies (0.9/0.2), b has equal scores, c qualifies (0.7/0.5), d has one response.
    assert [x.chosen_models for x in po] == [["a"], ["c"]]
    assert all(x.chosen_models == x.rejected_models for x in po)
    assert [(x.chosen[0]["content"], x.rejected[0]["content"]) for x in po] == [("a#0", "a#1"), ("c#1", "c#0")]
    za, zc = math.exp(0.9 / tau), math.exp(0.7 / tau)
    assert [x.weights[0] for x in po] == pytest.approx([za / (za + zc), zc / (za + zc)])
    assert sum(x.weights[0] for x in po) == pytest.approx(1.0)
    assert rep.to_dict()["dropped"]["po_source"]["instruction"] == {"equal_rewards": 1, "lt_2_scored": 1}
    import fusedata.pairs.fuserl as fr
    for doc in (fr.__doc__, build_fuserl.__doc__):
        assert "is not public" in doc and "documented reconstruction" in doc


# -- TRL rows ---------------------------------------------------------------------------------

def test_trl_row_shapes():
    p = Prompt.make("instruction", "src", [{"role": "system", "content": "be nice"},
                                            {"role": "user", "content": "hi"}])
    cands = {p.id: [C(p, "a", 0, 0.55), C(p, "a", 1, 0.5)]}
    sft, _, _ = build_fusechat3(cands, sft_ratio=1.0)
    _, dpo, _ = build_fusechat3(cands, sft_ratio=0.0)
    (row,) = to_trl_rows(sft, "sft")
    assert row["messages"] == p.messages + [{"role": "assistant", "content": "a#0"}]
    assert row["model"] == "a" and row["score"] == 0.55 and row["weight"] == 1.0
    (row,) = to_trl_rows(dpo, "preference")
    assert row["prompt"] == p.messages
    assert row["chosen"] == [{"role": "assistant", "content": "a#0"}]
    assert row["rejected"] == [{"role": "assistant", "content": "a#1"}]
    assert row["chosen_model"] == row["rejected_model"] == "a"
    assert (row["score_chosen"], row["score_rejected"]) == (0.55, 0.5)
    assert row["margin"] == pytest.approx(0.05)
    for x in dpo + sft:  # the prompt is never repeated inside chosen/rejected
        assert all(m["role"] == "assistant" for m in x.chosen + x.rejected)
    row["prompt"][0]["content"] = "mutated"
    assert dpo[0].prompt[0]["content"] == "be nice"  # rows do not alias the records
    with pytest.raises(ValueError):
        to_trl_rows(sft, "preference")
    with pytest.raises(ValueError):
        to_trl_rows(sft, "bogus")
