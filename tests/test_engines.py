"""The three engines: transformers in-process, an OpenAI-compatible endpoint (a real llama.cpp
server on loopback, for what vLLM's server does not do: one choice for n > 1), and vLLM's errors
where this Python has no vLLM (tests/test_vllm_engine.py runs the real one)."""

from __future__ import annotations

import dataclasses
import socket
import sys

import pytest

from fusedata.endpoint import EndpointSettings
from fusedata.engines import EngineConfig, GenRequest, make_engine
from fusedata.errors import FusekitError
from fusedata.records import Prompt, SamplingParams
from tests.servers import FlakyOpenAI

PROMPTS = [
    Prompt.make("math", "t", [{"role": "user", "content": "What is 7 + 5?"}]),
    Prompt.make("code", "t", [{"role": "user", "content": "Write a function add(a, b) that returns a + b."}]),
    Prompt.make("instruction", "t", [{"role": "user", "content": "Give three tips for sleeping better."}]),
]


def served(name: str, model: str, url: str, **endpoint) -> EngineConfig:
    return EngineConfig(name=name, model=model, engine="openai", endpoint=EndpointSettings(url, model, **endpoint))


def test_transformers_engine_batched_equals_one_by_one(tiny_llama):
    eng = make_engine(EngineConfig(name="tiny", model=str(tiny_llama)))
    greedy = SamplingParams(temperature=0, max_tokens=10)
    batched = eng.generate([GenRequest(p, (0,)) for p in PROMPTS], greedy)
    single = [eng.generate([GenRequest(p, (0,))], greedy)[0] for p in PROMPTS]
    # Left padding must not change what a prompt generates.
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.ok and r.n_output_tokens == 10 and r.finish_reason == "length" for r in batched)
    assert [r.n_input_tokens for r in batched] == [r.n_input_tokens for r in single]
    assert len({r.n_input_tokens for r in batched}) > 1  # the prompts really had different lengths


def test_transformers_engine_samples_n_per_prompt_reproducibly(tiny_llama):
    eng = make_engine(EngineConfig(name="tiny", model=str(tiny_llama)))
    sp = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=8, n=3, seed=7)
    reqs = [GenRequest(PROMPTS[0], (0, 1, 2))]
    a, b = eng.generate(reqs, sp), eng.generate(reqs, sp)
    assert [r.sample_idx for r in a] == [0, 1, 2]
    assert [r.text for r in a] == [r.text for r in b]
    assert len({r.text for r in a}) > 1  # sampling, not three copies of one greedy answer
    assert {r.settings_hash for r in a} == {sp.hash()}


def test_transformers_engine_batch_failure_becomes_failure_records(tiny_llama, monkeypatch):
    eng = make_engine(EngineConfig(name="tiny", model=str(tiny_llama)))

    def oom(**kw):  # what a batch too big for the device does
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(eng.model, "generate", oom)
    out = eng.generate([GenRequest(PROMPTS[0], (0, 1))], SamplingParams(max_tokens=4))
    assert [r.ok for r in out] == [False, False]
    assert all(r.error == "RuntimeError: CUDA out of memory (simulated)" and r.text is None for r in out)


def test_engine_with_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FusekitError, match="model not found"):
        make_engine(EngineConfig(name="x", model=str(tmp_path / "nowhere" / "model")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FusekitError, match="has no config.json"):
        make_engine(EngineConfig(name="x", model=str(tmp_path / "empty")))


def test_vllm_absent_gives_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as on any machine without vLLM
    with pytest.raises(FusekitError) as e:
        make_engine(EngineConfig(name="big", model="meta-llama/Llama-3.1-8B-Instruct", engine="vllm"))
    assert "pip install 'fusekit[vllm]'" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_openai_engine_against_real_llama_cpp_server(llama_server):
    """llama.cpp answers n > 1 with a single choice: the engine falls back to one request per sample (vLLM's
    server honours n, tests/test_vllm_server.py)."""
    eng = make_engine(served("smol", "smollm2-135m", llama_server, concurrency=2))
    sp = SamplingParams(temperature=0.8, max_tokens=24, n=2, seed=3)
    out = eng.generate([GenRequest(PROMPTS[0], (0, 1)), GenRequest(PROMPTS[2], (0,))], sp)
    eng.close()
    assert eng.n_per_request is False
    assert [(r.prompt_id, r.sample_idx) for r in out] == [(PROMPTS[0].id, 0), (PROMPTS[0].id, 1), (PROMPTS[2].id, 0)]
    assert all(r.ok and r.text and 0 < r.n_output_tokens <= 24 and r.n_input_tokens > 5 for r in out)
    assert all(r.finish_reason in ("stop", "length") for r in out)
    # Seeds are per sample: the same request again gives the same text.
    eng2 = make_engine(served("smol", "smollm2-135m", llama_server))
    again = eng2.generate([GenRequest(PROMPTS[0], (0,))], sp)
    eng2.close()
    assert again[0].text == out[0].text


def test_openai_engine_retries_5xx_then_succeeds():
    with FlakyOpenAI(fail_first=2, status=503) as srv:
        eng = make_engine(served("f", "flaky", srv.url, max_retries=3))
        eng_out = eng.generate([GenRequest(PROMPTS[0], (0,))], SamplingParams(max_tokens=8))
        eng.close()
    assert eng_out[0].ok and eng_out[0].text == "The answer is \\boxed{12}."
    assert srv.chat_calls == 3 and eng_out[0].n_output_tokens == 5


def test_openai_engine_gives_up_and_records_the_error():
    with FlakyOpenAI(fail_first=100, status=503) as srv:
        eng = make_engine(served("f", "flaky", srv.url, max_retries=1))
        out = eng.generate([GenRequest(PROMPTS[0], (0,))], SamplingParams(max_tokens=8))
        eng.close()
    assert not out[0].ok and out[0].text is None and out[0].error.startswith("HTTP 503")
    assert srv.chat_calls == 2  # one try plus one retry, then it stops


def test_openai_engine_does_not_retry_client_errors():
    with FlakyOpenAI(fail_first=100, status=400) as srv:
        eng = make_engine(served("f", "flaky", srv.url, max_retries=3))
        out = eng.generate([GenRequest(PROMPTS[0], (0,))], SamplingParams(max_tokens=8))
        eng.close()
    assert out[0].error.startswith("HTTP 400") and srv.chat_calls == 1


def test_unreachable_endpoint_is_a_clear_error():
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FusekitError, match=f"endpoint http://127.0.0.1:{port}/v1 is unreachable"):
        make_engine(served("x", "m", f"http://127.0.0.1:{port}/v1", timeout=5))


def test_openai_engine_without_endpoint_is_a_clear_error():
    with pytest.raises(FusekitError, match="model 'x': engine 'openai' needs base_url"):
        make_engine(EngineConfig(name="x", model="m", engine="openai"))


def test_chunk_size_keeps_every_endpoint_slot_busy():
    assert EngineConfig(name="x", model="m", batch_size=8).chunk_size == 8
    assert served("x", "m", "http://h/v1", concurrency=8).chunk_size == 32
    assert dataclasses.replace(served("x", "m", "http://h/v1", concurrency=1), batch_size=16).chunk_size == 16
