"""``engine: vllm`` for real: vLLM's CPU build from .venv-vllm in a worker process, on the embedded SmolLM2.

Loads are the cost here (about 11 s for a single-process vLLM, 35 s with its engine in a process of its
own), so one engine serves the engine-level tests and one two-model build is the reference the killed
build is compared with. Stand-in Pythons (shell scripts) play the worker where real vLLM cannot be made
to fail on demand: dying or going silent while loading or generating.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fusedata.cli import app
from fusedata.engines import EngineConfig, GenRequest, make_engine
from fusedata.errors import FusekitError
from fusedata.records import Prompt, SamplingParams
from tests.conftest import REPO, VLLM_ENGINE_KWARGS

PROMPTS = [
    Prompt.make("math", "t", [{"role": "user", "content": "What is 7 + 5?"}]),
    Prompt.make("instruction", "t", [{"role": "user", "content": "Give three tips for sleeping better."}]),
]
SAMPLED = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=24, n=3, seed=5)
# One vLLM process instead of three (no engine-core process): 11 s to load here instead of 35. The
# first model of the two-model build keeps vLLM's default layout, the one GPU users get.
SINGLE_PROCESS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def vllm_model(name: str, python: str | None = None, **over) -> dict:
    extra = {"engine_kwargs": VLLM_ENGINE_KWARGS, **({"python": python} if python else {})}
    return {"name": name, "model": "embedded:smollm2-135m", "engine": "vllm", "extra": extra, **over}


def group_gone(pid: int, within: float = 10.0) -> bool:
    """No process is left in the session the worker led (vLLM's engine processes included); a killed
    child stays in it until it is reaped, so allow a moment."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def engine(vllm_python):
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SINGLE_PROCESS.items():
            mp.setenv(k, v)
        eng = make_engine(EngineConfig(name="smol", model="embedded:smollm2-135m", engine="vllm",
                                       extra={"python": vllm_python, "engine_kwargs": VLLM_ENGINE_KWARGS}))
    yield eng
    eng.close()


# -- one engine ------------------------------------------------------------------------------------
def test_every_sample_has_its_own_seed(engine):
    # vLLM reported its automatic prefix caching on: the prompt's prefill is shared by its samples.
    assert engine.prefix_caching is True
    out = engine.generate([GenRequest(PROMPTS[0], (0, 1, 2)), GenRequest(PROMPTS[1], (0, 1))], SAMPLED)
    assert [(r.prompt_id, r.sample_idx) for r in out] == [
        (PROMPTS[0].id, 0), (PROMPTS[0].id, 1), (PROMPTS[0].id, 2), (PROMPTS[1].id, 0), (PROMPTS[1].id, 1)]
    assert all(r.ok and r.model == "smol" and r.settings_hash == SAMPLED.hash() for r in out)
    # The chat template went in (SmolLM2's system turn and role markers): far more tokens than the words.
    assert all(r.n_input_tokens > 20 for r in out)
    assert all((r.finish_reason == "length") == (r.n_output_tokens == 24) and r.finish_reason in ("stop", "length")
               for r in out)
    assert len({r.text for r in out[:3]}) == 3  # sampled, not one answer three times
    # Resumed samples, alone and in another batch, are drawn exactly as before.
    again = engine.generate([GenRequest(PROMPTS[1], (1,)), GenRequest(PROMPTS[0], (2, 0))], SAMPLED)
    assert [r.text for r in again] == [out[4].text, out[2].text, out[0].text]
    other = engine.generate([GenRequest(PROMPTS[0], (0, 1, 2))], SamplingParams(**{**SAMPLED.__dict__, "seed": 6}))
    assert [r.text for r in other] != [r.text for r in out[:3]]


def test_finish_reasons_as_vllm_reports_them(engine):
    short = engine.generate([GenRequest(p, (0,)) for p in PROMPTS], SamplingParams(temperature=0, max_tokens=3))
    assert [(r.finish_reason, r.n_output_tokens) for r in short] == [("length", 3), ("length", 3)]
    # Greedy and long enough, SmolLM2 ends "What is 7 + 5?" itself: an end-of-sequence token is "stop".
    full = engine.generate([GenRequest(PROMPTS[0], (0,))], SamplingParams(temperature=0, max_tokens=200))[0]
    assert full.finish_reason == "stop" and full.n_output_tokens < 200 and "12" in full.text
    assert full.text.startswith(short[0].text)


def test_prefill_starts_the_reply(engine):
    greedy = SamplingParams(temperature=0, max_tokens=12)
    plain = engine.generate([GenRequest(PROMPTS[0], (0,))], greedy)[0]
    started = engine.generate([GenRequest(PROMPTS[0], (0,), prefill="The sum is")], greedy)[0]
    assert started.ok and started.text.startswith("The sum is") and started.text != "The sum is"
    assert started.n_input_tokens > plain.n_input_tokens


def test_a_prompt_too_long_fails_alone(engine):
    greedy = SamplingParams(temperature=0, max_tokens=8)
    alone = engine.generate([GenRequest(PROMPTS[0], (0,))], greedy)[0]
    huge = Prompt.make("instruction", "t", [{"role": "user", "content": "word " * 5000}])
    out = engine.generate([GenRequest(huge, (0, 1)), GenRequest(PROMPTS[0], (0,))], greedy)
    assert [(r.prompt_id, r.sample_idx, r.ok) for r in out] == [(huge.id, 0, False), (huge.id, 1, False),
                                                                (PROMPTS[0].id, 0, True)]
    assert "maximum context length is 4096" in out[0].error and out[0].text is None
    assert out[2].text == alone.text


def test_a_killed_worker_is_a_clear_error(engine):
    """Last of the engine tests: it kills the shared worker."""
    os.kill(engine.pid, signal.SIGKILL)
    with pytest.raises(FusekitError) as e:
        engine.generate([GenRequest(PROMPTS[0], (0,))], SAMPLED)
    assert f"model 'smol': the vLLM worker (pid {engine.pid}) exited generating (code -9)" in str(e.value)


def test_a_model_vllm_cannot_load_names_the_model_and_the_worker_output(vllm_python, tmp_path, monkeypatch):
    for k, v in SINGLE_PROCESS.items():
        monkeypatch.setenv(k, v)
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"],
                                                    "model_type": "no-such-model"}))
    with pytest.raises(FusekitError) as e:
        make_engine(EngineConfig(name="broken", model=str(folder), engine="vllm", extra={"python": vllm_python}))
    msg = str(e.value)
    assert msg.startswith("model 'broken': the vLLM worker (pid ") and "failed loading the model: " in msg
    assert "no-such-model" in msg and "its last stderr lines:\n  " in msg
    assert group_gone(int(re.search(r"pid (\d+)", msg).group(1)))


