"""The training loop: one readable function, :func:`train`, over small components.

    data (tokenized response groups) → reference log-probs (precomputed once, or live)
    → for each optimizer step: fixed slice of a seeded permutation → grad-accumulated
      micro-batches (one forward each) → global-denominator loss → clip → AdamW → schedule
    → metrics (JSONL, TensorBoard, rich bar) → checkpoints → HF model folder + card + PNG

Distributed runs use plain ``torch.distributed`` as set up by ``torchrun`` or
``accelerate launch`` (both export RANK / WORLD_SIZE / LOCAL_RANK; the configs in ``trainer/launch/``
only start processes): DDP by default, FSDP2 (``train.distributed: fsdp2``) for models that do not
fit replicated. Rank 0 writes output.dir; a ``--resume`` reads its checkpoints on every rank, so
across machines output.dir must be on storage they all see. The data order is a
pure function of (seed, epoch, step, global batch), so a resumed run sees exactly the batches the
uninterrupted one would have, whatever the world size, as long as the global batch is kept.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import random
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from fusedata.errors import FusekitError
from fusedata.models import load_tokenizer

from . import reference as refcache
from .config import Config
from .data import Example, collate, dataset_config, load_rows, to_groups, tokenize
from .losses import alpha_at
from .model import (
    SequenceLogps,
    autocast_dtype,
    causal_lm,
    flops_per_token,
    load_policy,
    parameter_counts,
    peak_flops,
    save_model,
)
from .objectives import denominator, micro_batch_loss

# Keys whose change does not change the training trajectory (a resume may alter them): run control,
# and how a step's global batch is split over ranks and micro-batches (the global batch itself is
# checked on resume instead, so a run can continue on another number of processes).
RUN_CONTROL = ("output", "train.batch_size", "train.grad_accum", "train.distributed")


# --------------------------------------------------------------------------- #
# distributed set-up
# --------------------------------------------------------------------------- #


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device) from the launcher's environment; one process when absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        # Data loading and the reference pass precede the first collective: a long timeout.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=60))
    return (dist.get_rank() if world > 1 else 0), world, device


def wrap(forward: SequenceLogps, cfg: Config, world: int, device: torch.device) -> torch.nn.Module:
    """The forward under DDP (default) or FSDP2 (``train.distributed: fsdp2``); bare on one process."""
    mode = cfg.train.distributed
    if world == 1 or mode == "none":
        return forward
    if mode == "fsdp2":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=forward.autocast, reduce_dtype=torch.float32) \
            if forward.autocast is not None else MixedPrecisionPolicy()
        for layer in causal_lm(forward.model).get_decoder().layers:
            fully_shard(layer, mp_policy=mp)
        return fully_shard(forward, mp_policy=mp)
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(forward, device_ids=[device.index] if device.type == "cuda" else None)


def _reduce_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- #
# data order (pure)
# --------------------------------------------------------------------------- #


def steps_per_epoch(n_examples: int, global_batch: int) -> int:
    return max(1, math.ceil(n_examples / global_batch))


def step_indices(step: int, n_examples: int, global_batch: int, seed: int) -> list[int]:
    """The example indices of optimizer step ``step``: a slice of epoch ``step // spe``'s permutation.

    The last step of an epoch wraps around to the permutation's start, so every step has a full
    global batch (as ``DistributedSampler`` pads); the order depends on nothing but the arguments.
    """
    spe = steps_per_epoch(n_examples, global_batch)
    epoch, k = divmod(step, spe)
    g = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(n_examples, generator=g).tolist()
    take = perm[k * global_batch:(k + 1) * global_batch]
    while len(take) < global_batch:
        take += perm[:global_batch - len(take)]
    return take


def micro_batches(indices: list[int], batch_size: int, grad_accum: int, rank: int, world: int) -> list[list[int]]:
    """This rank's ``grad_accum`` micro-batches out of one step's global slice (interleaved by rank)."""
    return [indices[(j * world + rank) * batch_size:(j * world + rank + 1) * batch_size] for j in range(grad_accum)]


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (linear warmup, then cosine/linear/constant)."""
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress


# --------------------------------------------------------------------------- #
# checkpoints
# --------------------------------------------------------------------------- #


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)


