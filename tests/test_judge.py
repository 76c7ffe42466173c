"""The one judge client: the in-process backend's first-token log-probs against a plain unpadded
forward pass, its text path, the endpoint backend on loopback servers, and the cache key."""

from __future__ import annotations

import math

import pytest

from fusedata.endpoint import EndpointSettings
from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply, JudgeRequest, JudgeSettings, LocalJudge, make_judge
from fusedata.records import canonical_json, sha256_hex
from tests.conftest import free_port
from tests.servers import ScriptedOpenAI

TEXTS = ["Rate this: 12.", "Rate this answer to 7 + 5, which says it is 13. " * 6, "Hi."]


def asks(**kw) -> list[JudgeRequest]:
    return [JudgeRequest([{"role": "user", "content": t}], "p", "v1", max_tokens=1, **kw) for t in TEXTS]


def complete(judge, requests: list[JudgeRequest]) -> list[JudgeReply]:
    replies: list[JudgeReply | None] = [None] * len(requests)
    judge.complete(requests, lambda i, r: replies.__setitem__(i, r))
    assert all(r is not None for r in replies)
    return replies  # type: ignore[return-value]


@pytest.fixture(scope="module")
def local(tiny_llama):
    judge = make_judge(JudgeSettings(str(tiny_llama), batch_size=2))
    yield judge
    judge.close()


def unpadded_logprobs(judge: LocalJudge, text: str) -> list[float]:
    import torch

    tok, model = judge.engine.tokenizer, judge.engine.model
    ids = tok(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    return torch.log_softmax(logits, -1).tolist()


def test_candidates_get_the_mass_of_every_token_reading_as_them(local):
    assert isinstance(local, LocalJudge)
    replies = complete(local, asks(candidates=("1", "7", "9")))
    tok = local.engine.tokenizer
    for text, reply in zip(TEXTS, replies):
        logp = unpadded_logprobs(local, text)
        for digit in ("1", "7", "9"):
            ids = [i for i in range(len(tok)) if tok.decode([i]).strip() == digit]
            want = math.log(sum(math.exp(logp[i]) for i in ids))
            assert reply.top_logprobs[digit] == pytest.approx(want, abs=1e-6)
        assert reply.ok and reply.completion_tokens == 1 and reply.prompt_tokens > 5


def test_top_logprobs_are_the_first_tokens_alternatives(local):
    replies = complete(local, asks(top_logprobs=5))
    tok = local.engine.tokenizer
    for text, reply in zip(TEXTS, replies):
        logp = unpadded_logprobs(local, text)
        best = sorted(range(len(logp)), key=lambda i: -logp[i])[:5]
        want: dict[str, float] = {}
        for i in best:
            want.setdefault(tok.decode([i]), logp[i])
        assert reply.top_logprobs == pytest.approx(want, abs=1e-6)
        assert reply.text == tok.decode([best[0]])
    # batched (batch_size 2, mixed lengths) equals one request at a time
    single = [complete(local, [r])[0] for r in asks(top_logprobs=5)]
    for one, batched in zip(single, replies):
        assert one.top_logprobs == pytest.approx(batched.top_logprobs, abs=1e-6)


def test_text_replies_continue_the_prefill_and_long_prompts_fail_alone(local, tiny_llama):
    [reply] = complete(local, [JudgeRequest([{"role": "user", "content": "Rate it."}], "p", "v1", max_tokens=4,
                                            prefill="Rating: [[")])
    assert reply.ok and reply.text.startswith("Rating: [[") and reply.top_logprobs is None
    short = make_judge(JudgeSettings(str(tiny_llama), max_length=40))
    try:
        replies = complete(short, asks(top_logprobs=2))
    finally:
        short.close()
    assert [r.ok for r in replies] == [True, False, True]
    assert "over max_length=40" in replies[1].error


def test_endpoint_judge_replies_and_failures():
    with ScriptedOpenAI(lambda n: "nonjson" if n == 1 else "ok") as srv:
        judge = make_judge(JudgeSettings("m", EndpointSettings(srv.url, "m", concurrency=1)))
        replies = complete(judge, asks())
        with pytest.raises(FusekitError, match="prefill needs an in-process judge"):
            judge.complete(asks(prefill="Rating: "), lambda i, r: None)
        judge.close()
    assert [r.ok for r in replies] == [True, False, True] and replies[1].error.startswith("JSONDecodeError")
    assert replies[0].top_logprobs is None and replies[0].prompt_tokens == 7


def test_unreachable_endpoint_judge_is_named():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(FusekitError, match=f"judge 'gpt-x': endpoint {url} is unreachable"):
        make_judge(JudgeSettings("gpt-x", EndpointSettings(url, "gpt-x", timeout=5)))


def test_cache_key_of_a_request_without_candidates_is_the_one_stored_before():
    req = JudgeRequest([{"role": "user", "content": "rate"}], "single-v1", "fusekit-1", 0.0, 2048)
    before = {"judge": "j", "messages": [{"role": "user", "content": "rate"}], "prompt": "single-v1",
              "prompt_version": "fusekit-1", "temperature": 0.0, "max_tokens": 2048, "top_logprobs": 0, "prefill": ""}
    assert req.key("j") == sha256_hex(canonical_json(before))
    with_candidates = JudgeRequest(req.messages, "single-v1", "fusekit-1", candidates=("1",))
    assert with_candidates.key("j") != req.key("j")