# -- stand-in workers: the failures real vLLM cannot be made to have on demand ---------------------------
def fake_python(tmp_path: Path, body: str) -> str:
    """A 'Python' that passes the vLLM probe (``-c``) and runs ``body`` as the worker."""
    path = tmp_path / "python"
    path.write_text(f'#!/bin/sh\ncase "$1" in -c) exit 0;; esac\n{body}\n')
    path.chmod(0o755)
    return str(path)


def fake_engine(tmp_path: Path, body: str, **extra) -> EngineConfig:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    return EngineConfig(name="fake", model=str(folder), engine="vllm",
                        extra={"python": fake_python(tmp_path, body), **extra})


def test_a_worker_dying_while_loading_is_a_clear_error(tmp_path):
    body = 'echo "loading weights" >&2\necho "RuntimeError: out of memory (on purpose)" >&2\nexit 9'
    with pytest.raises(FusekitError) as e:
        make_engine(fake_engine(tmp_path, body))
    assert re.fullmatch(r"model 'fake': the vLLM worker \(pid \d+\) exited loading the model \(code 9\); its last "
                        r"stderr lines:\n  loading weights\n  RuntimeError: out of memory \(on purpose\)", str(e.value))


def test_a_silent_worker_is_stopped_after_its_timeout(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(FusekitError, match=r"gave no answer loading the model within 1 s") as e:
        make_engine(fake_engine(tmp_path, "sleep 60", load_timeout_s=1))
    assert time.monotonic() - t0 < 30
    assert group_gone(int(re.search(r"pid (\d+)", str(e.value)).group(1)))  # its sleep included


def test_a_worker_dying_in_a_batch_is_a_clear_error(tmp_path):
    body = ('read init\necho \'{"ready": true, "pid": 1, "vllm": "fake", "prefix_caching": true}\'\n'
            'read batch\necho "Segmentation fault (on purpose)" >&2\nexit 139')
    eng = make_engine(fake_engine(tmp_path, body))
    with pytest.raises(FusekitError) as e:
        eng.generate([GenRequest(PROMPTS[0], (0, 1))], SAMPLED)
    eng.close()
    assert "the vLLM worker" in str(e.value) and "exited generating (code 139)" in str(e.value)
    assert str(e.value).endswith("its last stderr lines:\n  Segmentation fault (on purpose)")


def test_a_python_without_vllm_is_one_line(tmp_path):
    nothing = tmp_path / "python"
    nothing.write_text("#!/bin/sh\nexit 3\n")
    nothing.chmod(0o755)
    with pytest.raises(FusekitError) as e:
        make_engine(EngineConfig(name="big", model="org/model", engine="vllm", extra={"python": str(nothing)}))
    assert f"{nothing} cannot import" in str(e.value) and "pip install 'fusekit[vllm]'" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(FusekitError, match="cannot run the Python"):
        make_engine(EngineConfig(name="big", model="org/model", engine="vllm",
                                 extra={"python": str(tmp_path / "nowhere" / "python")}))


def test_bad_extra_values_are_clear_errors(tmp_path):
    with pytest.raises(FusekitError, match=r"model 'fake': extra.load_timeout_s must be a positive number of seconds, "
                                           r"got 'soon'"):
        make_engine(fake_engine(tmp_path, "exit 0", load_timeout_s="soon"))
    with pytest.raises(FusekitError, match=r"model 'fake': extra.engine_kwargs must be a mapping"):
        make_engine(fake_engine(tmp_path, "exit 0", engine_kwargs=["dtype"]))
    with pytest.raises(FusekitError, match=r"model 'fake': extra.env must be a mapping"):
        make_engine(fake_engine(tmp_path, "exit 0", env="CUDA_VISIBLE_DEVICES=1"))


# -- through fusedata build ------------------------------------------------------------------------------
def write_recipe(path: Path, out: Path, python: str | None) -> Path:
    sampling = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 32, "n": 2, "seed": 3}
    models = [vllm_model("smol-a", python, batch_size=4, sampling=sampling),
              # the same weights and seeds, stopped at the first "."
              vllm_model("smol-b", python, batch_size=4, sampling=sampling, stop=["."])]
    models[1]["extra"]["env"] = SINGLE_PROCESS
    path.write_text(yaml.safe_dump({"name": "vllm", "out": str(out), "models": models,
                                    "domains": {"math": {"sources": ["embedded:math"], "limit": 6}}}))
    return path