def save_checkpoint(folder: Path, step: int, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, cfg: Config, rank: int, keep: int,
                    global_batch: int) -> None:
    """Write ``checkpoints/step-N`` (all ranks take part in gathering, rank 0 writes, atomically)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(wrapped, optimizer, options=_options())
    if rank == 0:
        final = folder / f"step-{step:07d}"
        tmp = folder / f".step-{step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({"model": model_sd, "optimizer": optim_sd, "scheduler": scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}},
                   tmp / "state.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "config_digest": cfg.digest(skip=RUN_CONTROL),
                                                    "global_batch": global_batch, "config": cfg.to_dict()},
                                                   indent=1, default=str))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(folder.glob("step-*"))[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()


def latest_checkpoint(folder: Path) -> Path | None:
    done = sorted(p for p in folder.glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def check_resumable(path: Path, cfg: Config, global_batch: int) -> None:
    """Refuse a checkpoint this run would not continue exactly (called before anything is written)."""
    meta = json.loads((path / "state.json").read_text())
    if meta["config_digest"] != cfg.digest(skip=RUN_CONTROL):
        raise FusekitError(f"{path} was written by a different recipe; resume with the same recipe "
                           "(only output.*, train.batch_size, train.grad_accum and train.distributed may change) "
                           "or train into a new output.dir")
    if meta.get("global_batch", global_batch) != global_batch:
        raise FusekitError(f"{path} was trained with global batch {meta['global_batch']} (batch_size × grad_accum × "
                           f"world size); this launch has {global_batch}: set train.batch_size / train.grad_accum "
                           "for this world size to keep it, or train into a new output.dir")


def load_checkpoint(path: Path, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler) -> int:
    """Restore model, optimizer, schedule and RNG state from ``path``; the step it was written at."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    meta = json.loads((path / "state.json").read_text())
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    set_state_dict(wrapped, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=_options())
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(meta["step"])


# --------------------------------------------------------------------------- #
# logging
# --------------------------------------------------------------------------- #


class MetricsLog:
    """metrics.jsonl (rank 0), truncated to the resumed step so a curve never holds duplicates."""

    def __init__(self, path: Path, start_step: int, enabled: bool, tensorboard: bool) -> None:
        self.path, self.enabled, self.rows = path, enabled, []
        self.tb = None
        if not enabled:
            return
        if path.is_file():
            self.rows = [r for r in map(json.loads, path.read_text().splitlines()) if r["step"] <= start_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"), purge_step=start_step + 1)
            except ImportError:
                self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", ["loss"]), ("rewards", ["rewards/chosen", "rewards/rejected", "rewards/margins",
                                               "rewards/source_chosen", "rewards/target_chosen", "reward", "nll"]),
              ("accuracy", ["rewards/accuracies", "rewards/source_accuracies", "rewards/pivot_accuracies"]),
              ("schedule", ["lr", "alpha", "grad_norm"])]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    steps = [r["step"] for r in rows]
    for ax, (name, keys) in zip(axes, panels):
        for k in keys:
            if any(k in r for r in rows):
                vals = [r.get(k, float("nan")) for r in rows]
                if name == "schedule" and k == "lr":
                    ax2 = ax.twinx()
                    ax2.plot(steps, vals, color="gray", ls="--", label="lr")
                    ax2.set_ylabel("lr")
                    continue
                ax.plot(steps, vals, marker="." if len(rows) < 40 else None, label=k.replace("rewards/", ""))
        ax.set_title(name)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- #
# the loop
# --------------------------------------------------------------------------- #


def prepare_examples(cfg: Config, tokenizer: Any) -> tuple[list[Example], dict[str, Any]]:
    """Rows → validated, tokenized examples (everything that can fail on bad data, before any model loads)."""
    config = dataset_config(cfg.method, cfg.data.path, cfg.data.config)
    rows = load_rows(cfg.data.path, config, cfg.data.split, cfg.data.limit)
    groups = to_groups(rows, cfg.method)
    examples, rep = tokenize(groups, tokenizer, cfg.data.max_length, cfg.data.max_prompt_length, cfg.data.on_empty)
    if cfg.method == "rloo":
        small = [ex.index for ex in examples if len(ex.responses) < 2]
        if small:
            raise FusekitError(f"rloo needs at least 2 responses per prompt; {len(small)} prompts have one")
    return examples, {"config": config, **asdict(rep)}


