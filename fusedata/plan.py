"""``fusedata plan``: size a build from the recipe alone (generations, tokens, GPU-hours), no download.

How each number is made, so that a printed plan can be checked by hand:

* **Prompts per domain.** Embedded sources (and sources read from local ``data_files``) are
  loaded and counted exactly, deduplicated across sources as ``fusedata build`` does. Hub
  sources are not downloaded: their size comes from :data:`HUB_PROMPTS` (each entry says where
  its number comes from), capped by the source's ``limit``. A domain's count is the sum over
  its sources, capped by the domain's ``limit``. Hub counts are estimates: duplicates across
  sources and rows the loader skips (e.g. LeetCode problems whose examples give no tests) are
  only known after loading, so the real count can be lower, never higher.
* **Generations** of a source model = Σ over the domains it serves of prompts × ``n_for(domain)``.
  For a WRPO recipe (``pairs.method: wrpo``) the target samples the preference split only:
  the expected share ``1 − SFT_SHARE`` (2/3) of each domain's prompts, × its own n.
* **Tokens.** Input ≈ prompts × an average prompt length per domain
  (:data:`DEFAULT_PROMPT_TOKENS`, assumptions; a vLLM request with n samples prefills the prompt
  once). Output ≈ generations × ``max_tokens`` × fill (:data:`DEFAULT_FILL`, 0.5), and the worst
  case where every response runs to ``max_tokens`` (fill 1.0).
* **Throughput** (output tokens/s of one replica), first found of:
  1. ``--tokens-per-s NAME=X``;
  2. a previous run's store in the recipe's ``out`` folder (see :func:`measured_rates` for what
     its seconds mean per engine);
  3. a default by model size read from the name (:data:`GPU_CLASSES`; :data:`CPU_TOKENS_PER_S`
     for the transformers engine on CPU). Defaults are assumptions, not measurements: measure
     with ``vllm bench throughput`` (docs/data.md#throughput-planning) and pass ``--tokens-per-s``.
* **Devices per replica**: ``extra.engine_kwargs.tensor_parallel_size`` (× ``pipeline_parallel_size``),
  else ``extra.ray.num_gpus``, else the size class's usual tensor-parallel degree on 80 GB cards
  (docs/data.md#throughput-planning: 70B ≈ TP 4, Mistral-Large 123B ≈ TP 8), since a 70B model in bf16 does not fit
  one GPU. On CPU: ``extra.ray.num_cpus`` cores (default 1). Replicas: ``extra.ray.replicas`` (1).
* **Hours** (docs/data.md#throughput-planning): device-hours = output tokens / (tokens/s per replica) / 3600 × devices
  per replica; wall hours = that / (replicas × devices per replica). ``fusedata build`` runs the
  models one after another, so a build's wall clock is the sum over models.
* **Run store size** ≈ output tokens × :data:`STORE_BYTES_PER_TOKEN` (UTF-8 text of BPE tokens,
  about 4 bytes each in English) + generations × :data:`STORE_BYTES_PER_GENERATION` (a row's ids,
  sampling and score columns, and its index entries); both are assumptions. Prompts and pairs are
  small next to the responses and are left out.
* **Reward-model scoring** (prefill only): the expected prompt + response tokens of every
  generation in a domain scored with ``reward``, at :data:`RM_TOKENS_PER_S` (an assumption).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from .cluster import Resources
from .errors import FusekitError
from .pairs.wrpo import SFT_SHARE
from .recipe import ModelSpec, Recipe
from .records import DOMAINS
from .sources import SOURCES, load_source
from .store import DB_NAME, RunStore


@dataclass(frozen=True)
class KnownSize:
    """Approximate number of distinct prompts a Hub source yields, and where the number comes from."""

    prompts: int
    origin: str


#: (source, split) → prompts, for the default split of every Hub source (docs/data.md#prompt-sources lists the
#: sources; the sizes come from the dataset cards and the Hub's viewer, as each entry says).
HUB_PROMPTS: dict[tuple[str, str], KnownSize] = {
    ("ultrafeedback", "train_prefs"): KnownSize(
        61_135, "Hub viewer of HuggingFaceH4/ultrafeedback_binarized: train_prefs 61.1k rows, one per prompt"),
    ("magpie-pro-dpo", "train"): KnownSize(
        98_000, "Magpie-Pro-DPO-100K: 100k rows = 98k train + 2k test"),
    ("helpsteer2", "train"): KnownSize(
        10_162, "nvidia/HelpSteer2 card: train 20,324 rows, two responses per prompt"),
    ("openmathinstruct2", "train_1M"): KnownSize(
        600_000, "OpenMathInstruct-2 paper: ≈600k unique problems in all 14M rows (train_1M: 1M rows, "
                 "several solutions per problem), so at most this many"),
    ("leetcode", "train"): KnownSize(
        2_360, "greengerong/leetcode has 2,360 rows (its Hub viewer); problems without parsable examples are skipped"),
    ("sc2-exec", "train"): KnownSize(
        50_000, "the dataset's name (self-oss-instruct-sc2-exec-filter-50k)"),
    ("alpaca-gpt4-zh", "train"): KnownSize(
        42_715, "GPT-4-LLM alpaca_gpt4_data_zh 48,818 rows (shibing624/alpaca-zh card) minus the 6,103 "
                "mistruncated rows the llamafactory card says it removed"),
    ("magpie-qwen2-pro-zh", "train"): KnownSize(
        200_000, "the dataset's name (Magpie-Qwen2-Pro-200K-Chinese) and its Hub viewer: 200k rows"),
}

#: Assumed average prompt length in tokens (chat template included) per domain.
DEFAULT_PROMPT_TOKENS: dict[str, int] = {
    "instruction": 200,  # UltraFeedback / Magpie / HelpSteer2: a sentence to a few paragraphs
    "math": 120,         # an OpenMathInstruct-2 problem plus the \boxed{} instruction
    "code": 400,         # LeetCode statements carry examples and constraints; sc2 tasks are shorter
    "zh": 100,           # short Chinese instructions
}

#: Expected response length as a share of max_tokens. Conservative for chat data with
#: max_tokens 4096 (docs/data.md#throughput-planning's illustration assumes 500 tokens per response, fill ≈ 0.12);
#: pass --fill, or measure: a run store holds every response's token count.
DEFAULT_FILL = 0.5


@dataclass(frozen=True)
class SizeClass:
    """Default vLLM throughput for models up to ``up_to_b`` billion parameters on 80 GB GPUs."""

    up_to_b: float
    label: str
    gpus: int  # usual tensor-parallel degree in bf16
    tokens_per_s_per_gpu: float


#: Assumed output tokens/s per GPU of a vLLM replica (bf16, H100-class 80 GB cards, large batches).
#: The 70B row is docs/data.md#throughput-planning's illustration (2,000 tok/s per TP-4 replica); the others are
#: scaled guesses, deliberately on the low side. None of them is a measurement.
GPU_CLASSES: tuple[SizeClass, ...] = (
    SizeClass(3, "≤3B", 1, 4000),
    SizeClass(10, "8B", 1, 2500),
    SizeClass(35, "27B", 2, 1000),
    SizeClass(80, "70B", 4, 500),
    SizeClass(130, "123B", 8, 300),
    SizeClass(math.inf, "405B", 16, 150),
)
#: Models whose names carry no size.
KNOWN_SIZES_B: dict[str, float] = {"mistral-large": 123.0}
#: The transformers engine on CPU: README's bench measured 86.7 tok/s for SmolLM2-135M on 2
#: cores (batch 8), so ≈40 per core; larger models are assumed proportionally slower.
CPU_TOKENS_PER_S = 40.0
CPU_REFERENCE_B = 0.135
#: Assumed prefill tokens/s of one reward-model replica: an 8B sequence classifier on one GPU, or
#: the embedded judge on one CPU core.
RM_TOKENS_PER_S = {"gpu": 20_000.0, "cpu": 500.0}
STORE_BYTES_PER_TOKEN = 4
STORE_BYTES_PER_GENERATION = 600

_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")


def model_size_b(*names: str) -> float | None:
    """Parameters in billions read from a model name or id ("Llama-3.1-70B" → 70, "smollm2-135m" → 0.135)."""
    for name in names:
        low = name.lower()
        found = _SIZE.findall(low)
        if found:
            value, unit = found[-1]
            return float(value) / (1000 if unit == "m" else 1)
        for key, size in KNOWN_SIZES_B.items():
            if key in low:
                return size
    return None


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class SourceCount:
    name: str
    prompts: int
    exact: bool
    origin: str


@dataclass(frozen=True)
class DomainCount:
    domain: str
    sources: tuple[SourceCount, ...]
    prompts: int
    limit: int | None
    exact: bool


def count_prompts(recipe: Recipe) -> dict[str, DomainCount]:
    """Prompts per domain without downloading anything (see the module docstring)."""
    seen: set[str] = set()  # build deduplicates loaded prompts across every source and domain
    out: dict[str, DomainCount] = {}
    for domain, spec in recipe.domains.items():
        counts: list[SourceCount] = []
        for src in spec.sources:
            source = SOURCES[src.name]  # the recipe checked the name and the domain
            if source.kind == "embedded" or src.data_files is not None:
                loaded = load_source(src.name, limit=src.limit, data_files=src.data_files, split=src.split)
                new = [p.id for p in loaded if p.id not in seen]
                seen.update(new)
                where = "local files" if src.data_files is not None else "package data"
                counts.append(SourceCount(src.name, len(new), True, f"counted: {len(new)} prompts in the {where}"))
                continue
            split = src.split or source.split
            known = HUB_PROMPTS.get((src.name, split))
            if known is None:
                if src.limit is None:
                    raise FusekitError(f"plan: the size of source '{src.name}' split '{split}' is not known offline; "
                                       f"give the source a `limit` in the recipe")
                counts.append(SourceCount(src.name, src.limit, False, f"its limit ({split} size not known offline)"))
            elif src.limit is not None and src.limit < known.prompts:
                counts.append(SourceCount(src.name, src.limit, False, f"its limit; {known.origin}"))
            else:
                counts.append(SourceCount(src.name, known.prompts, False, known.origin))
        total = sum(c.prompts for c in counts)
        prompts = min(total, spec.limit) if spec.limit is not None else total
        out[domain] = DomainCount(domain, tuple(counts), prompts, spec.limit, all(c.exact for c in counts))
    return out


# --------------------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Rate:
    """Output tokens/s of one replica, and where the number comes from."""

    tokens_per_s: float
    source: str  # "--tokens-per-s" | "measured" | "default"
    detail: str


def device_of(spec: ModelSpec) -> str:
    """"gpu" or "cpu". The transformers engine is the CPU path unless the recipe puts it on a GPU;
    vLLM and served endpoints are planned as GPU servers (``extra.device: cpu`` says otherwise)."""
    extra = spec.engine.extra or {}
    device = str(extra.get("device", "")).lower()
    if device:
        return "cpu" if device == "cpu" else "gpu"
    if spec.engine.engine in ("vllm", "openai"):
        return "gpu"
    return "gpu" if float((extra.get("ray") or {}).get("num_gpus", 0) or 0) > 0 else "cpu"


def units_per_replica(spec: ModelSpec, device: str) -> tuple[float, str]:
    """GPUs (or CPU cores) one replica uses, and where the number comes from."""
    extra = spec.engine.extra or {}
    res = Resources.from_extra(extra)
    if device == "cpu":
        return res.num_cpus, "extra.ray.num_cpus" if (extra.get("ray") or {}).get("num_cpus") else "default"
    kw = extra.get("engine_kwargs") or {}
    if kw.get("tensor_parallel_size") or kw.get("pipeline_parallel_size"):
        try:
            gpus = int(kw.get("tensor_parallel_size") or 1) * int(kw.get("pipeline_parallel_size") or 1)
        except (TypeError, ValueError):
            raise FusekitError(f"recipe: model '{spec.name}': extra.engine_kwargs: parallel sizes must be "
                               f"whole numbers, got {kw}") from None
        return gpus, "extra.engine_kwargs"
    if res.num_gpus:
        return res.num_gpus, "extra.ray.num_gpus"
    size_class = _gpu_class(model_size_b(spec.name, spec.engine.model))
    return size_class.gpus, f"the usual TP for {size_class.label} on 80 GB cards"


def _gpu_class(size_b: float | None) -> SizeClass:
    if size_b is None:  # unknown: plan for a big model rather than a small one
        return next(c for c in GPU_CLASSES if c.label == "70B")
    return next(c for c in GPU_CLASSES if size_b <= c.up_to_b)


def default_rate(spec: ModelSpec, device: str, units: float) -> Rate:
    size_b = model_size_b(spec.name, spec.engine.model)
    if device == "cpu":
        per_core = CPU_TOKENS_PER_S * min(1.0, CPU_REFERENCE_B / size_b) if size_b else CPU_TOKENS_PER_S
        return Rate(per_core * units, "default",
                    f"default: transformers on CPU, {per_core:g} tok/s per core × {units:g} "
                    f"(README bench, SmolLM2-135M, scaled by size; assumed)")
    c = _gpu_class(size_b)
    size = f"{size_b:g}B" if size_b else "size unknown, assumed 70B-class"
    return Rate(c.tokens_per_s_per_gpu * units, "default",
                f"default: vLLM {size}, {c.tokens_per_s_per_gpu:g} tok/s per GPU × {units:g} "
                "(H100-class; assumed, not measured)")


def measured_rates(folder: str | Path, specs: list[ModelSpec]) -> dict[str, Rate]:
    """Output tokens/s per replica of each model with timed responses in the run store at ``folder``.

    What a response's ``seconds`` means depends on the engine that wrote it:

    * transformers and vLLM: each response carries its batch's wall time ÷ the batch's size, so
      Σ seconds is the time a replica spent generating and tokens / Σ seconds is its throughput;
    * openai: each response carries its request's latency (÷ n when n samples shared one request),
      with up to ``concurrency`` requests in flight, so Σ seconds ≈ wall time × requests in flight
      and tokens / Σ seconds is the speed of one stream. The endpoint's throughput is at most that
      × ``concurrency``, which is what is used: exact when the run kept ``concurrency`` requests in
      flight throughout (a large run), optimistic for a short one.

    Models without timed responses (none stored, or written by the Ray vLLM path, which records
    no per-response time) are left out.
    """
    if not (Path(folder) / DB_NAME).is_file():
        return {}
    with RunStore(folder) as store:
        stats = store.response_stats()
    rates: dict[str, Rate] = {}
    for spec in specs:
        s = stats.get(spec.name)
        if not s or not s["output_tokens"] or not s["seconds"]:
            continue
        tokens, seconds = float(s["output_tokens"]), float(s["seconds"])
        base = f"measured in {folder}: {int(tokens):,} output tokens of {int(s['responses']):,} responses"
        if spec.engine.endpoint is not None:
            c = spec.engine.endpoint.concurrency
            rates[spec.name] = Rate(tokens / seconds * c, "measured", f"{base}, {seconds:,.0f} s summed request "
                                    f"latency × {c} requests in flight (upper bound)")
        else:
            rates[spec.name] = Rate(tokens / seconds, "measured", f"{base} in {seconds:,.1f} s")
    return rates


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ModelPlan:
    name: str
    model: str
    role: str  # "source" | "target"
    device: str  # "gpu" | "cpu"
    prompts: dict[str, int]
    generations: dict[str, int]
    max_tokens: int
    input_tokens: int
    output_tokens: int  # expected, at the plan's fill
    output_tokens_worst: int  # every response runs to max_tokens
    rate: Rate
    units_per_replica: float  # GPUs, or CPU cores on CPU
    units_source: str
    replicas: int
    hours: float  # GPU-hours (CPU core-hours on CPU)
    hours_worst: float
    wall_hours: float

    @property
    def total_generations(self) -> int:
        return sum(self.generations.values())


@dataclass(frozen=True)
class ScoringPlan:
    model: str
    device: str
    items: int
    tokens: int
    rate: Rate
    replicas: int
    hours: float
    wall_hours: float


def store_bytes(models: tuple[ModelPlan, ...], *, worst: bool) -> int:
    """Bytes the run store will take for these models' responses (see the module docstring)."""
    tokens = sum(m.output_tokens_worst if worst else m.output_tokens for m in models)
    return tokens * STORE_BYTES_PER_TOKEN + sum(m.total_generations for m in models) * STORE_BYTES_PER_GENERATION


