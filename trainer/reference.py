"""Reference log-probs: computed once before training and cached on disk, or run live.

One pass of the frozen reference over the tokenized data (dropout off, no grad, the same
collator as training) stores every response's **summed** log-prob; per-token means follow
from the token counts the loop already has. The cache file is keyed by a hash of the
reference model's identity and the tokenized examples (which already encode the tokenizer,
chat template, truncation and data), so a changed model or dataset never reads stale values.

Across ranks each process computes the examples ``i % world == rank`` into a tensor filled
with −inf, an all-reduce MAX merges them (correct only because of the −inf fill), and a
missing value is an error, never a silent zero. Rank 0's cache decides for every rank and a
hit is broadcast from it: only rank 0 writes the file, and ``FUSEKIT_CACHE`` is a per-machine
folder by default, so the other nodes of a multi-node run usually miss.

:func:`prepare` decides, once per run, where the loop's reference log-probs come from
(:class:`Reference`): that cache, a live forward of a frozen model, or none.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import Progress
from safetensors.torch import load_file, save_file
from torch import nn

from fusedata.models import ModelRef, cache_dir, resolve

from .config import Config
from .data import Batch, Example, collate, fingerprint
from .model import SequenceLogps, load_reference


def model_identity(ref: ModelRef) -> str:
    """The model's path plus the size and mtime of its weight files (a Hub id stands for itself)."""
    p = Path(ref.path)
    if not p.is_dir():
        return ref.path
    files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".json"))
    return "|".join([str(p.resolve())] + [f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files])


@dataclass
class Precomputed:
    """The reference log-probs of a run and where they came from."""

    values: torch.Tensor  # summed log-prob of every response, flat in example order
    cached: bool  # read from rank 0's cache file, not computed
    per_rank: list[int]  # responses each rank ran through the reference (empty when cached)


def cache_key(ref: ModelRef, data_fingerprint: str, precision: str) -> str:
    return hashlib.sha256(f"{model_identity(ref)}\n{data_fingerprint}\n{precision}".encode()).hexdigest()[:24]


def cache_path(key: str) -> Path:
    return cache_dir() / "reference_logps" / f"{key}.safetensors"


def _flat_offsets(examples: list[Example]) -> list[int]:
    offsets = [0]
    for ex in examples:
        offsets.append(offsets[-1] + len(ex.responses))
    return offsets


def compute(forward: SequenceLogps, examples: list[Example], pad_id: int, batch_size: int, device: torch.device,
            packing: bool, rank: int = 0, world: int = 1, console=None) -> tuple[torch.Tensor, list[int]]:
    """Summed reference log-probs of every response, flat in example order, and how many each rank computed."""
    offsets = _flat_offsets(examples)
    values = torch.full((offsets[-1],), float("-inf"), dtype=torch.float32, device=device)
    mine = [ex for ex in examples if ex.index % world == rank]
    # Counted from the forward passes actually run, so the run summary shows how the work was split.
    done = torch.zeros(world, dtype=torch.int64, device=device)
    was_training = forward.training
    forward.eval()
    with torch.no_grad(), Progress(console=console, transient=True, disable=rank != 0) as bar:
        task = bar.add_task("reference log-probs", total=len(mine))
        for start in range(0, len(mine), batch_size):
            chunk = mine[start:start + batch_size]
            sums, _, _ = forward(**collate(chunk, pad_id, packing).to(device).inputs())
            at = 0
            for ex in chunk:
                n = len(ex.responses)
                values[offsets[ex.index]:offsets[ex.index] + n] = sums[at:at + n].float()
                at += n
            done[rank] += len(sums)
            bar.advance(task, len(chunk))
    forward.train(was_training)
    if world > 1:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        dist.all_reduce(done)
    if torch.isinf(values).any():
        missing = int(torch.isinf(values).sum())
        raise RuntimeError(f"reference log-probs missing for {missing} responses after the all-reduce")
    return values.cpu(), done.tolist()


def _read_cache(path: Path, n: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    values = load_file(str(path))["sums"]
    return values if values.numel() == n else None


def load_or_compute(key: str, forward: SequenceLogps, examples: list[Example], pad_id: int, batch_size: int,
                    device: torch.device, packing: bool, rank: int = 0, world: int = 1, console=None) -> Precomputed:
    """Rank 0's cache file, or one pass sharded over the ranks (then cached by rank 0)."""
    n = sum(len(ex.responses) for ex in examples)
    path = cache_path(key)
    values = _read_cache(path, n) if rank == 0 else None
    if world > 1:
        # Ranks that decided on their own caches would enter different collectives (the all-reduce of
        # compute() on one side, training on the other) and hang: rank 0's decision is everyone's.
        hit = torch.tensor([values is not None], dtype=torch.int32, device=device)
        dist.broadcast(hit, src=0)
        if hit.item():
            values = values.to(device) if rank == 0 else torch.empty(n, dtype=torch.float32, device=device)
            dist.broadcast(values, src=0)
            values = values.cpu()
    if values is not None:
        return Precomputed(values, cached=True, per_rank=[])
    values, per_rank = compute(forward, examples, pad_id, batch_size, device, packing, rank, world, console)
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"sums": values.contiguous()}, str(tmp), metadata={"key": key})
        os.replace(tmp, path)
    return Precomputed(values, cached=False, per_rank=per_rank)


def per_example(values: torch.Tensor, examples: list[Example]) -> list[torch.Tensor]:
    """Split the flat tensor into one tensor of response sums per example (by example index)."""
    offsets = _flat_offsets(examples)
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(examples))]


@dataclass
class Reference:
    """Where each micro-batch's reference log-probs come from (``mode``: precompute | live | none)."""

    mode: str
    precomputed: Precomputed | None = None
    by_example: list[torch.Tensor] | None = None  # precompute: each example's response sums
    live: SequenceLogps | None = None
    # A LoRA run whose reference is its own base model: the PEFT policy, run with its adapter off.
    adapter_off: nn.Module | None = None

    def logps(self, batch: Batch) -> torch.Tensor | None:
        """Summed reference log-probs of the batch's responses, on the batch's device."""
        if self.by_example is not None:
            return torch.cat([self.by_example[ex.index] for ex in batch.examples]).to(batch.input_ids.device)
        if self.live is None:
            return None
        with torch.no_grad():
            if self.adapter_off is not None:
                with self.adapter_off.disable_adapter():
                    return self.live(**batch.inputs())[0].detach()
            return self.live(**batch.inputs())[0].detach()


def prepare(cfg: Config, policy: nn.Module, forward: SequenceLogps, examples: list[Example], pad_id: int,
            device: torch.device, rank: int, world: int, console: Console) -> Reference:
    """The run's reference: the policy at step 0 unless ``model.reference`` names another model."""
    mode = cfg.reference_mode
    separate = cfg.model.reference not in (None, cfg.model.name)
    if mode == "precompute":
        ref_forward = forward
        if separate:
            ref_forward = SequenceLogps(load_reference(cfg, device), cfg.train.logps_chunk, forward.autocast)
        key = cache_key(resolve(cfg.model.reference or cfg.model.name), fingerprint(examples), str(forward.autocast))
        pre = load_or_compute(key, ref_forward, examples, pad_id, cfg.train.batch_size * 2, device, cfg.train.packing,
                              rank, world, console)
        return Reference(mode, pre, per_example(pre.values, examples))
    if mode == "live":
        if cfg.model.lora is not None and not separate:
            return Reference(mode, live=forward, adapter_off=policy)
        return Reference(mode, live=SequenceLogps(load_reference(cfg, device), cfg.train.logps_chunk, forward.autocast))
    return Reference(mode)
