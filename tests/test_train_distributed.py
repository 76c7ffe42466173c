"""Two CPU processes on gloo (torchrun, loopback only) against one process with the same global batch.

One process runs batch_size 2 × grad_accum 2; two ranks run batch_size 1 × grad_accum 2. Both see the
same 4 examples per step (``micro_batches`` interleaves the step's slice by rank), the loss numerators
are divided by the step's global denominator and DDP's gradient average is undone by the world factor,
so the two runs differ only in float summation order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import REPO, free_port
from tests.fixtures.train_data import rows_for, write_jsonl

pytestmark = pytest.mark.slow

STEPS = 8
WORLD = 2
# Same-data runs that differ only in summation order (the DDP all-reduce, per-rank micro-batches):
# measured here, losses agree to ~5e-8 relative and weights to ~7e-7 (Adam divides near-zero
# gradients by their own tiny sqrt(v), which magnifies float noise). A missing world factor halves
# grad_norm and moves weights ~2e-4 apart; ranks reading the wrong slice change the logps at step 1.
TOL = 1e-5
# Numbers that are per-run timings, not training results.
TIMING = ("tokens_per_s", "mfu")


@dataclass
class Setup:
    root: Path
    recipe: Path
    model: Path


@pytest.fixture(scope="module")
def setup(tiny_llama, tmp_path_factory) -> Setup:
    root = tmp_path_factory.mktemp("distributed")
    # WRPO: three responses per example, so the sharded reference pass has to place each rank's
    # values at uneven offsets of the flat tensor.
    data = write_jsonl(rows_for("wrpo", 16), root / "wrpo.jsonl")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "method": "wrpo",
        "model": {"name": str(tiny_llama)},
        "data": {"path": str(data), "max_length": 96, "max_prompt_length": 48},
        "train": {"max_steps": STEPS, "lr": 1e-3, "batch_size": 2, "grad_accum": 2, "warmup_ratio": 0.0},
        # Checkpoints on: saving gathers from every rank and ends in a barrier.
        "output": {"dir": str(root / "unused"), "save_every": 2, "keep_checkpoints": 2, "tensorboard": False},
    }))
    return Setup(root, recipe, Path(tiny_llama))


def process_tree(pid: int) -> list[int]:
    """``pid``'s descendants (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def launch(cmd: list[str], cache: Path, timeout: float = 300) -> tuple[int, str]:
    """Run ``cmd`` to the end; (exit code, stdout+stderr). Whatever it started dies with it."""
    # Loopback only: the rendezvous store, gloo's sockets (GLOO_SOCKET_IFNAME) and MASTER_ADDR.
    # COLUMNS: rich wraps at 80 columns when output is not a terminal.
    env = dict(os.environ, OMP_NUM_THREADS="1", FUSEKIT_CACHE=str(cache), MASTER_ADDR="127.0.0.1",
               GLOO_SOCKET_IFNAME="lo", COLUMNS="400")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd[:6])} ... still running after {timeout} s")
    finally:
        if proc.poll() is None:
            for pid in process_tree(proc.pid) + [proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.communicate()


def train_cmd(s: Setup, out: Path, *extra: str) -> list[str]:
    return ["-m", "trainer", "train", str(s.recipe), "-o", str(out), *extra]


def single(s: Setup, out: Path, cache: Path, *extra: str) -> tuple[int, str]:
    return launch([sys.executable, *train_cmd(s, out, *extra)], cache)


def torchrun(s: Setup, out: Path, cache: Path, *extra: str) -> tuple[int, str]:
    # Half the per-rank batch: the same global batch as the one-process run.
    return launch([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(WORLD),
                   "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                   *train_cmd(s, out, "train.batch_size=1", *extra)], cache)


def finished(rc_out: tuple[int, str]) -> str:
    rc, out = rc_out
    assert rc == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def one_process(setup) -> Path:
    out = setup.root / "single"
    finished(single(setup, out, setup.root / "cache-single"))
    return out


@pytest.fixture(scope="module")
def ddp(setup) -> tuple[Path, str]:
    # Its own cache folder: a cache hit would skip the sharded reference pass this run must exercise.
    out = setup.root / "ddp"
    log = finished(torchrun(setup, out, setup.root / "cache-ddp"))
    return out, log


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_rows(got: list[dict], want: list[dict], tol: float = TOL) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert set(g) == set(w), g["step"]
        for k, v in w.items():
            if k not in TIMING:
                assert g[k] == pytest.approx(v, rel=tol, abs=tol), (k, w["step"], g[k], v)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max((a[k] - b[k]).abs().max().item() for k in a)


def assert_model_works(folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 7 + 5?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 4
    # The folder holds the trained weights, not the starting ones.
    saved = load_file(str(folder / "model.safetensors"))
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, saved["model.layers.0.self_attn.q_proj.weight"])


def test_two_ranks_train_like_one_process_with_the_same_global_batch(setup, one_process, ddp):
    out, _ = ddp
    a, b = metrics(one_process), metrics(out)
    assert_same_rows(b, a)
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (one_process, out))
    assert (sa["world_size"], sb["world_size"]) == (1, WORLD)
    assert sa["global_batch"] == sb["global_batch"] == 4
    wa, wb = load_file(str(one_process / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert max_diff(wa, wb) < TOL
    assert max_diff(wa, load_file(str(setup.model / "model.safetensors"))) > 1e-3


def test_only_rank_zero_writes_and_the_model_loads(one_process, ddp):
    out, log = ddp
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == {str(p.relative_to(one_process)) for p in one_process.rglob("*") if p.is_file()}
    # A second writer would have appended its own rows (or truncated rank 0's).
    assert [r["step"] for r in metrics(out)] == list(range(1, STEPS + 1))
    assert log.count(f"trainer · wrpo · {STEPS} steps") == 1
    assert_model_works(out)
    # A checkpoint written with both ranks taking part holds the same weights as the one-process one.
    for step in (STEPS - 4, STEPS - 2):
        ca = torch.load(one_process / "checkpoints" / f"step-{step:07d}" / "state.pt", weights_only=False)
        cb = torch.load(out / "checkpoints" / f"step-{step:07d}" / "state.pt", weights_only=False)
        assert max_diff(ca["model"], cb["model"]) < TOL
        assert ca["optimizer"]["state"].keys() == cb["optimizer"]["state"].keys()


def test_reference_logps_sharded_over_ranks_equal_the_single_process_ones(setup, one_process, ddp):
    out, _ = ddp
    caches = []
    for run, cache in ((one_process, "cache-single"), (out, "cache-ddp")):
        assert json.loads((run / "summary.json").read_text())["reference_cached"] is False
        files = sorted((setup.root / cache / "reference_logps").iterdir())
        # One file each and no temporary leftovers from a second writer.
        assert len(files) == 1 and files[0].suffix == ".safetensors", files
        caches.append(files[0])
    assert caches[0].name == caches[1].name  # same key: the same model and tokenized data
    a, b = (load_file(str(p))["sums"] for p in caches)
    assert a.shape == b.shape == (16 * 3,)
    assert torch.isfinite(b).all() and (b < 0).all()
    # Rank r computed examples i % 2 == r in batches of 2, the single process all of them in
    # batches of 4: different padding, so float noise at most (identical here). A value at a wrong
    # offset or a lost one is off by whole nats.
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-5), (a - b).abs().max()


def test_two_rank_resume_continues_the_two_rank_run(setup, ddp, tmp_path):
    src, _ = ddp
    out = tmp_path / "ddp-resumed"
    shutil.copytree(src, out)
    log = finished(torchrun(setup, out, setup.root / "cache-ddp", "--resume"))
    assert f"at step {STEPS - 2}" in log
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == STEPS - 2
    # Same world, same data, state restored on both ranks: a repeat of the last two steps.
    assert_same_rows(metrics(out), metrics(src), tol=1e-6)
    assert max_diff(load_file(str(out / "model.safetensors")), load_file(str(src / "model.safetensors"))) < 1e-6


def test_two_rank_checkpoint_resumes_on_one_process_with_the_same_global_batch(setup, one_process, ddp, tmp_path):
    src, _ = ddp
    out = tmp_path / "ddp-on-one-process"
    shutil.copytree(src, out)
    # The loop promises the data order of the uninterrupted run whatever the world size: one process
    # with batch_size 2 keeps the 2-rank run's global batch of 4.
    log = finished(single(setup, out, setup.root / "cache-ddp", "--resume"))
    assert f"at step {STEPS - 2}" in log
    assert json.loads((out / "summary.json").read_text())["world_size"] == 1
    assert_same_rows(metrics(out), metrics(one_process))
    assert max_diff(load_file(str(out / "model.safetensors")), load_file(str(src / "model.safetensors"))) < TOL


def test_resume_on_another_world_size_cannot_change_the_global_batch(setup, ddp, tmp_path):
    src, _ = ddp
    out = tmp_path / "ddp-batch-1-on-one-process"
    shutil.copytree(src, out)
    # The 2-rank recipe (batch_size 1) on one process: global batch 2, not the checkpoint's 4. Every
    # later step would take another slice of the data than the run it continues.
    rc, log = single(setup, out, setup.root / "cache-ddp", "--resume", "train.batch_size=1")
    assert rc == 2, log[-4000:]
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if "error:" in line and "global batch 4" in line]
    assert (out / "metrics.jsonl").read_text() == (src / "metrics.jsonl").read_text()


def test_fsdp2_on_cpu_gloo_matches_one_process(setup, one_process):
    out = setup.root / "fsdp2"
    rc, log = torchrun(setup, out, setup.root / "cache-fsdp2", "train.distributed=fsdp2")
    if rc != 0:
        errors = [line for line in log.splitlines() if re.search(r"\w+(Error|Exception):", line)]
        backend = [e for e in errors if re.search(r"gloo|not (yet )?(supported|implemented)|NotImplemented", e, re.I)]
        if backend:
            pytest.skip(f"FSDP2 does not run on CPU/gloo with torch {torch.__version__}: {backend[-1].strip()}")
        pytest.fail(log[-4000:])
    assert_same_rows(metrics(out), metrics(one_process))
    assert json.loads((out / "summary.json").read_text())["world_size"] == WORLD
    wa, wb = load_file(str(one_process / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert max_diff(wa, wb) < TOL
    assert_model_works(out)
    # Sharded parameters gathered into full tensors for the checkpoint.
    ca = torch.load(one_process / "checkpoints" / f"step-{STEPS - 2:07d}" / "state.pt", weights_only=False)
    cb = torch.load(out / "checkpoints" / f"step-{STEPS - 2:07d}" / "state.pt", weights_only=False)
    assert max_diff(ca["model"], cb["model"]) < TOL