@dataclass(frozen=True)
class Plan:
    recipe: str
    fill: float
    prompt_tokens: dict[str, int]
    domains: dict[str, DomainCount]
    models: tuple[ModelPlan, ...]
    scoring: ScoringPlan
    notes: tuple[str, ...] = field(default=())

    def totals(self) -> dict[str, Any]:
        ms = self.models
        by_device = {d: [m for m in ms if m.device == d] for d in ("gpu", "cpu")}
        return {
            "generations": sum(m.total_generations for m in ms),
            "input_tokens": sum(m.input_tokens for m in ms),
            "output_tokens": sum(m.output_tokens for m in ms),
            "output_tokens_worst": sum(m.output_tokens_worst for m in ms),
            "gpu_hours": sum(m.hours for m in by_device["gpu"]),
            "gpu_hours_worst": sum(m.hours_worst for m in by_device["gpu"]),
            "cpu_hours": sum(m.hours for m in by_device["cpu"]),
            "cpu_hours_worst": sum(m.hours_worst for m in by_device["cpu"]),
            # build runs the models one after another; separate servers in parallel take the longest
            "wall_hours_sequential": sum(m.wall_hours for m in ms),
            "wall_hours_parallel": max((m.wall_hours for m in ms), default=0.0),
            "store_bytes": store_bytes(ms, worst=False),
            "store_bytes_worst": store_bytes(ms, worst=True),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "fill": self.fill,
            "prompt_tokens": self.prompt_tokens,
            "domains": {d: asdict(c) for d, c in self.domains.items()},
            "models": [{**asdict(m), "total_generations": m.total_generations} for m in self.models],
            "scoring": asdict(self.scoring),
            "totals": self.totals(),
            "notes": list(self.notes),
        }


