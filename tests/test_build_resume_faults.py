"""`fusedata build` at scale's failure modes together: two servers that answer a fifth of the chat
requests with 429, 5xx or a body that is not JSON, and a build SIGKILLed three times at seeded
random moments, then re-run until nothing failed is left. It must end with every response stored
once, the failures retried, and, since the servers honour ``seed``, the very dataset an
uninterrupted run against fault-free servers builds. First, the synthetic server's own promises."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pyarrow.parquet as pq
import yaml

from fusedata.dataset import run_dataset_folder
from tests.conftest import REPO
from tests.servers import SyntheticOpenAI
from tests.test_build import rows, run_cli
from tests.test_build_faults import count

PROMPTS, SAMPLES = 24, 2
MODELS = ("a", "b")  # model i is served by server i; the judge by server 0
TOTAL = PROMPTS * SAMPLES * len(MODELS)
FAILED = ("SELECT (SELECT COUNT(*) FROM responses WHERE error IS NOT NULL OR text IS NULL)"
          " + (SELECT COUNT(*) FROM scores WHERE error IS NOT NULL)")


def servers(fault_rate: float) -> list[SyntheticOpenAI]:
    return [SyntheticOpenAI((m,), judges=("judge",) if i == 0 else (), median=0.02, sigma=0.5,
                            fault_rate=fault_rate, seed=7 + i) for i, m in enumerate(MODELS)]


def write_recipe(folder: Path, urls: list[str]) -> Path:
    """Additions (the servers answer about half right), math verifier and the judge as reward, fusechat3
    pairs with a gap window that whole-digit ratings can meet; max_retries 1 so that failures get stored."""
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"add-{i}", "question": f"What is {i + 3} + {2 * i + 5}?",
                                           "answer": str(3 * i + 8)}) + "\n" for i in range(PROMPTS)))
    endpoint = {"engine": "openai", "concurrency": 2, "max_retries": 1}
    recipe = {
        "name": "resume-faults", "out": str(folder / "run"),
        "domains": {"math": {"sources": [{"name": "embedded:math", "data_files": str(prompts)}]}},
        "models": [{"name": m, "model": m, "base_url": urls[i], **endpoint,
                    "sampling": {"max_tokens": 32, "n": SAMPLES, "seed": 3}} for i, m in enumerate(MODELS)],
        "scoring": {"domains": {"math": ["math", "reward"]},
                    "reward": {"kind": "judge", "model": "judge", "base_url": urls[0], "concurrency": 4,
                               "max_retries": 1}},
        "pairs": {"gap": [1, 8], "test_fraction": 0.2},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def kill_at_random_moments(recipe: Path, out: Path, srv: list[SyntheticOpenAI], span: float, rng: random.Random,
                           kills: int = 3) -> list[int]:
    """Start the build and SIGKILL it a random share of ``span`` (the uninterrupted run's busy time,
    scaled to the work left) after its first chat request, ``kills`` times; returns, per kill that
    landed, how many responses were stored by then."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    landed: list[int] = []
    for _ in range(2 * kills):  # bounded: a run that ends before its moment does not count
        left = max(0.2, 1 - count(out, "SELECT COUNT(*) FROM responses WHERE error IS NULL") / TOTAL)
        delay = rng.uniform(0.05, 1.0) * span * left
        before = sum(s.calls for s in srv)
        proc = subprocess.Popen([sys.executable, "-m", "fusedata", "build", str(recipe)], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while sum(s.calls for s in srv) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        moment = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < moment:
            time.sleep(0.005)
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if alive:
            landed.append(count(out, "SELECT COUNT(*) FROM responses WHERE error IS NULL"))
        if len(landed) == kills:
            break
    return landed


def dataset_rows(run: Path) -> dict[str, list[dict]]:
    folder = run_dataset_folder(run)
    assert folder is not None, f"{run} has no dataset folder"
    return {str(p.relative_to(folder)): pq.read_table(p).to_pylist() for p in sorted(folder.rglob("*.parquet"))}


def stored(run: Path) -> tuple[dict, dict]:
    texts = {r[:4]: r[4] for r in rows(run, "SELECT prompt_id, model, settings_hash, sample_idx, text FROM responses")}
    scores = {r[:5]: r[5:] for r in rows(run, "SELECT prompt_id, model, settings_hash, sample_idx, scorer, value, "
                                              "label FROM scores")}
    return texts, scores


def ask(client: openai.OpenAI, model: str = "m", seed: int = 1, n: int | None = None,
        question: str = "What is 7 + 5?") -> list[str] | int | str:
    """One chat call: its choices' texts, the HTTP status of an error, or "nonjson"."""
    extra = {"n": n} if n is not None else {}
    try:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                               max_tokens=8, seed=seed, **extra)
    except openai.APIStatusError as e:
        return e.status_code
    except ValueError:  # the openai client decodes the body of a 200 and finds no JSON
        return "nonjson"
    return [c.message.content for c in reply.choices]


