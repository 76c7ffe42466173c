"""Checkpoint / resume, with a real SIGKILL: a killed-then-resumed run equals the uninterrupted one.

Everything goes through the command line (``python -m trainer train RECIPE``) in subprocesses, so the
kill is a real process death at an arbitrary point of the loop, not an exception the loop could see.
The tiny Llama on one CPU thread is deterministic, which is what lets the two runs be compared step by
step and tensor by tensor.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.fixtures.train_data import rows_for, write_jsonl

pytestmark = pytest.mark.slow

STEPS = 60
# The kill waits for a checkpoint at least this late, so checkpoint rotation (keep 2) has already
# deleted older ones and the resume starts past an epoch boundary (16 rows / global batch 4).
KILL_AFTER = 10
# Per-step numbers that legitimately differ between two identical runs.
TIMING = ("tokens_per_s", "mfu")


@dataclass
class Setup:
    root: Path
    recipe: Path
    model: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def setup(tiny_llama, tmp_path_factory) -> Setup:
    root = tmp_path_factory.mktemp("resume")
    data = write_jsonl(rows_for("wrpo", 16), root / "wrpo.jsonl")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "method": "wrpo",
        "model": {"name": str(tiny_llama)},
        "data": {"path": str(data), "max_length": 96, "max_prompt_length": 48},
        # lr 1e-3 with warmup and cosine: the weights move far and the lr changes every step, so a
        # lost scheduler or optimizer state cannot hide.
        "train": {"max_steps": STEPS, "lr": 1e-3, "batch_size": 2, "grad_accum": 2, "warmup_ratio": 0.1},
        "output": {"dir": str(root / "unused"), "save_every": 2, "keep_checkpoints": 2, "tensorboard": False},
    }))
    # COLUMNS: rich wraps at 80 columns when stderr is not a terminal, which would split the
    # messages asserted on below.
    env = dict(os.environ, OMP_NUM_THREADS="1", FUSEKIT_CACHE=str(root / "cache"), COLUMNS="400")
    return Setup(root, recipe, Path(tiny_llama), env)


def trainer_cmd(s: Setup, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", str(s.recipe), "-o", str(out), *extra]


def run_cli(s: Setup, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # subprocess.run kills the child when the timeout expires.
    return subprocess.run(trainer_cmd(s, out, *extra), cwd=REPO, env=s.env, capture_output=True, text=True,
                          timeout=timeout)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def checkpoint_step(out: Path) -> int:
    done = [int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*")
            if (p / "state.json").is_file()]
    return max(done, default=0)


def logged_step(out: Path) -> int:
    """The last step in metrics.jsonl; tolerates a line the running process is still writing."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def is_stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")


def kill_between_checkpoints(proc: subprocess.Popen, out: Path, timeout: float = 180) -> tuple[int, int]:
    """SIGKILL ``proc`` once it holds a checkpoint >= KILL_AFTER and has logged a step past it.

    The process is frozen (SIGSTOP) before the final look, so the state checked is exactly the state
    it dies in: a run killed with metrics rows past its last checkpoint, which the resume must drop.
    Returns (checkpoint step, last logged step) at death.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed; make it longer")
        if checkpoint_step(out) >= KILL_AFTER and logged_step(out) > checkpoint_step(out):
            os.kill(proc.pid, signal.SIGSTOP)
            while not is_stopped(proc.pid):
                time.sleep(0.0005)
            ckpt, logged = checkpoint_step(out), logged_step(out)
            if logged > ckpt >= KILL_AFTER:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return ckpt, logged
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.002)
    pytest.fail(f"no checkpoint at step >= {KILL_AFTER} after {timeout} s")


@pytest.fixture(scope="module")
def uninterrupted(setup) -> Path:
    out = setup.root / "uninterrupted"
    r = run_cli(setup, out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    # One thread, the same kernels, and weights / Adam moments / schedule restored bit for bit: the
    # resumed steps redo the very same float operations, so in practice the numbers are identical.
    # rel 1e-6 leaves room only for float noise; a reset optimizer, a restarted lr schedule or a
    # shifted data slice changes the first resumed step's loss and grad norm by 1e-4 or more.
    # abs 1e-9 is for the rewards of step 1, which are exactly 0 against the step-0 reference.
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert set(g) == set(w), g["step"]
        for k, v in w.items():
            if k not in TIMING:
                assert g[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (k, w["step"], g[k], v)


def test_sigkilled_run_resumes_to_the_uninterrupted_trajectory(setup, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(trainer_cmd(setup, out), cwd=REPO, env=setup.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ckpt, logged = kill_between_checkpoints(proc, out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists() and not (out / "model.safetensors").exists()
    assert KILL_AFTER <= ckpt < logged < STEPS
    # Rotation kept the newest two checkpoints only.
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == \
        [f"step-{ckpt - 2:07d}", f"step-{ckpt:07d}"]

    # keep_checkpoints is run control: changing it on resume is allowed and takes effect.
    r = run_cli(setup, out, "--resume", "output.keep_checkpoints=1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"at step {ckpt}" in r.stderr
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == ckpt
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == [f"step-{STEPS - 2:07d}"]

    rows, want = metrics(out), metrics(uninterrupted)
    # One row per step: the rows the killed process logged past its checkpoint were replaced, not kept.
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert_same_rows(rows, want)
    # The WRPO fusion coefficient follows the global step, not the steps of this process.
    assert [r["alpha"] for r in rows] == [r["alpha"] for r in want]
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.01

    got, ref = load_file(str(out / "model.safetensors")), load_file(str(uninterrupted / "model.safetensors"))
    start = load_file(str(setup.model / "model.safetensors"))
    assert set(got) == set(ref)
    assert max((got[k] - ref[k]).abs().max().item() for k in ref) < 1e-6
    # The comparison has teeth: training moved the weights far beyond the tolerance.
    assert max((ref[k] - start[k]).abs().max().item() for k in ref) > 1e-2


def test_resume_with_a_changed_recipe_is_refused_and_touches_nothing(setup, uninterrupted, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(uninterrupted, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    # beta changes every loss after the checkpoint: a resume would silently splice two recipes.
    r = run_cli(setup, out, "--resume", "loss.beta=0.02")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr + r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and "different recipe" in lines[0]
    assert f"step-{STEPS - 2:07d}" in lines[0] and "output.*" in lines[0]

    # A refused resume leaves the run folder as it was: train_config.json still describes the
    # recipe the checkpoints and metrics came from.
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sorted(after) == sorted(before)
    changed = sorted(str(k) for k in before if after[k] != before[k])
    assert changed == [], f"a refused resume rewrote {changed}"


def test_resume_without_a_checkpoint_starts_from_scratch(setup, tmp_path):
    out = tmp_path / "crashed-early"
    # What a crash before the first complete checkpoint leaves: logged rows (with values no real run
    # produces), a checkpoint killed mid-write (no state.json) and its temporary folder.
    write_jsonl([{"step": s, "loss": 123.0} for s in (1, 2, 3)], out / "metrics.jsonl")
    (out / "checkpoints" / "step-0000002").mkdir(parents=True)
    (out / "checkpoints" / "step-0000002" / "state.pt").write_bytes(b"truncated")
    (out / "checkpoints" / ".step-0000004.tmp").mkdir()

    r = run_cli(setup, out, "--resume", "--max-steps", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "no checkpoint in" in r.stderr and "starting from step 0" in r.stderr
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == 0
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    # From scratch means the policy is still its own reference at step 1: the loss is ln 2. The
    # stale rows (loss 123) are gone.
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert all(r["loss"] < 1.0 for r in rows)