def parse_assignments(values: list[str] | None, option: str, *, integer: bool = False) -> dict[str, float]:
    """``["NAME=X", ...]`` → ``{NAME: X}`` with X a positive number; a malformed value is a user error."""
    out: dict[str, float] = {}
    for value in values or []:
        name, sep, number = value.rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise FusekitError(f"{option}: expected NAME=NUMBER, got {value!r}")
        try:
            x = int(number) if integer else float(number)
        except ValueError:
            raise FusekitError(f"{option} {name}: {number!r} is not a {'whole ' if integer else ''}number") from None
        if not (x > 0 and math.isfinite(x)):
            raise FusekitError(f"{option} {name}: must be a positive number, got {number!r}")
        out[name] = x
    return out


def _check_names(given: dict[str, Any], known: list[str], option: str) -> None:
    for name in given:
        if name not in known:
            raise FusekitError(f"{option}: unknown name '{name}'; this plan has: {', '.join(known)}")


def _model_plan(spec: ModelSpec, role: str, prompts: dict[str, int], fill: float, prompt_tokens: dict[str, int],
                rate: Rate | None) -> ModelPlan:
    device = device_of(spec)
    units, units_source = units_per_replica(spec, device)
    rate = rate or default_rate(spec, device, units)
    replicas = Resources.from_extra(spec.engine.extra).replicas
    gens = {d: p * spec.n_for(d) for d, p in prompts.items()}
    max_tokens = spec.sampling.max_tokens
    out_worst = sum(gens.values()) * max_tokens
    out_tokens = round(out_worst * fill)
    replica_hours = out_tokens / rate.tokens_per_s / 3600
    return ModelPlan(
        name=spec.name, model=spec.engine.model, role=role, device=device, prompts=prompts, generations=gens,
        max_tokens=max_tokens, input_tokens=sum(p * prompt_tokens[d] for d, p in prompts.items()),
        output_tokens=out_tokens, output_tokens_worst=out_worst, rate=rate, units_per_replica=units,
        units_source=units_source, replicas=replicas, hours=replica_hours * units,
        hours_worst=out_worst / rate.tokens_per_s / 3600 * units, wall_hours=replica_hours / replicas,
    )