def test_synthetic_server_replays_its_draws_and_honours_seed_and_n():
    outcomes, faults = [], []
    for _ in range(2):  # two fresh servers, the same requests: the same faults and texts
        with SyntheticOpenAI(("m",), fault_rate=0.3, seed=5) as srv:
            client = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
            outcomes.append([ask(client, seed=i % 4) for i in range(40)])
            faults.append(srv.faults)
            assert srv.calls == 40 and srv.ok == sum(isinstance(o, list) for o in outcomes[-1])
    assert outcomes[0] == outcomes[1] and faults[0] == faults[1]
    assert 4 <= sum(faults[0].values()) <= 20 and len(faults[0]) >= 3, faults[0]

    msgs = [{"role": "user", "content": "What is 7 + 5?"}]
    with SyntheticOpenAI(("m",), judges=("j",)) as srv, SyntheticOpenAI(("m",), honour_n=False) as llama:
        client = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
        three = ask(client, seed=9, n=3)
        assert three == [SyntheticOpenAI.completion("m", msgs, 9, i) for i in range(3)] and len(set(three)) == 3
        assert ask(openai.OpenAI(base_url=llama.url, api_key="x"), seed=9, n=3) == three[:1]
        right = ["\\boxed{12}." in ask(client, seed=s)[0] for s in range(20)]
        assert 0 < sum(right) < 20  # the math verifier sees both right and wrong answers
        assert ask(client, model="j", seed=9)[0] in "123456789"
        assert ask(client, model="nope") == 404
        assert [m.id for m in client.models.list().data] == ["m", "j"]

    # A server with 2 slots takes 4 requests at once, but generates 2 choices at a time.
    with SyntheticOpenAI(("m",), median=0.1, slots=2) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda s: ask(client, seed=s, n=2), range(4)))
        assert all(len(r) == 2 for r in replies) and len(srv.latencies) == 8
        assert srv.max_in_flight > 2 and srv.max_busy == 2

    # The latency draws are lognormal with the asked median and shape (drawn here, not slept).
    lat = SyntheticOpenAI(median=0.5, sigma=1.0, seed=1)
    draws = sorted(lat.latency({"i": i}, 0, 0) for i in range(4000))
    lat.server.server_close()
    assert abs(draws[2000] / 0.5 - 1) < 0.1
    assert abs(sum(draws) / len(draws) / (0.5 * math.exp(0.5)) - 1) < 0.1
    assert lat.latency({"i": 1}, 0, 0) == lat.latency({"i": 1}, 0, 0) != lat.latency({"i": 1}, 1, 0)


def test_killed_builds_against_faulty_servers_end_with_the_uninterrupted_dataset(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    ref_srv = servers(fault_rate=0.0)
    with ref_srv[0], ref_srv[1]:
        res = run_cli("build", str(write_recipe(tmp_path / "ref", [s.url for s in ref_srv])), timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
    ref = tmp_path / "ref" / "run"
    span = max(s.last_reply for s in ref_srv) - min(s.first_call for s in ref_srv)
    assert count(ref, "SELECT COUNT(*) FROM responses WHERE error IS NULL") == TOTAL

    srv = servers(fault_rate=0.2)
    out = tmp_path / "killed" / "run"
    with srv[0], srv[1]:
        recipe = write_recipe(tmp_path / "killed", [s.url for s in srv])
        stored_at_kills = kill_at_random_moments(recipe, out, srv, span, random.Random(2024))
        # Three kills, the first in the middle of generation (later ones may land in scoring or pairs).
        assert len(stored_at_kills) == 3 and stored_at_kills[0] < TOTAL, stored_at_kills
        for _ in range(10):  # failures stay stored and are retried by the next run
            res = run_cli("build", str(recipe), timeout=120)
            assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
            if count(out, FAILED) == 0 and run_dataset_folder(out) is not None:
                break

    # Every response once, none failed, and failures really were met and retried.
    assert rows(out, "SELECT model, COUNT(*), COUNT(DISTINCT prompt_id || settings_hash || sample_idx) "
                     "FROM responses GROUP BY model ORDER BY model") == [(m, PROMPTS * SAMPLES, PROMPTS * SAMPLES)
                                                                        for m in MODELS]
    assert count(out, FAILED) == 0
    assert count(out, "SELECT MAX(attempts) FROM responses") >= 2
    faults = srv[0].faults + srv[1].faults
    assert faults[429] and faults["nonjson"] and faults[500] + faults[502] + faults[503], faults
    # The same texts, scores and dataset as the uninterrupted run.
    assert stored(out) == stored(ref)
    assert len(stored(out)[0]) == TOTAL
    got, want = dataset_rows(out), dataset_rows(ref)
    assert got == want and any(got.values())
    assert run_dataset_folder(out).name == run_dataset_folder(ref).name

