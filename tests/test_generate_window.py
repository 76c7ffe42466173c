"""Endpoints kept busy: the sliding window, sources in parallel, the rpm limit, n samples per request and
plain progress lines. The servers are loopback fakes (tests/servers.py): only a fake can be slow on
purpose for one chosen request."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from fusedata import recipe as recipe_mod
from fusedata.endpoint import ChatRequest, Endpoint, EndpointSettings
from fusedata.engines import EngineConfig, GenRequest, sample_seed
from fusedata.engines.openai_api import OpenAIEngine
from fusedata.errors import FusekitError
from fusedata.generate import PlainLines, generate_for
from fusedata.records import Prompt, SamplingParams
from fusedata.store import RunStore
from tests.servers import ScriptedOpenAI, SyntheticOpenAI


def _chat(i: int) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": f"question {i}"}], 8)


def test_one_slow_request_holds_up_nothing_else():
    # The first request takes 4 s; with 2 slots the other 29 (20 ms each) all finish meanwhile on the
    # other slot. A batch barrier would have made the slow one's batch-mates wait for it.
    with ScriptedOpenAI(lambda n: "slow" if n == 0 else "ok", delay=0.02, slow_seconds=4.0) as srv:
        endpoint = Endpoint(EndpointSettings(srv.url, "m", concurrency=2), "model 'm'")
        try:
            order = [key for done in endpoint.stream((i, _chat(i)) for i in range(30)) for key, _ in done]
        finally:
            endpoint.close()
    assert sorted(order) == list(range(30))
    assert order[-1] == 0
    assert srv.max_in_flight == 2


def test_requests_are_drawn_lazily_through_the_window():
    drawn = 0

    def requests():
        nonlocal drawn
        for i in range(200):
            drawn += 1
            yield i, _chat(i)

    with ScriptedOpenAI(lambda n: "ok", delay=0.05) as srv:
        endpoint = Endpoint(EndpointSettings(srv.url, "m", concurrency=3), "model 'm'")
        try:
            stream = endpoint.stream(requests())
            first = next(stream)
            # the window (2 × 3) plus the refill after the first completions, never the whole list
            assert drawn <= 6 + len(first)
            stream.close()
        finally:
            endpoint.close()
    assert srv.calls < 20


def test_rpm_spaces_the_sends():
    # 1200 requests per minute: one every 50 ms, even with 8 slots free.
    with ScriptedOpenAI(lambda n: "ok") as srv:
        endpoint = Endpoint(EndpointSettings(srv.url, "m", concurrency=8, rpm=1200), "model 'm'")
        try:
            replies = {}
            endpoint.chat([_chat(i) for i in range(8)], replies.__setitem__)
        finally:
            endpoint.close()
    assert len(replies) == 8 and all(r.ok for r in replies.values())
    gaps = [b - a for a, b in zip(srv.times, srv.times[1:])]
    assert min(gaps) >= 0.045, gaps


@pytest.mark.parametrize("rpm", [0, -5, float("inf"), "fast"])
def test_rpm_must_be_a_positive_rate(rpm):
    raw = {"name": "x", "domains": {"math": ["embedded:math"]},
           "models": [{"model": "m", "engine": "openai", "base_url": "http://127.0.0.1:1/v1", "rpm": rpm}]}
    with pytest.raises(FusekitError, match="rpm"):
        recipe_mod.parse(raw)


def test_n_per_request_is_for_served_models_only():
    raw = {"name": "x", "domains": {"math": ["embedded:math"]},
           "models": [{"model": "embedded:smollm2-135m", "n_per_request": False}]}
    with pytest.raises(FusekitError, match="n_per_request only apply to engine 'openai'"):
        recipe_mod.parse(raw)


def _prompts(k: int) -> list[Prompt]:
    return [Prompt.make("math", "t", [{"role": "user", "content": f"What is {i} + {i + 1}?"}]) for i in range(k)]


def _generate(srv: SyntheticOpenAI, n_per_request: bool | None) -> tuple[OpenAIEngine, list]:
    params = SamplingParams(n=3, max_tokens=16, seed=7)
    cfg = EngineConfig("src", "synthetic", "openai", EndpointSettings(srv.url, "synthetic", concurrency=2),
                       n_per_request=n_per_request)
    engine = OpenAIEngine(cfg)
    try:
        out = engine.generate([GenRequest(p, (0, 1, 2)) for p in _prompts(3)], params)
    finally:
        engine.close()
    return engine, out


def test_a_prompts_samples_go_in_one_request_where_the_server_does_n():
    with SyntheticOpenAI(honour_n=True) as srv:
        engine, out = _generate(srv, None)
    assert srv.calls == 3 and engine.n_per_request
    params = SamplingParams(n=3, max_tokens=16, seed=7)
    for r in out:
        # one request per prompt, seeded from its first sample; choice i is sample i
        assert r.ok and r.text.startswith(f"Sample {r.sample_idx} of seed {sample_seed(params, r.prompt_id, 0)}:")
    assert len({r.text for r in out}) == 9


@pytest.mark.parametrize("n_per_request", [None, False])
def test_a_server_that_ignores_n_gets_one_request_per_sample(n_per_request):
    # llama.cpp answers n > 1 with one choice: the first such reply switches the model to one request per
    # sample, and every sample is then drawn from its own seed, as if it had been so from the start.
    with SyntheticOpenAI(honour_n=False) as srv:
        engine, out = _generate(srv, n_per_request)
    assert not engine.n_per_request
    params = SamplingParams(n=3, max_tokens=16, seed=7)
    assert [(r.sample_idx, r.ok) for r in out] == [(i, True) for _ in range(3) for i in range(3)]
    for r in out:
        assert r.text.startswith(f"Sample 0 of seed {sample_seed(params, r.prompt_id, r.sample_idx)}:")
    assert srv.calls == 9


def test_sources_on_different_endpoints_generate_at_the_same_time(tmp_path):
    with SyntheticOpenAI(["a"], median=0.05) as one, SyntheticOpenAI(["b"], median=0.05) as two:
        recipe = recipe_mod.parse({
            "name": "par", "domains": {"math": {"sources": ["embedded:math"], "limit": 12}},
            "models": [{"name": name, "model": name, "engine": "openai", "base_url": srv.url, "concurrency": 2,
                        "sampling": {"n": 2, "max_tokens": 16}} for name, srv in (("a", one), ("b", two))],
        })
        from fusedata.generate import collect_prompts

        prompts = collect_prompts(recipe)
        with RunStore(tmp_path) as store:
            store.put_prompts(prompts)
            rep = generate_for(recipe.models, prompts, store, Console(file=io.StringIO()))
            stats = store.response_stats()
    assert rep.new_responses == {"a": 24, "b": 24} and not +rep.new_failures
    assert stats["a"]["responses"] == stats["b"]["responses"] == 24
    # each server was still working when the other started: they overlapped in time
    assert one.first_call < two.last_reply and two.first_call < one.last_reply


def test_plain_lines_report_each_running_task_periodically():
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    with PlainLines(console, every=0.05) as bar:
        task = bar.add_task("[bold]qwen", total=10, tokens=0, failed=0)
        bar.update(task, advance=3, tokens=300, failed=1)
        time.sleep(0.3)
        bar.update(task, advance=7, tokens=700)
        bar.stop_task(task)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("qwen: 3/10 (30%), ") and "tok/s" in lines[0] and lines[0].count("1 failed") == 1
    assert lines[-1].startswith("qwen: 10/10 (100%), ") and "done in 0:00:00" in lines[-1]
    assert sum(line.startswith("qwen: 3/10") for line in lines) >= 2  # repeated while nothing moved