def stored(out: Path) -> dict[tuple, tuple]:
    with sqlite3.connect(out / "run.sqlite") as db:
        rows = db.execute("SELECT prompt_id, model, settings_hash, sample_idx, text, finish_reason, n_output_tokens, "
                          "error, updated FROM responses").fetchall()
    return {tuple(r[:4]): tuple(r[4:]) for r in rows}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def two_model_build(tmp_path_factory, vllm_python):
    """The uninterrupted reference, run in this process (its log records name the workers)."""
    tmp = tmp_path_factory.mktemp("vllm-build")
    recipe = write_recipe(tmp / "r.yaml", tmp / "run", vllm_python)
    log, handler = logging.getLogger("fusedata.engines.vllm"), Records()
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        res = CliRunner().invoke(app, ["build", str(recipe), "--no-score"], env={"COLUMNS": "160"})
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    assert res.exit_code == 0, res.output
    return tmp / "run", handler.lines


def test_two_vllm_models_run_one_after_another_each_in_its_own_process(two_model_build):
    out, lines = two_model_build
    events = [(re.search(r"'(smol-[ab])' (\w+)", line).groups(), int(re.search(r"pid (\d+)", line).group(1)))
              for line in lines]
    assert [e for e, _ in events] == [("smol-a", "started"), ("smol-a", "ready"), ("smol-a", "exited"),
                                      ("smol-b", "started"), ("smol-b", "ready"), ("smol-b", "exited")]
    assert "exited (code 0)" in lines[2] and "exited (code 0)" in lines[5]
    pid_a, pid_b = events[0][1], events[3][1]
    assert pid_a != pid_b and group_gone(pid_a) and group_gone(pid_b)
    rows = stored(out)
    assert len(rows) == 6 * 2 * 2 and all(v[3] is None for v in rows.values())
    # Same weights, same per-sample seeds: smol-b's answer is smol-a's cut at its first stop string.
    cut = 0
    for (prompt_id, model, settings, idx), (text, finish, n_out, *_) in rows.items():
        if model != "smol-b":
            continue
        a_text, a_finish, a_n_out, *_ = rows[(prompt_id, "smol-a", settings, idx)]
        assert text == a_text.split(".")[0].strip()
        if "." in a_text:
            assert finish == "stop" and n_out <= a_n_out
            cut += 1
        else:
            assert (finish, n_out) == (a_finish, a_n_out)
    assert cut > 0


