"""Multi-node launches on one machine: every "node" is its own launcher process, joined over loopback.

Two ``torchrun --nnodes 2 --nproc-per-node 1`` (static rendezvous) and two ``accelerate launch`` with
``trainer/launch/accelerate-fsdp2-multinode.yaml`` run side by side, each "node" with its own
``FUSEKIT_CACHE`` as separate machines would have. Both train FSDP2 on gloo and are compared with one
process with the same global batch (two ranks × batch_size 1 × grad_accum 2 = one process × 2 × 2).
The single-machine accelerate config is checked to start two processes that join over gloo.
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
from tests.test_train_distributed import assert_model_works, assert_same_rows, max_diff, metrics, process_tree

pytestmark = pytest.mark.slow

STEPS = 6
EXAMPLES = 16
RESPONSES = EXAMPLES * 3  # WRPO: source-chosen, target-chosen, rejected
LAUNCH = REPO / "trainer" / "launch"
# Same data, different summation order (as in test_train_distributed): float noise only.
TOL = 1e-5


@dataclass
class Setup:
    root: Path
    recipe: Path
    model: Path


@pytest.fixture(scope="module")
def setup(tiny_llama, tmp_path_factory) -> Setup:
    root = tmp_path_factory.mktemp("multinode")
    data = write_jsonl(rows_for("wrpo", EXAMPLES), root / "wrpo.jsonl")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "method": "wrpo",
        "model": {"name": str(tiny_llama)},
        "data": {"path": str(data), "max_length": 96, "max_prompt_length": 48},
        "train": {"max_steps": STEPS, "lr": 1e-3, "batch_size": 2, "grad_accum": 2, "warmup_ratio": 0.0},
        "output": {"dir": str(root / "unused"), "save_every": 2, "keep_checkpoints": 2, "tensorboard": False},
    }))
    return Setup(root, recipe, Path(tiny_llama))


def env_for(cache: Path) -> dict[str, str]:
    # Loopback only (gloo's sockets included); COLUMNS: rich wraps at 80 columns when not on a terminal.
    return dict(os.environ, OMP_NUM_THREADS="1", FUSEKIT_CACHE=str(cache), GLOO_SOCKET_IFNAME="lo", COLUMNS="400")


def run_side_by_side(cmds: list[list[str]], caches: list[Path], logs: Path, timeout: float = 300) -> list[str]:
    """Start one launcher per "node" at once, wait for all; their logs. Whatever they started dies with them."""
    logs.mkdir(parents=True, exist_ok=True)
    # Log files, not pipes: a launcher blocked on a full pipe would stall the collectives of the others.
    paths = [logs / f"node{i}.log" for i in range(len(cmds))]
    procs = []
    try:
        for cmd, cache, path in zip(cmds, caches, paths):
            with path.open("w") as fh:
                procs.append(subprocess.Popen(cmd, cwd=REPO, env=env_for(cache), stdout=fh, stderr=subprocess.STDOUT))
        for proc in procs:
            proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"launchers still running after {timeout} s; node 0 log:\n{paths[0].read_text()[-3000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                for pid in process_tree(proc.pid) + [proc.pid]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait()
    texts = [p.read_text() for p in paths]
    for i, (proc, text) in enumerate(zip(procs, texts)):
        assert proc.returncode == 0, f"node {i} exited {proc.returncode}:\n{text[-4000:]}"
    return texts


def train_args(s: Setup, out: Path, *extra: str) -> list[str]:
    # Half the per-rank batch of the recipe: two ranks keep the one-process global batch of 4.
    return ["-m", "trainer", "train", str(s.recipe), "-o", str(out), "train.batch_size=1",
            "train.distributed=fsdp2", *extra]


def torchrun_node(node: int, port: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port), *args]


def accelerate(config: str, *launch_args: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(LAUNCH / config),
            *launch_args]


def cache_files(cache: Path) -> list[Path]:
    folder = cache / "reference_logps"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def checkpoint(out: Path, step: int) -> dict:
    return torch.load(out / "checkpoints" / f"step-{step:07d}" / "state.pt", weights_only=False)


@pytest.fixture(scope="module")
def one_process(setup) -> Path:
    out = setup.root / "single"
    r = subprocess.run([sys.executable, "-m", "trainer", "train", str(setup.recipe), "-o", str(out)],
                       cwd=REPO, env=env_for(setup.root / "cache-single"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def two_nodes(setup, one_process) -> Path:
    out = setup.root / "two-nodes"
    port = free_port()
    # Node 1 already holds this data's reference cache (copied from the one-process run), node 0 does
    # not. Rank 0's cache decides: both ranks compute their shard. Ranks deciding on their own caches
    # would split up (rank 1 straight to training, rank 0 into the reference all-reduce) and hang.
    node0, node1 = setup.root / "two-nodes-cache0", setup.root / "two-nodes-cache1"
    shutil.copytree(setup.root / "cache-single", node1)
    run_side_by_side([torchrun_node(n, port, train_args(setup, out)) for n in (0, 1)], [node0, node1],
                     setup.root / "two-nodes-logs")
    return out


def test_two_nodes_with_fsdp2_train_like_one_process(setup, one_process, two_nodes):
    assert_same_rows(metrics(two_nodes), metrics(one_process), tol=TOL)
    got, want = summary(two_nodes), summary(one_process)
    assert (got["world_size"], want["world_size"]) == (2, 1)
    assert got["global_batch"] == want["global_batch"] == 4
    wa, wb = load_file(str(one_process / "model.safetensors")), load_file(str(two_nodes / "model.safetensors"))
    assert max_diff(wa, wb) < TOL
    # The comparison has teeth: training moved the weights far beyond the tolerance.
    assert max_diff(wa, load_file(str(setup.model / "model.safetensors"))) > 1e-3
    assert_model_works(two_nodes)


def test_reference_pass_is_split_over_the_nodes_and_gathered_once(setup, one_process, two_nodes):
    got = summary(two_nodes)
    assert got["reference_cached"] is False
    # Rank r ran only its examples (i % 2 == r) through the reference, each response once in all.
    assert got["reference_per_rank"] == [RESPONSES // 2, RESPONSES // 2]
    assert summary(one_process)["reference_per_rank"] == [RESPONSES]
    # Gathered: each rank also trains on examples the other one computed, so the equal training above
    # needs every value on every rank. Rank 0 wrote them into its node's cache; they equal the
    # one-process pass.
    [written] = cache_files(setup.root / "two-nodes-cache0")
    [single] = cache_files(setup.root / "cache-single")
    assert written.name == single.name
    a, b = load_file(str(single))["sums"], load_file(str(written))["sums"]
    assert a.shape == b.shape == (RESPONSES,) and torch.isfinite(b).all()
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-5), (a - b).abs().max()
    # Rank 1 wrote nothing: node 1's cache holds just the copy it started with.
    [kept] = cache_files(setup.root / "two-nodes-cache1")
    assert kept.name == single.name and kept.read_bytes() == single.read_bytes()


def test_fsdp2_checkpoint_gathers_every_ranks_shards(one_process, two_nodes):
    # FSDP2 leaves each rank half of every parameter and of its Adam moments: a checkpoint holding full
    # tensors equal to the one-process run's could only be written with both ranks taking part.
    for step in (STEPS - 4, STEPS - 2):
        want, got = checkpoint(one_process, step), checkpoint(two_nodes, step)
        assert max_diff(want["model"], got["model"]) < TOL
        assert got["optimizer"]["state"].keys() == want["optimizer"]["state"].keys()
        for key, moments in want["optimizer"]["state"].items():
            for name in ("exp_avg", "exp_avg_sq"):
                a, b = moments[name], got["optimizer"]["state"][key][name]
                # Against the tensor's scale: single elements near zero carry relative float noise
                # (measured: 4e-7 of the scale at most), a missing half would be off by the scale itself.
                assert a.shape == b.shape and (a - b).abs().max() <= TOL * a.abs().max(), (step, key, name)
    # Only rank 0 wrote: no second copy of the run's files, one row per step.
    assert sorted(p.relative_to(two_nodes) for p in two_nodes.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(one_process) for p in one_process.rglob("*") if p.is_file())
    assert [r["step"] for r in metrics(two_nodes)] == list(range(1, STEPS + 1))


def test_one_process_checkpoint_resumes_on_two_nodes_with_the_accelerate_config(setup, one_process, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(one_process, out)
    # Resume from the earlier checkpoint, so most of the run (steps 3..6) happens on two ranks.
    shutil.rmtree(out / "checkpoints" / f"step-{STEPS - 2:07d}")
    port = str(free_port())
    cmds = [accelerate("accelerate-fsdp2-multinode.yaml", "--num_processes", "2", "--machine_rank", str(n),
                       "--main_process_ip", "127.0.0.1", "--main_process_port", port,
                       *train_args(setup, out, "--resume")) for n in (0, 1)]
    # Node 0 holds the reference cache of the one-process run, node 1 has none: rank 0's hit is
    # broadcast, nothing is recomputed and node 1's cache stays empty.
    node0, node1 = tmp_path / "cache0", tmp_path / "cache1"
    shutil.copytree(setup.root / "cache-single", node0)
    log0, _ = run_side_by_side(cmds, [node0, node1], tmp_path / "logs")
    assert f"at step {STEPS - 4}" in log0
    got = summary(out)
    assert (got["world_size"], got["resumed_from"], got["reference_cached"]) == (2, STEPS - 4, True)
    assert not cache_files(node1)
    # The full checkpoint was split into this world's shards (weights and Adam moments): the rest of
    # the run is the uninterrupted one-process run.
    assert_same_rows(metrics(out), metrics(one_process), tol=TOL)
    assert max_diff(load_file(str(out / "model.safetensors")), load_file(str(one_process / "model.safetensors"))) < TOL


# What a worker does first in `trainer train`: init_distributed() from the launcher's environment,
# then a collective. Training through accelerate is the test above; this one is the launcher alone.
PROBE = """
import torch
import torch.distributed as dist

from trainer.loop import init_distributed

rank, world, device = init_distributed()
total = torch.tensor([float(rank)])
dist.all_reduce(total)
print(f"rank {rank} of {world} on {device.type} over {dist.get_backend()}: sum of ranks {total.item():g}", flush=True)
dist.destroy_process_group()
"""


def test_accelerate_cpu_config_starts_two_processes_that_join_over_gloo(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    r = subprocess.run(accelerate("accelerate-cpu.yaml", str(probe)), cwd=REPO, env=env_for(tmp_path / "cache"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    # Both workers share the launcher's stdout, so their lines can arrive glued together.
    lines = sorted(re.findall(r"rank \d+ of \d+ on \w+ over \w+: sum of ranks \d+", r.stdout))
    assert lines == [f"rank {rank} of 2 on cpu over gloo: sum of ranks 1" for rank in (0, 1)], r.stdout
