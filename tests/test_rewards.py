"""Reward models: sequence classifiers and 1–9 LLM judges, on tiny random models, a real
vLLM server and loopback servers that answer in set ways.

Expected values are computed here a second, independent way (a plain unpadded forward pass,
a softmax written out, a token scan over the whole vocabulary), never by calling the code
under test twice.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from fusedata.endpoint import EndpointSettings
from fusedata.errors import FusekitError
from fusedata.judge import LocalJudge
from fusedata.rewards import (
    JudgeRewardConfig,
    NoRewardConfig,
    SeqclsRewardConfig,
    make_reward,
    scorer_name,
    validate_spec,
)
from fusedata.rewards.judge import JudgeReward, judge_prompt, reward_prompt
from fusedata.rewards.seqcls import SeqClsReward
from tests.conftest import free_port
from tests.fixtures.tiny import CHATML
from tests.servers import FlakyOpenAI

MATH = [{"role": "user", "content": "What is 7 + 5?"}]
CODE = [{"role": "system", "content": "You write Python."},
        {"role": "user", "content": "Write a function that returns the sum of two numbers."}]
SLEEP = [{"role": "user", "content": "Give three tips for sleeping better."}]

# 7 items over 3 prompts, lengths from a few tokens to a few hundred.
ITEMS = [
    (MATH, "12"),
    (CODE, "def add(a, b):\n    return a + b\n" * 12),
    (SLEEP, "Go to bed at the same time. Keep the room dark. Avoid coffee late."),
    (MATH, "The answer is 12. " * 12),
    (CODE, "def add(a, b): return a+b"),
    (SLEEP, "Sleep."),
    (MATH, "7 + 5 = 13"),
]


# ================================================================================ seqcls
@pytest.fixture(scope="module")
def rm(tiny_rm):
    r = make_reward({"kind": "seqcls", "model": str(tiny_rm), "batch_size": 3, "max_length": 512})
    yield r
    r.close()


def test_seqcls_batched_equals_one_by_one(rm):
    assert rm.name.startswith("rm:") and rm.name.endswith(rm.cfg.model)
    lengths = [len(rm.encode(p, r)[0]) for p, r in ITEMS]
    assert max(lengths) > 8 * min(lengths)  # very different lengths: padding really happens
    batched = rm.score_many(ITEMS)
    single = [rm.score_many([it])[0] for it in ITEMS]
    assert batched == pytest.approx(single, abs=1e-5)
    assert all(math.isfinite(s) for s in batched)
    assert len({round(s, 7) for s in batched}) == len(ITEMS)  # differ across responses
    assert rm.last_errors == {}
    # score() over one prompt is score_many over its pairs
    math_items = [r for p, r in ITEMS if p is MATH]
    assert rm.score(MATH, math_items) == pytest.approx([b for (p, _), b in zip(ITEMS, batched) if p is MATH], abs=1e-5)


def test_seqcls_matches_plain_unpadded_forward(rm):
    """Batched scores equal logits[0, 0] of the model run on one unpadded sequence."""
    import torch

    batched = rm.score_many(ITEMS)
    for (p, r), got in zip(ITEMS, batched):
        turns = [*p, {"role": "assistant", "content": r}]
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in turns)
        ids = rm.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            want = rm.model(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert got == pytest.approx(want, abs=1e-5)


def test_seqcls_token_ids_follow_the_template(rm):
    tok = rm.tokenizer
    ids, truncated = rm.encode(MATH, "12")
    assert not truncated
    # ChatML written out by hand: no BOS in the template, none added by the tokenizer
    want = tok("<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n12<|im_end|>\n",
               add_special_tokens=False)["input_ids"]
    assert ids == want
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids.count(start) == 2
    assert tok.bos_token_id not in ids and rm.pad_id not in ids


def test_seqcls_exactly_one_bos(tiny_rm, tmp_path):
    """A template that emits BOS + a tokenizer that adds BOS: still exactly one; a template
    without BOS for a tokenizer that adds one: the one BOS is put back."""
    from tokenizers import processors
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "rm-bos"
    shutil.copytree(tiny_rm, folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)])
    tok.chat_template = "{{ bos_token }}" + CHATML
    cfg = validate_spec({"kind": "seqcls", "model": str(folder)})

    r = SeqClsReward(cfg, model=model, tokenizer=tok)
    text = r.render(MATH, "12")
    assert text.startswith("<|endoftext|><|im_start|>user")
    assert tok(text)["input_ids"][:2] == [bos, bos]  # the pitfall: naive tokenising doubles it
    ids, _ = r.encode(MATH, "12")
    assert ids[0] == bos and ids.count(bos) == 1 and ids[1] == tok.convert_tokens_to_ids("<|im_start|>")

    tok.chat_template = CHATML
    r2 = SeqClsReward(cfg, model=model, tokenizer=tok)
    ids2, _ = r2.encode(MATH, "12")
    assert ids2 == ids
    assert r2.score_many([(MATH, "12")]) == pytest.approx(r.score_many([(MATH, "12")]), abs=1e-6)


def test_seqcls_truncation_keeps_the_end(tiny_rm, caplog):
    r = make_reward({"kind": "seqcls", "model": str(tiny_rm), "max_length": 24, "batch_size": 2})
    long = "Plants turn light, water and carbon dioxide into sugar and oxygen. " * 4
    full_r = make_reward({"kind": "seqcls", "model": str(tiny_rm)})
    full, _ = full_r.encode(SLEEP, long)
    ids, truncated = r.encode(SLEEP, long)
    assert truncated and len(full) > 24 and ids == full[-24:]
    with caplog.at_level("WARNING", logger="fusedata.rewards.seqcls"):
        scores = r.score_many([(SLEEP, long), (MATH, "12")])
    assert all(math.isfinite(s) for s in scores) and r.truncated == 1 and r.last_errors == {}
    assert "1 of 2 pairs" in caplog.text


class _WithScore:
    """A model whose output carries ``score`` (ArmoRM style) as 2·logit + 1."""

    def __init__(self, inner, has_score=True):
        self.inner, self.config, self.has_score = inner, inner.config, has_score

    def eval(self):
        return self

    def parameters(self):
        return self.inner.parameters()

    def __call__(self, **kw):
        out = self.inner(**kw)
        return SimpleNamespace(logits=out.logits, score=out.logits * 2 + 1) if self.has_score else out


def test_seqcls_output_field(rm, tiny_rm):
    base = rm.score_many(ITEMS[:3])
    cfg = validate_spec({"kind": "seqcls", "model": str(tiny_rm), "output": "auto"})
    auto = SeqClsReward(cfg, model=_WithScore(rm.model), tokenizer=rm.tokenizer).score_many(ITEMS[:3])
    assert auto == pytest.approx([2 * b + 1 for b in base], abs=1e-5)
    cfg = validate_spec({"kind": "seqcls", "model": str(tiny_rm), "output": "logits"})
    logits = SeqClsReward(cfg, model=_WithScore(rm.model), tokenizer=rm.tokenizer).score_many(ITEMS[:3])
    assert logits == pytest.approx(base, abs=1e-5)
    cfg = validate_spec({"kind": "seqcls", "model": str(tiny_rm), "output": "score"})
    with pytest.raises(FusekitError, match="no 'score' field"):
        SeqClsReward(cfg, model=_WithScore(rm.model, has_score=False), tokenizer=rm.tokenizer).score_many(ITEMS[:1])


# ================================================================================ judge, in-process
@pytest.fixture(scope="module")
def judge(tiny_llama):
    j = make_reward({"kind": "judge", "model": str(tiny_llama), "batch_size": 3})
    yield j
    j.close()


def test_local_judge_batched_equals_one_by_one(judge):
    assert isinstance(judge, JudgeReward) and isinstance(judge.judge, LocalJudge) and judge.name.startswith("judge:")
    assert judge.prompt_version == reward_prompt().version == "fusekit-judge-v1"
    batched = judge.score_many(ITEMS)
    single = [judge.score_many([it])[0] for it in ITEMS]
    assert batched == pytest.approx(single, abs=1e-5)
    assert all(1.0 <= s <= 9.0 for s in batched) and judge.last_errors == {}
    assert all(0.0 < m < 1.0 for m in judge.last_digit_mass)


def test_local_judge_expectation_by_hand(judge):
    """One item: full softmax over the vocabulary of an unpadded forward, digits found by
    decoding every token id, Σ p(d)·d / Σ p(d) written out."""
    import torch

    tok, model = judge.judge.engine.tokenizer, judge.judge.engine.model
    p, r = ITEMS[2]
    msg = judge_prompt(p, r)
    assert "User: Give three tips for sleeping better." in msg and r in msg
    text = f"<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double().tolist()
    top = max(logits)
    z = sum(math.exp(v - top) for v in logits)
    num = den = 0.0
    n_digit_tokens = 0
    for tid in range(len(logits)):
        s = tok.decode([tid]).strip()
        if s in {"1", "2", "3", "4", "5", "6", "7", "8", "9"}:
            pr = math.exp(logits[tid] - top) / z
            num += pr * int(s)
            den += pr
            n_digit_tokens += 1
    assert n_digit_tokens >= 9
    assert judge.score_many([(p, r)])[0] == pytest.approx(num / den, abs=1e-6)
    assert judge.last_digit_mass[0] == pytest.approx(den, rel=1e-6)


def test_local_judge_too_long_is_a_recorded_failure(tiny_llama):
    j = make_reward({"kind": "judge", "model": str(tiny_llama), "max_length": 300})
    out = j.score_many([(MATH, "12"), (MATH, "The answer is 12. " * 40)])
    assert 1 <= out[0] <= 9 and math.isnan(out[1])
    assert list(j.last_errors) == [1] and "max_length=300" in j.last_errors[1]


# ================================================================================ judge over HTTP
@pytest.mark.slow
def test_http_judge_against_vllm_server(vllm_server):
    j = make_reward({"kind": "judge", "model": "smollm2-135m", "base_url": vllm_server, "concurrency": 2})
    try:
        assert j.name == "judge:smollm2-135m"
        items = [ITEMS[0], ITEMS[2], (MATH, "The answer is 12.")]
        first = j.score_many(items)
        assert j.last_errors == {}
        assert all(1.0 <= s <= 9.0 for s in first)
        assert j.score_many(items) == pytest.approx(first, abs=1e-9)
    finally:
        j.close()


class LogprobServer:
    """Answers every chat request with a fixed reply and fixed top logprobs for its one token."""

    def __init__(self, content: str, top: list[tuple[str, float]] | None):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(req)
                logprobs = None
                if top is not None:
                    entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
                    logprobs = {"content": [{**entries[0], "top_logprobs": entries}]}
                self._send({
                    "id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "finish_reason": "length", "logprobs": logprobs,
                                 "message": {"role": "assistant", "content": content}}],
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LogprobServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_judge_expectation_from_top_logprobs():
    # " 7" and "7" both count for 7; "The" is no digit. p: 7 -> e^-0.5 + e^-2.5, 8 -> e^-1, 3 -> e^-3
    top = [(" 7", -0.5), ("8", -1.0), ("7", -2.5), ("The", -2.0), ("3\n", -3.0)]
    p7, p8, p3 = math.exp(-0.5) + math.exp(-2.5), math.exp(-1.0), math.exp(-3.0)
    want = (7 * p7 + 8 * p8 + 3 * p3) / (p7 + p8 + p3)
    with LogprobServer(" 7", top) as srv:
        j = make_reward({"kind": "judge", "model": "fake", "base_url": srv.url})
        assert j.score_many([ITEMS[0]]) == pytest.approx([want], abs=1e-12)
        j.close()
    req = srv.requests[0]
    assert (req["logprobs"], req["top_logprobs"], req["max_tokens"], req["temperature"]) == (True, 10, 1, 0)
    assert req["messages"] == [{"role": "user", "content": judge_prompt(*ITEMS[0])}]


def test_http_judge_without_logprobs_reads_the_digit():
    with FlakyOpenAI(fail_first=0, text="7") as srv:
        j = make_reward({"kind": "judge", "model": "flaky", "base_url": srv.url})
        assert j.score(MATH, ["12", "13"]) == [7.0, 7.0] and j.last_errors == {}
        j.close()


def test_http_judge_unparsable_reply_is_nan_with_reason():
    with FlakyOpenAI(fail_first=0, text="no idea") as srv:
        j = make_reward({"kind": "judge", "model": "flaky", "base_url": srv.url})
        out = j.score_many([ITEMS[0], ITEMS[1]])
        j.close()
    assert all(math.isnan(s) for s in out)
    assert sorted(j.last_errors) == [0, 1] and "no idea" in j.last_errors[0]
    # logprobs present but no digit among them, reply without a digit either
    with LogprobServer("Hello", [("Hello", -0.1), ("The", -2.0)]) as srv:
        j = make_reward({"kind": "judge", "model": "fake", "base_url": srv.url})
        out = j.score_many([ITEMS[0]])
        j.close()
    assert math.isnan(out[0]) and "top logprobs" in j.last_errors[0]


def test_http_judge_retries_then_scores():
    with FlakyOpenAI(fail_first=2, status=429, text="8") as srv:
        j = make_reward({"kind": "judge", "model": "flaky", "base_url": srv.url, "concurrency": 1})
        assert j.score_many([ITEMS[0]]) == [8.0]
        j.close()
    assert srv.chat_calls == 3


def test_http_judge_client_error_fails_the_item_without_retry():
    with FlakyOpenAI(fail_first=100, status=400) as srv:
        j = make_reward({"kind": "judge", "model": "flaky", "base_url": srv.url})
        out = j.score_many([ITEMS[0]])
        j.close()
    assert math.isnan(out[0]) and j.last_errors[0].startswith("HTTP 400") and srv.chat_calls == 1


def test_http_judge_unreachable_endpoint():
    with pytest.raises(FusekitError, match="unreachable"):
        make_reward({"kind": "judge", "model": "x", "base_url": f"http://127.0.0.1:{free_port()}/v1", "timeout": 5})


# ================================================================================ specs
def test_kind_none_is_no_reward_model():
    assert make_reward({"kind": "none"}) is None


@pytest.mark.parametrize("spec, message", [
    ({"kind": "armo"}, "unknown reward kind 'armo'"),
    ({"model": "x"}, "unknown reward kind None"),
    ({"kind": "seqcls", "model": "x", "batchsize": 4}, "unknown key 'batchsize'"),
    ({"kind": "seqcls", "model": "x", "foo": 1, "bar": 2}, "unknown keys 'foo', 'bar'"),
    ({"kind": "seqcls"}, "needs 'model'"),
    ({"kind": "seqcls", "model": "x", "output": "reward"}, "output: unknown value 'reward'; expected one of auto"),
    ({"kind": "seqcls", "model": "x", "batch_size": 0}, "'batch_size' must be an integer >= 1"),
    ({"kind": "judge", "model": "x", "concurrency": 4}, "'concurrency' only apply to a judge with a 'base_url'"),
    ({"kind": "judge", "model": "x", "base_url": "http://h/v1", "device": "cpu"},
     "'device' only apply to an in-process"),
    ({"kind": "judge", "model": "x", "base_url": "http://h/v1", "timeout": -1}, "timeout must be a positive"),
    ({"kind": "none", "model": "x"}, "unknown key 'model'"),
    ("seqcls", "must be a mapping"),
])
def test_bad_specs(spec, message):
    with pytest.raises(FusekitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_reward(spec)


def test_specs_become_typed_configs_with_defaults():
    seq = validate_spec({"kind": "seqcls", "model": "a/rm", "batch_size": 2})
    assert isinstance(seq, SeqclsRewardConfig)
    assert (seq.model, seq.batch_size, seq.max_length, seq.output, seq.trust_remote_code) == ("a/rm", 2, 4096, "auto",
                                                                                              False)
    local = validate_spec({"kind": "judge", "model": "embedded:smollm2-135m"})
    assert isinstance(local, JudgeRewardConfig) and local.endpoint() is None
    assert (local.batch_size, local.max_length, local.device) == (8, None, None)
    http = validate_spec({"kind": "judge", "model": "m", "base_url": "http://h/v1", "concurrency": 2, "timeout": 5})
    assert http.endpoint() == EndpointSettings("http://h/v1", "m", concurrency=2, timeout=5.0)
    assert validate_spec({"kind": "none"}) == NoRewardConfig()
    assert validate_spec(seq) is seq
    # stored scores are keyed by these names
    assert scorer_name({"kind": "seqcls", "model": "a/rm"}) == "rm:a/rm"
    assert scorer_name({"kind": "judge", "model": "embedded:smollm2-135m"}).startswith("judge:smollm2-135m@")
    assert scorer_name({"kind": "judge", "model": "m", "name": "mine", "base_url": "http://h/v1"}).startswith("mine@")
    assert scorer_name({"kind": "none"}) is None


def test_seqcls_model_folder_missing(tmp_path):
    with pytest.raises(FusekitError, match="cannot load reward model .*no-such-rm"):
        make_reward({"kind": "seqcls", "model": str(tmp_path / "no-such-rm")})


def test_seqcls_folder_that_is_no_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FusekitError, match="cannot load reward model"):
        make_reward({"kind": "seqcls", "model": str(tmp_path)})