@dataclass
class Run:
    """What every step of this process reads: the recipe, its place among the ranks, the data."""

    cfg: Config
    rank: int
    world: int
    device: torch.device
    examples: list[Example]
    pad_id: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def global_batch(self) -> int:
        return self.cfg.train.batch_size * self.cfg.train.grad_accum * self.world


@dataclass
class Optimization:
    """The trained module and what updates it."""

    wrapped: torch.nn.Module  # the log-prob forward under DDP / FSDP2 (or bare on one process)
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total: int  # optimizer steps of the run
    steps_per_epoch: int


def make_optimization(run: Run, wrapped: torch.nn.Module) -> Optimization:
    """AdamW over the trainable parameters, warmup then the recipe's schedule, over the run's step count."""
    t = run.cfg.train
    params = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.adam_betas), weight_decay=t.weight_decay)
    spe = steps_per_epoch(len(run.examples), run.global_batch)
    total = t.max_steps or max(1, math.ceil(t.epochs * spe))
    warmup = int(t.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, t.scheduler))
    return Optimization(wrapped, params, optimizer, scheduler, total, spe)


def train(cfg: Config, *, resume: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Train as the recipe says; returns the run summary (also written to ``summary.json``)."""
    console = console or Console(stderr=True)
    _quiet_libraries()
    t_start = time.perf_counter()
    rank, world, device = init_distributed()
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model.name)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples, data_report = prepare_examples(cfg, tokenizer)
    run = Run(cfg, rank, world, device, examples, pad_id)
    out = Path(cfg.output.dir)
    last = _checkpoint_to_resume(run, out / "checkpoints", resume, console)
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    model = load_policy(cfg, device)
    forward = SequenceLogps(model, cfg.train.logps_chunk, autocast_dtype(cfg, device))
    n_params, n_trainable = parameter_counts(model)  # before FSDP2 shards them
    reference = refcache.prepare(cfg, model, forward, examples, pad_id, device, rank, world, console)
    opt = make_optimization(run, wrap(forward, cfg, world, device))
    start = _resume_or_start(run, opt, last, out / "checkpoints", console)

    log = MetricsLog(out / "metrics.jsonl", start, run.main, cfg.output.tensorboard)
    fpt, peak = flops_per_token(model, live_reference=reference.live is not None), peak_flops(device)
    last_row: dict[str, Any] = {}
    tokens_total, train_time = 0, 0.0
    with _progress(console, run.main) as bar:
        task = bar.add_task(cfg.method, total=opt.total, completed=start, info="")
        for step in range(start, opt.total):
            t0 = time.perf_counter()
            row = train_step(run, opt, reference, step)
            train_time += time.perf_counter() - t0
            tokens_total += row["tokens"]
            if peak:
                row["mfu"] = row["tokens_per_s"] * fpt / (peak * world)
            log.write(row)
            last_row = row
            if not math.isfinite(row["loss"]):
                raise FusekitError(f"loss is {row['loss']} at step {step + 1}; lower train.lr or check the data")
            bar.update(task, advance=1, info=_bar_info(row))
            if cfg.output.save_every and (step + 1) % cfg.output.save_every == 0 and step + 1 < opt.total:
                save_checkpoint(out / "checkpoints", step + 1, opt.wrapped, opt.optimizer, opt.scheduler, cfg, rank,
                                cfg.output.keep_checkpoints, run.global_batch)
    log.close()

    _save_model(run, opt.wrapped, model, tokenizer, out)
    summary: dict[str, Any] = {}
    if run.main:
        pre = reference.precomputed
        summary = {
            "method": cfg.method, "model": cfg.model.name, "data": cfg.data.path, "output": str(out),
            "steps": opt.total, "resumed_from": start, "examples": len(examples), "world_size": world,
            "global_batch": run.global_batch, "parameters": n_params, "trainable_parameters": n_trainable,
            "reference": reference.mode, "reference_cached": pre.cached if pre else None,
            "reference_per_rank": pre.per_rank if pre else None, "tokens": tokens_total,
            "train_seconds": round(train_time, 2), "wall_seconds": round(time.perf_counter() - t_start, 2),
            "tokens_per_s": tokens_total / train_time if train_time else None,
            "peak_memory_mb": round(peak_memory_mb(device), 1), "data_report": data_report,
            "final": {k: v for k, v in last_row.items() if k not in ("step", "epoch", "lr", "tokens")},
        }
        _write_reports(cfg, out, summary, log.rows, console)
    if dist.is_initialized():
        dist.barrier()
    return summary


def _checkpoint_to_resume(run: Run, ckpt_dir: Path, resume: bool, console: Console) -> Path | None:
    """The checkpoint a ``--resume`` continues, checked before train_config.json or anything else changes."""
    last = latest_checkpoint(ckpt_dir) if resume else None
    if last is not None:
        check_resumable(last, run.cfg, run.global_batch)
    elif resume and run.main:
        console.print(f"[yellow]no checkpoint in {ckpt_dir}; starting from step 0[/]")
    return last


def _resume_or_start(run: Run, opt: Optimization, last: Path | None, ckpt_dir: Path, console: Console) -> int:
    """The first step to run: the checkpoint's, or 0 after clearing an older run's checkpoints."""
    if last is not None:
        start = load_checkpoint(last, opt.wrapped, opt.optimizer, opt.scheduler)
        if run.main:
            console.print(f"resumed from {last} at step {start}")
        return start
    if run.main and ckpt_dir.is_dir() and any(ckpt_dir.glob("step-*")):
        shutil.rmtree(ckpt_dir)  # a fresh run must not later resume into an older run's state
    return 0


def train_step(run: Run, opt: Optimization, reference: refcache.Reference, step: int) -> dict[str, Any]:
    """One optimizer step (micro-batches → clip → AdamW → schedule); its metrics row, summed over ranks."""
    cfg = run.cfg
    t0 = time.perf_counter()
    alpha = alpha_at(step, opt.total, cfg.loss.alpha, cfg.loss.alpha_schedule) if cfg.method == "wrpo" else None
    idx = step_indices(step, len(run.examples), run.global_batch, cfg.train.seed)
    loss, tokens, sums = _accumulate(run, opt.wrapped, reference, idx, alpha or 0.0)
    max_norm = cfg.train.max_grad_norm if cfg.train.max_grad_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(opt.params, max_norm)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    lr = opt.scheduler.get_last_lr()[0]
    opt.optimizer.step()
    opt.scheduler.step()
    opt.optimizer.zero_grad(set_to_none=True)

    keys = sorted(sums)
    flat = _reduce_sum([loss, float(tokens)] + [v for k in keys for v in sums[k]], run.device, run.world)
    dt = time.perf_counter() - t0
    row = {"step": step + 1, "epoch": round((step + 1) / opt.steps_per_epoch, 4), "loss": flat[0]}
    for i, k in enumerate(keys):
        s, c = flat[2 + 2 * i], flat[3 + 2 * i]
        row[k] = s / c if c else float("nan")
    row.update({"lr": lr, "grad_norm": grad_norm, "tokens": int(flat[1]), "tokens_per_s": flat[1] / dt})
    if alpha is not None:
        row["alpha"] = alpha
    return row


def _accumulate(run: Run, wrapped: torch.nn.Module, reference: refcache.Reference, idx: list[int], alpha: float
                ) -> tuple[float, int, dict[str, list[float]]]:
    """Forward and backward over this rank's micro-batches of one step: (loss, tokens, metric [sum, count])."""
    cfg = run.cfg
    step_den = denominator(cfg, [run.examples[i] for i in idx])
    mbs = micro_batches(idx, cfg.train.batch_size, cfg.train.grad_accum, run.rank, run.world)
    sums: dict[str, list[float]] = {}
    loss_sum, tokens = 0.0, 0
    for j, mb in enumerate(mbs):
        batch = collate([run.examples[i] for i in mb], run.pad_id, cfg.train.packing).to(run.device)
        if run.world > 1:
            _set_sync(wrapped, j == len(mbs) - 1)
        seq_sums, seq_means, counts = wrapped(**batch.inputs())
        loss, metrics = micro_batch_loss(cfg, batch.examples, seq_sums, seq_means, counts, reference.logps(batch),
                                         alpha, step_den)
        # DDP/FSDP average gradients over ranks; the world factor turns that into a global sum.
        (loss * run.world).backward()
        loss_sum += float(loss.detach())
        tokens += batch.n_tokens
        for k, (s, c) in metrics.items():
            acc = sums.setdefault(k, [0.0, 0.0])
            acc[0] += s
            acc[1] += c
    return loss_sum, tokens, sums


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, disable=not enabled)


