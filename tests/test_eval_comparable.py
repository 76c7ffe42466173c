"""The commands users type (``--bench arena-hard``, ``--judge gpt-4.1``), successor judges, and the
"leaderboard-comparable" verdict in report.md, manifest.json and the summary table.

The end-to-end test routes a bare judge name through ``OPENAI_BASE_URL`` to the real vLLM server
on 127.0.0.1, as an alpaca_eval or arena-hard-auto user's environment would send it to their API.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evals.cli import app
from evals.comparable import JUDGES, OPENAI_URL, route_judge, verdict
from evals.config import DEFAULT_MODEL, load
from fusedata.errors import FusekitError

NO_API: dict[str, str] = {}


@pytest.fixture
def no_api_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_route_judge_as_alpaca_eval_and_arena_hard_users_expect(tmp_path):
    local = "http://127.0.0.1:8000/v1"
    assert route_judge("arena-hard-v2.0", "gpt-4.1", None, {"OPENAI_API_KEY": "k"}) == (
        "gpt-4.1", OPENAI_URL, "OPENAI_API_KEY (OpenAI API)")
    assert route_judge("arena-hard-v2.0", "gpt-4.1", None, {"OPENAI_BASE_URL": local, "OPENAI_API_KEY": "k"}) == (
        "gpt-4.1", local, "OPENAI_BASE_URL")
    # An explicit --judge-base-url wins over the environment.
    other = "http://127.0.0.1:9000/v1"
    assert route_judge("mt-bench", "gpt-4", other, {"OPENAI_BASE_URL": local})[1] == other
    # In-process references are never sent anywhere.
    folder = tmp_path / "my-judge"
    folder.mkdir()
    for ref in (DEFAULT_MODEL, "Qwen/Qwen2.5-7B-Instruct", str(folder), "judge.gguf"):
        assert route_judge("mt-bench", ref, None, {"OPENAI_API_KEY": "k"}) == (ref, None, "in-process")
    with pytest.raises(FusekitError, match="OPENAI_API_KEY"):
        route_judge("arena-hard-v2.0", "gpt-4.1", None, NO_API)
    # A bare name that is no API model stays a Hub id (gpt2 is one).
    assert route_judge("mt-bench", "gpt2", None, NO_API) == ("gpt2", None, "in-process")


def test_upstream_judge_and_successors():
    env = {"OPENAI_API_KEY": "k"}
    assert route_judge("arena-hard-v2.0", "upstream", None, env)[0] == "gpt-4.1"
    assert route_judge("mt-bench", "upstream", None, env)[0] == "gpt-4"
    # Retired judges: `upstream` sends the successor; the verdict then says not comparable, and why.
    for bench in ("arena-hard-v0.1", "alpaca-eval"):
        assert JUDGES[bench].model == "gpt-4-1106-preview" and JUDGES[bench].retired
        assert route_judge(bench, "upstream", None, env)[0] == "gpt-4.1"
    v = _verdict("arena-hard-v0.1", judge="gpt-4.1")
    assert not v.comparable
    assert v.differs == ["judge gpt-4.1 (upstream: gpt-4-1106-preview, retired; gpt-4.1 is its successor by "
                         "arena-hard-auto v2.0's judge)"]


PIN = "a" * 64


def _verdict(bench: str, judge: str, **run):
    return verdict(bench, {"prompt": "upstream", "limit": None, "categories": None, **run}, {"model": judge},
                   {"question.jsonl": PIN}, {"pair-v2": {"set": "upstream"}},
                   {"m": {"temperature": None, "max_tokens": None, "system_prompt": None}}, {PIN}, parser="upstream")


def test_verdict_is_yes_only_when_everything_is_upstreams():
    assert _verdict("mt-bench", "gpt-4").text() == "yes"
    assert _verdict("arena-hard-v2.0", "gpt-4.1").comparable
    v = verdict("mt-bench", {"prompt": "fusekit-1", "limit": 8, "categories": ["math"]},
                {"model": "gpt-4", "max_tokens": 16, "prefill": "Rating: [["}, {"question.jsonl": "b" * 64}, {},
                {"m": {"temperature": 0.2, "max_tokens": None, "system_prompt": "be brief"}}, {PIN},
                parser="lenient", baseline_ok=False, extra=["reference answers gpt-4-0125-preview"])
    assert v.differs == [
        "judge prompt fusekit-1 (not upstream's text)", "judge max_tokens capped at 16", "judge replies prefilled",
        "baseline is not upstream's", "subset: limit 8", "subset: categories math",
        "data not verified against the pins: question.jsonl", "m: generation temperature, system_prompt overridden",
        "parser lenient", "reference answers gpt-4-0125-preview"]
    assert v.text().startswith("no: judge prompt fusekit-1")


def test_bench_alias_and_default_judge(no_api_env, monkeypatch):
    cfg = load(None, [], {"bench": "arena-hard"})
    assert (cfg.bench, cfg.requested_bench) == ("arena-hard-v2.0", "arena-hard")
    assert (cfg.judge.model, cfg.judge.base_url) == (DEFAULT_MODEL, None)  # offline: the smoke-test judge
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    cfg = load(None, [], {"bench": "arena-hard"})
    assert (cfg.judge.model, cfg.judge.base_url, cfg.judge.routed) == (
        "gpt-4.1", "http://127.0.0.1:8000/v1", "OPENAI_BASE_URL")
    assert cfg.judge.settings().endpoint.base_url == "http://127.0.0.1:8000/v1"


def test_cli_refuses_an_api_judge_without_a_route(no_api_env, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--bench", "arena-hard", "--judge", "gpt-4.1", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "OPENAI_API_KEY" in r.output and "Traceback" not in r.output
    assert not out.exists()
    help_text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "400"}).output
    assert "arena-hard means arena-hard-v2.0" in " ".join(help_text.replace("│", " ").split())


def test_judge_name_routed_by_openai_base_url_and_verdict_reported(tmp_path, vllm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", vllm_server)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--bench", "mt_bench", "--categories", "writing", "--limit", "1",
                                 "--model", "smollm2-135m", "--base-url", vllm_server, "--judge", "smollm2-135m",
                                 "--max-tokens", "24", "--judge-max-tokens", "24", "--out", str(out)],
                           catch_exceptions=False, terminal_width=200)
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    bench = manifest["benches"]["mt-bench"]
    assert bench["settings"]["judge"]["base_url"] == vllm_server
    assert bench["settings"]["judge"]["routed"] == "OPENAI_BASE_URL"
    # The upstream prompts were read from the installed FastChat copy and recorded with their pin.
    sources = bench["settings"]["prompt_sources"]
    assert set(sources) == {"single-v1", "single-v1-multi-turn"}
    assert all(s["set"] == "upstream" and len(s["sha256"]) == 64 for s in sources.values())
    differs = bench["leaderboard_comparable"]["differs"]
    assert bench["leaderboard_comparable"]["comparable"] is False
    assert differs[0] == "judge smollm2-135m (upstream: gpt-4)"
    assert "subset: limit 1" in differs and "smollm2-135m: generation max_tokens overridden" in differs
    report = (out / "report.md").read_text()
    assert "Leaderboard-comparable: **no**." in report and "- differs: judge max_tokens capped at 24" in report
    assert "mt-bench: not leaderboard-comparable: judge smollm2-135m (upstream: gpt-4)" in " ".join(r.output.split())


def test_a_missing_upstream_prompt_stops_before_any_model_loads(tmp_path, monkeypatch):
    """The recipe check reads every judge prompt the bench may use: an altered text is one message, exit 2."""
    from evals.judges import mt_bench

    fake = tmp_path / "FastChat"
    path = fake / mt_bench.JUDGE_PROMPTS.checkout_path
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "single-v1"}\n')
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--bench", "mt-bench", "--data-dir", str(fake), "--out", str(out)])
    assert r.exit_code == 2 and "is not the pinned upstream file" in r.output and "Traceback" not in r.output
    assert not out.exists()