def test_a_killed_build_resumes_to_the_samples_of_an_uninterrupted_one(tmp_path, two_model_build, vllm_python):
    reference, _ = two_model_build
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", out, None)  # the Python comes from the environment this time
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FUSEKIT_VLLM_PYTHON": vllm_python, **SINGLE_PROCESS}
    cmd = [sys.executable, "-m", "fusedata", "build", str(recipe), "--no-score"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, n = time.monotonic() + 300, 0
    while time.monotonic() < deadline and proc.poll() is None and n < 4:
        try:
            n = len(stored(out))
        except sqlite3.Error:  # not created yet
            n = 0
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    survivors = stored(out)
    assert 4 <= len(survivors) < 24

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    final, expected = stored(out), stored(reference)
    assert len(final) == 24 and set(final) == set(expected)  # keys are the primary key: no duplicates
    assert {k: v[:3] for k, v in final.items()} == {k: v[:3] for k, v in expected.items()}
    assert all(final[k] == v for k, v in survivors.items())  # what was stored before the kill stayed as it was


def test_vllm_on_ray_draws_the_samples_of_the_local_engine(tmp_path, two_model_build, vllm_python):
    """``fusedata build --ray local``: ray.data.llm's vLLM stage on CPUs, its actors under .venv-vllm's Python."""
    pytest.importorskip("aiohttp", reason="ray.data.llm imports aiohttp, which the ray extra does not bring")
    reference, _ = two_model_build
    recipe = yaml.safe_load(write_recipe(tmp_path / "r.yaml", tmp_path / "run", vllm_python).read_text())
    recipe["models"] = recipe["models"][:1]
    recipe["models"][0]["extra"]["ray"] = {"num_gpus": 0, "num_cpus": 1}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    # Ray counts 8 CPUs so that each of ray.data.llm's five stages gets one on this 2-core machine.
    res = subprocess.run([sys.executable, "-m", "fusedata", "build", str(tmp_path / "r.yaml"), "--no-score",
                          "--ray", "local", "--ray-cpus", "8"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    on_ray = stored(tmp_path / "run")
    local = {k: v for k, v in stored(reference).items() if k[1] == "smol-a"}
    assert len(on_ray) == 12 and set(on_ray) == set(local)
    # Same per-sample seeds, same texts; the finish reason comes back from the token counts.
    assert {k: v[:3] for k, v in on_ray.items()} == {k: v[:3] for k, v in local.items()}