def _bar_info(row: dict[str, Any]) -> str:
    acc = f" acc {row['rewards/accuracies']:.2f}" if "rewards/accuracies" in row else ""
    return f"loss {row['loss']:.4f}{acc} {row['tokens_per_s']:.0f} tok/s"


def _save_model(run: Run, wrapped: torch.nn.Module, model: torch.nn.Module, tokenizer: Any, out: Path) -> None:
    """The HF model folder at output.dir (rank 0 writes; under FSDP2 every rank takes part in gathering)."""
    state = None
    if run.cfg.train.distributed == "fsdp2" and run.world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        state = {k.removeprefix("model."): v for k, v in full.items()}
    if run.main:
        lora = run.cfg.model.lora
        save_model(model, tokenizer, out, state, merge_lora=lora is None or lora.merge)


def _write_reports(cfg: Config, out: Path, summary: dict[str, Any], rows: list[dict[str, Any]],
                   console: Console) -> None:
    """summary.json, the curves, the model card and the closing table, next to the model."""
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if rows:
        plot_curves(rows, out / "curves.png", f"{cfg.method} · {cfg.model.name}")
    _write_card(cfg, out, summary)
    console.print(summary_table(summary))


def _quiet_libraries() -> None:
    """One progress bar (ours): silence the per-file bars of transformers and datasets."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _set_sync(wrapped: torch.nn.Module, sync: bool) -> None:
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if hasattr(wrapped, "require_backward_grad_sync"):  # DDP
        wrapped.require_backward_grad_sync = sync
    elif hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(sync)


# Hub ids of the embedded models, for the card's base_model field.
_EMBEDDED_HUB = {"embedded:smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
                 "embedded:gemma3-270m": "google/gemma-3-270m"}


def _write_card(cfg: Config, out: Path, summary: dict[str, Any]) -> None:
    from cards.render import render_model_card

    hp = {"method": cfg.method, "beta": cfg.loss.beta, "learning_rate": cfg.train.lr,
          "global_batch": summary["global_batch"], "steps": summary["steps"], "max_length": cfg.data.max_length,
          "reference": cfg.reference_mode, "scheduler": cfg.train.scheduler, "warmup_ratio": cfg.train.warmup_ratio}
    if cfg.method == "wrpo":
        hp.update({"alpha": cfg.loss.alpha, "alpha_schedule": cfg.loss.alpha_schedule})
    if cfg.method == "simpo" or cfg.loss.base == "simpo":
        hp["gamma"] = cfg.gamma
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary["final"].items()}
    base = _EMBEDDED_HUB.get(cfg.model.name, cfg.model.name)
    data = cfg.data.path
    # The card's metadata names Hub ids only; local paths stay out of public text.
    card = render_model_card({"model_id": out.name, "base_model": None if _local(base) else base,
                              "method": cfg.method, "datasets": [] if _local(data) else [data], "hyperparameters": hp,
                              "metrics": metrics, "recipe": cfg.to_dict()})
    card.save(str(out / "README.md"))


def _local(ref: str) -> bool:
    return Path(ref).expanduser().exists() or ref.startswith((".", "/", "~"))


def summary_table(summary: dict[str, Any]) -> Table:
    t = Table(title=f"trainer · {summary['method']} · {summary['steps']} steps")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [("examples", summary["examples"]), ("global batch", summary["global_batch"]),
            ("trainable params", f"{summary['trainable_parameters']:,}"), ("reference", summary["reference"]),
            ("tokens", f"{summary['tokens']:,}"),
            ("tokens/s", f"{summary['tokens_per_s']:.0f}" if summary["tokens_per_s"] else "-"),
            ("train time (s)", summary["train_seconds"]), ("peak memory (MB)", summary["peak_memory_mb"])]
    rows += [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in summary["final"].items()]
    rows.append(("output", summary["output"]))
    for k, v in rows:
        t.add_row(str(k), str(v))
    return t