def _scoring_plan(recipe: Recipe, models: tuple[ModelPlan, ...], fill: float, prompt_tokens: dict[str, int],
                  rm_tokens_per_s: float | None) -> ScoringPlan:
    reward = recipe.scoring.reward_config
    scored = {d for d, scorers in recipe.scoring.domains.items() if "reward" in scorers and reward.kind != "none"}
    model = getattr(reward, "model", "")
    on_cpu = model.startswith("embedded:") or (getattr(reward, "device", None) or "").lower() == "cpu"
    device = "cpu" if on_cpu else "gpu"
    items = tokens = 0
    for m in models:
        for d, g in m.generations.items():
            if d in scored:
                items += g
                tokens += round(g * (prompt_tokens[d] + m.max_tokens * fill))
    if rm_tokens_per_s is not None:
        rate = Rate(rm_tokens_per_s, "--rm-tokens-per-s", f"--rm-tokens-per-s {rm_tokens_per_s:g}")
    else:
        what = "an 8B sequence classifier on one GPU" if device == "gpu" else "the embedded judge on one CPU core"
        rate = Rate(RM_TOKENS_PER_S[device], "default",
                    f"default: {RM_TOKENS_PER_S[device]:g} prompt+response tokens/s, {what} (assumed)")
    replicas = recipe.scoring.resources("reward").replicas
    hours = tokens / rate.tokens_per_s / 3600
    return ScoringPlan(model, device, items, tokens, rate, replicas, hours, hours / replicas)


