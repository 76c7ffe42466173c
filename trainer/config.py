"""A training recipe: YAML → typed dataclasses, with dotted ``key=value`` overrides.

A recipe has six sections (``method`` is a plain string)::

    method: wrpo                 # sft | fusesft | dpo | simpo | wrpo | fusepo | rloo
    model:  {name, reference, precision, gradient_checkpointing, attn_implementation, lora}
    data:   {path, config, split, max_length, max_prompt_length, limit, on_empty}
    loss:   {beta, label_smoothing, normalize, gamma, gamma_beta_ratio, alpha, alpha_schedule,
             base, reference, sft_normalize}
    train:  {epochs, max_steps, batch_size, grad_accum, lr, scheduler, warmup_ratio, weight_decay,
             adam_betas, max_grad_norm, seed, packing, logps_chunk, distributed}
    output: {dir, save_every, keep_checkpoints, tensorboard}

Every key has a default (see the dataclasses below); an unknown key or a wrong type is a
:class:`~fusedata.errors.FusekitError` naming the key, so the CLI exits 2 before any model
loads. The resolved config is saved with every checkpoint and hashed into resume checks;
``data.path`` given as a ``fusedata`` run folder resolves to the dataset folder that run wrote.

SimPO margin: ``loss.gamma`` is the **absolute** margin (TRL's ``simpo_gamma``);
``loss.gamma_beta_ratio`` (the SimPO repository's convention) is converted with
``gamma = ratio * beta``. Give one or the other, not both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fusedata.config import apply_overrides, build, choice, did_you_mean, load_yaml
from fusedata.errors import FusekitError

from .losses import gamma_from_ratio

METHODS = ("sft", "fusesft", "dpo", "simpo", "wrpo", "fusepo", "rloo")
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: Any = "all-linear"
    # Merge the adapter into the base weights for the final model folder (a plain HF model);
    # false saves the adapter folder instead.
    merge: bool = True


@dataclass
class ModelConfig:
    name: str = "embedded:smollm2-135m"
    # Reference model for DPO/WRPO/FusePO; null means the starting policy (the usual setup:
    # the SFT checkpoint is both the initial policy and the reference).
    reference: Optional[str] = None
    # auto: bf16 autocast over fp32 weights on CUDA, fp32 on CPU.
    precision: str = "auto"
    gradient_checkpointing: bool = False
    attn_implementation: Optional[str] = None
    lora: Optional[LoraConfig] = None


@dataclass
class DataConfig:
    path: str = ""
    # Dataset config name (fusedata folders: sft, dpo, wrpo, fuserl_sft, fuserl_po);
    # null picks the one the method reads.
    config: Optional[str] = None
    split: str = "train"
    max_length: int = 1024
    max_prompt_length: int = 512
    limit: Optional[int] = None
    # A response that truncation leaves empty: "error" stops before training, "drop" drops
    # the example and counts it.
    on_empty: str = "error"


@dataclass
class LossConfig:
    beta: Optional[float] = None
    label_smoothing: float = 0.0
    # Sequence reduction for DPO/WRPO/FusePO: "sum" (DPO) or "mean" (length-normalised DPO).
    normalize: str = "sum"
    gamma: Optional[float] = None
    gamma_beta_ratio: Optional[float] = None
    alpha: float = 0.1
    alpha_schedule: str = "linear"
    # WRPO / FusePO base objective: "dpo" (reference, summed or mean log-probs) or "simpo".
    base: str = "dpo"
    # precompute (default where a reference is needed) | live | none
    reference: Optional[str] = None
    # SFT loss normalisation: "token" (all response tokens of the step weigh the same) or
    # "response" (per-response mean, then weighted; FuseSFT's default).
    sft_normalize: Optional[str] = None


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: Optional[int] = None
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 5e-7
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    adam_betas: list = field(default_factory=lambda: [0.9, 0.999])
    max_grad_norm: float = 1.0
    seed: int = 42
    packing: bool = False
    logps_chunk: int = 1024
    # auto: DDP for world size > 1 (FSDP2 when asked); none on one process.
    distributed: str = "auto"


@dataclass
class OutputConfig:
    dir: str = "runs/train"
    # Checkpoint every N optimizer steps (0: only the final model).
    save_every: int = 0
    keep_checkpoints: int = 2
    tensorboard: bool = True


@dataclass
class Config:
    method: str = "dpo"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self, *, skip: tuple[str, ...] = ()) -> str:
        """sha256 of the resolved config; ``skip`` drops dotted keys (run-control knobs)."""
        d = self.to_dict()
        for key in skip:
            sect, _, name = key.partition(".")
            d.get(sect, {}).pop(name, None) if name else d.pop(sect, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def gamma(self) -> float:
        """The absolute SimPO margin, whichever convention the recipe used."""
        if self.loss.gamma_beta_ratio is not None:
            return gamma_from_ratio(self.loss.beta, self.loss.gamma_beta_ratio)
        return float(self.loss.gamma or 0.0)

    @property
    def reference_mode(self) -> str:
        """precompute | live | none, after the method's default."""
        return self.loss.reference or ("none" if not needs_reference(self) else "precompute")

    @property
    def sft_normalize(self) -> str:
        return self.loss.sft_normalize or ("response" if self.method == "fusesft" else "token")


def needs_reference(cfg: Config) -> bool:
    return cfg.method in ("dpo", "wrpo", "fusepo") and cfg.loss.base == "dpo"