def plan_recipe(
    recipe: Recipe,
    *,
    fill: float = DEFAULT_FILL,
    tokens_per_s: dict[str, float] | None = None,
    prompt_tokens: dict[str, int] | None = None,
    rm_tokens_per_s: float | None = None,
    store_folder: str | Path | None = None,
) -> Plan:
    """The plan of ``fusedata build RECIPE``; ``store_folder`` (default: the recipe's ``out``) is
    where a previous run's store is looked for to measure throughput."""
    if not 0 < fill <= 1:
        raise FusekitError(f"--fill must be in (0, 1], got {fill:g}")
    if rm_tokens_per_s is not None and not rm_tokens_per_s > 0:
        raise FusekitError(f"--rm-tokens-per-s must be positive, got {rm_tokens_per_s:g}")
    _check_names(prompt_tokens or {}, list(DOMAINS), "--prompt-tokens")
    ptoks = {**DEFAULT_PROMPT_TOKENS, **{d: int(v) for d, v in (prompt_tokens or {}).items()}}
    domains = count_prompts(recipe)
    specs: list[tuple[ModelSpec, str]] = [(m, "source") for m in recipe.models]
    notes: list[str] = []
    if recipe.target is not None:
        if recipe.pairs.method == "wrpo":
            specs.append((recipe.target, "target"))
            notes.append(f"target {recipe.target.name}: samples the WRPO preference split, the expected "
                         f"{1 - SFT_SHARE:.0%} of each domain's prompts (pairs/wrpo.py SFT_SHARE = 1/3; "
                         "the split is by hash)")
        else:
            notes.append(f"target {recipe.target.name}: not sampled, pairs.method is '{recipe.pairs.method}' "
                         "(only wrpo samples it)")
    _check_names(tokens_per_s or {}, [m.name for m, _ in specs], "--tokens-per-s")
    overrides = {name: Rate(x, "--tokens-per-s", f"--tokens-per-s {name}={x:g}")
                 for name, x in (tokens_per_s or {}).items()}
    measured = measured_rates(store_folder if store_folder is not None else recipe.out, [m for m, _ in specs])
    plans = []
    for spec, role in specs:
        share = 1 - SFT_SHARE if role == "target" else 1.0
        prompts = {d: round(c.prompts * share) for d, c in domains.items() if spec.serves(d)}
        plans.append(_model_plan(spec, role, prompts, fill, ptoks, overrides.get(spec.name) or measured.get(spec.name)))
    models = tuple(plans)
    unlimited = [d for d, c in domains.items() if c.limit is None and not c.exact]
    if unlimited:
        notes.append(f"no limit on {', '.join(unlimited)}: every prompt of the sources is planned "
                     "(set domains.DOMAIN.limit in the recipe, or --limit, to plan fewer)")
    if not all(c.exact for c in domains.values()):
        notes.append("≈ Hub prompt counts come from dataset sizes (fusedata/plan.py HUB_PROMPTS): duplicates across "
                     "sources and rows the loader skips are only known after loading, so real counts can be lower")
    if any(m.rate.source == "default" for m in models):
        notes.append("default throughputs are assumptions, not measurements: measure each model (e.g. `vllm bench "
                     "throughput`) and pass --tokens-per-s NAME=X, or plan again after a short "
                     "`fusedata build --limit`")
    return Plan(recipe.name, fill, ptoks, domains, models, _scoring_plan(recipe, models, fill, ptoks, rm_tokens_per_s),
                tuple(notes))


# --------------------------------------------------------------------------- rendering


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 1 else f"{h:.2g}"


def plan_tables(plan: Plan) -> list[Table]:
    """The prompts table (per domain and source) and the generation table (per model, total, scoring)."""
    prompts = Table(title=f"fusedata plan — prompts ({plan.recipe})")
    for col in ("domain", "sources", "prompts", "limit", "generations"):
        prompts.add_column(col, justify="left" if col in ("domain", "sources") else "right")
    for d, c in plan.domains.items():
        sources = "\n".join(f"{s.name} {'' if s.exact else '≈'}{s.prompts:,}" for s in c.sources)
        gens = sum(m.generations.get(d, 0) for m in plan.models)
        prompts.add_row(d, sources, f"{'' if c.exact else '≈'}{c.prompts:,}",
                        f"{c.limit:,}" if c.limit is not None else "–", f"{gens:,}")

    t = Table(title=f"fusedata plan — generation (fill {plan.fill:g} of max_tokens; "
                    "worst = every response hits max_tokens)")
    for col in ("model", "role", "prompts", "generations", "input tok", "output tok", "worst", "tok/s/replica",
                "dev/replica", "replicas", "device-h", "worst", "wall h"):
        t.add_column(col, justify="left" if col in ("model", "role") else "right")
    for m in plan.models:
        unit = "GPU" if m.device == "gpu" else "CPU"
        t.add_row(m.name, m.role, f"{sum(m.prompts.values()):,}", f"{m.total_generations:,}", _si(m.input_tokens),
                  _si(m.output_tokens), _si(m.output_tokens_worst), f"{m.rate.tokens_per_s:,.0f} ({m.rate.source})",
                  f"{m.units_per_replica:g} {unit}", str(m.replicas), f"{_hours(m.hours)} {unit}-h",
                  f"{_hours(m.hours_worst)} {unit}-h", _hours(m.wall_hours))
    tot = plan.totals()
    devices = [d for d in ("gpu", "cpu") if any(m.device == d for m in plan.models)]
    hours = " + ".join(f"{_hours(tot[f'{d}_hours'])} {d.upper()}-h" for d in devices)
    worst = " + ".join(f"{_hours(tot[f'{d}_hours_worst'])} {d.upper()}-h" for d in devices)
    t.add_section()
    t.add_row("total", "", "", f"{tot['generations']:,}", _si(tot["input_tokens"]), _si(tot["output_tokens"]),
              _si(tot["output_tokens_worst"]), "", "", "", hours, worst, _hours(tot["wall_hours_sequential"]),
              style="bold")
    s = plan.scoring
    unit = "GPU" if s.device == "gpu" else "CPU"
    t.add_section()
    t.add_row(f"reward: {s.model}", "scoring", "", f"{s.items:,} items", _si(s.tokens), "", "",
              f"{s.rate.tokens_per_s:,.0f} ({s.rate.source})", f"1 {unit}", str(s.replicas),
              f"{_hours(s.hours)} {unit}-h", "", _hours(s.wall_hours))
    return [prompts, t]