# Default beta per method and reduction: summed log-ratios want ~0.01-0.1, per-token means ~2-10.
_DEFAULT_BETA = {"dpo": 0.1, "wrpo": 0.01, "fusepo": 0.1, "simpo": 2.0}
_MEAN_BETA = 10.0


def validate(cfg: Config) -> Config:
    """Check choices and ranges, fill method defaults (beta); return ``cfg``."""
    choice(cfg.method, METHODS, "method")
    choice(cfg.model.precision, ("auto", "fp32", "bf16"), "model.precision")
    choice(cfg.loss.normalize, ("sum", "mean"), "loss.normalize")
    choice(cfg.loss.alpha_schedule, ("linear", "fixed"), "loss.alpha_schedule")
    choice(cfg.loss.base, ("dpo", "simpo"), "loss.base")
    choice(cfg.train.scheduler, ("cosine", "linear", "constant"), "train.scheduler")
    choice(cfg.train.distributed, ("auto", "none", "ddp", "fsdp2"), "train.distributed")
    choice(cfg.data.on_empty, ("error", "drop"), "data.on_empty")
    if cfg.loss.reference is not None:
        choice(cfg.loss.reference, ("precompute", "live", "none"), "loss.reference")
    if cfg.loss.sft_normalize is not None:
        choice(cfg.loss.sft_normalize, ("token", "response"), "loss.sft_normalize")
    if cfg.method in ("simpo",) and cfg.loss.base != "dpo":
        raise FusekitError("loss.base only applies to wrpo and fusepo")
    if needs_reference(cfg) and cfg.reference_mode == "none":
        raise FusekitError(f"method {cfg.method} with base dpo needs a reference; "
                           "set loss.reference to precompute or live (or loss.base: simpo)")
    if cfg.loss.beta is None and cfg.method in _DEFAULT_BETA:
        simpo_like = cfg.method == "simpo" or cfg.loss.base == "simpo"
        cfg.loss.beta = _DEFAULT_BETA["simpo"] if simpo_like else (
            _MEAN_BETA if cfg.loss.normalize == "mean" else _DEFAULT_BETA[cfg.method])
    if cfg.loss.beta is not None and not cfg.loss.beta > 0:
        raise FusekitError(f"loss.beta must be > 0, got {cfg.loss.beta}")
    if cfg.loss.gamma is not None and cfg.loss.gamma_beta_ratio is not None:
        raise FusekitError("give loss.gamma (absolute margin) or loss.gamma_beta_ratio (gamma/beta), not both")
    if not 0.0 <= cfg.loss.label_smoothing <= 0.5:
        raise FusekitError(f"loss.label_smoothing must be in [0, 0.5], got {cfg.loss.label_smoothing}")
    if not 0.0 <= cfg.loss.alpha <= 1.0:
        raise FusekitError(f"loss.alpha must be in [0, 1], got {cfg.loss.alpha}")
    if not cfg.data.path:
        raise FusekitError("data.path is required (a fusedata dataset or run folder, a parquet/jsonl file or a Hub id)")
    cfg.data.path = dataset_of_run(cfg.data.path)
    if cfg.data.max_prompt_length < 1:
        raise FusekitError(f"data.max_prompt_length must be >= 1, got {cfg.data.max_prompt_length}")
    if cfg.data.max_prompt_length >= cfg.data.max_length:
        raise FusekitError(f"data.max_prompt_length ({cfg.data.max_prompt_length}) must be smaller than "
                           f"data.max_length ({cfg.data.max_length}) or responses truncate to nothing")
    for key in ("batch_size", "grad_accum", "logps_chunk"):
        if getattr(cfg.train, key) < 1:
            raise FusekitError(f"train.{key} must be >= 1")
    if cfg.train.max_steps is not None and cfg.train.max_steps < 1:
        raise FusekitError("train.max_steps must be >= 1")
    if not cfg.train.lr > 0:
        raise FusekitError(f"train.lr must be > 0, got {cfg.train.lr}")
    if len(cfg.train.adam_betas) != 2:
        raise FusekitError("train.adam_betas must be two numbers")
    return cfg


def dataset_of_run(path: str) -> str:
    """A fusedata run folder stands for the dataset folder it wrote last, whose name changes with
    its rows (``fusedata.dataset``); any other path is returned as it is."""
    from fusedata.dataset import run_dataset_folder
    from fusedata.store import DB_NAME

    run = Path(path).expanduser()
    if not (run / DB_NAME).is_file():
        return path
    folder = run_dataset_folder(run)
    if folder is None:
        raise FusekitError(f"data.path {path} is a fusedata run folder without a dataset; "
                           f"run `fusedata pairs {path}` first")
    return str(folder)


def parse(raw: Any) -> Config:
    """A validated :class:`Config` from a parsed YAML mapping."""
    return validate(build(Config, raw, ""))


def recipe_path(name: str) -> Path:
    """A recipe file: a path, or the name of a packaged recipe in ``trainer/recipes/``."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    packaged = RECIPES_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if packaged.is_file():
        return packaged
    known = sorted(f.stem for f in RECIPES_DIR.glob("*.yaml"))
    raise FusekitError(f"recipe not found: {name}{did_you_mean(name, known)}; packaged recipes: {', '.join(known)}")


def load(name: str, overrides: list[str] | None = None) -> Config:
    """Read a recipe file (or packaged recipe name), apply overrides, validate."""
    return parse(apply_overrides(load_yaml(recipe_path(name)), overrides or []))