def plan_notes(plan: Plan) -> list[str]:
    """Where every estimated number comes from, for the lines under the tables."""
    lines = [f"{s.name}: {s.origin}" for c in plan.domains.values() for s in c.sources if not s.exact]
    lines += [f"{m.name}: {m.rate.detail}; {m.units_per_replica:g} {'GPU' if m.device == 'gpu' else 'CPU core'}(s) "
              f"per replica from {m.units_source}" for m in plan.models]
    lines.append(f"reward model: {plan.scoring.rate.detail}")
    tot = plan.totals()
    if len(plan.models) > 1:
        lines.append("wall h: `fusedata build` runs the models one after another "
                     f"({_hours(tot['wall_hours_sequential'])} h); "
                     f"on separate servers at once the longest takes {_hours(tot['wall_hours_parallel'])} h")
    assumed = ", ".join(f"{d} {n}" for d, n in plan.prompt_tokens.items() if d in plan.domains)
    lines.append(f"run store ≈ {_si(tot['store_bytes'])}B (worst {_si(tot['store_bytes_worst'])}B): "
                 f"{STORE_BYTES_PER_TOKEN} bytes per output token + {STORE_BYTES_PER_GENERATION} per generation "
                 "(assumed)")
    lines.append(f"input tokens assume {assumed} tokens per prompt (--prompt-tokens DOMAIN=N)")
    return lines + list(plan.notes)
