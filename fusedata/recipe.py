"""A ``fusedata`` recipe: YAML → typed, validated dataclasses, checked whole before any model loads.

A recipe (see ``fusedata/recipes/default.yaml`` for the embedded default)::

    name: demo
    out: runs/demo
    domains:                       # domain -> prompt sources (names from fusedata.sources)
      math: {sources: [embedded:math], limit: 8}
      code: [embedded:code]        # short form: just the list of sources
    models:                        # the source models
      - name: smollm2
        model: embedded:smollm2-135m
        engine: transformers       # transformers | vllm | openai
        sampling: {temperature: 0.8, top_p: 0.95, max_tokens: 256, n: 2, seed: 0}
        n_per_domain: {code: 4}    # more samples for some domains (FuseChat: IF 5, code 8)
        domains: [math, code]      # optional: only these domains
    target: {...}                  # same shape as a model; the WRPO target
    scoring: {...}                 # ScoringConfig: scorers per domain, verifier options, the reward block
    pairs: {...}                   # PairsConfig: the method and its options

Every block goes through :func:`fusedata.config.build` (unknown keys with did-you-mean, types),
then the checks no type can express (known sources, positive limits, a WRPO target, the reward
block via ``fusedata.rewards.validate_spec``). Nothing here loads a model or a dataset, so a typo
anywhere costs a second, not the hours of generation before the stage that reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .cluster import Resources
from .config import apply_overrides, build, did_you_mean, load_yaml
from .endpoint import ENDPOINT_KEYS, EndpointSettings, endpoint_settings
from .engines import ENGINES, EngineConfig
from .errors import FusekitError
from .records import DOMAINS, SamplingParams

if TYPE_CHECKING:
    from .rewards import RewardConfig

DEFAULT_RECIPE = "default.yaml"
METHODS = ("fusechat3", "wrpo", "fuserl")
SCORERS = ("math", "code", "reward")
DEFAULT_DOMAINS = {"instruction": ["reward"], "math": ["math", "reward"], "code": ["code", "reward"], "zh": ["reward"]}
DEFAULT_REWARD = {"kind": "judge", "model": "embedded:smollm2-135m"}


@dataclass(frozen=True)
class SourceSpec:
    name: str
    limit: int | None = None
    data_files: str | list[str] | None = None
    split: str | None = None


@dataclass(frozen=True)
class DomainSpec:
    sources: tuple[SourceSpec, ...] = ()
    limit: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    engine: EngineConfig
    sampling: SamplingParams
    n_per_domain: dict[str, int] = field(default_factory=dict)
    domains: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.engine.name

    def n_for(self, domain: str) -> int:
        return self.n_per_domain.get(domain, self.sampling.n)

    def serves(self, domain: str) -> bool:
        return self.domains is None or domain in self.domains


@dataclass(frozen=True)
class _ModelBlock:
    """One model as the recipe writes it: flat keys. Unset optional keys keep the defaults of
    ``EngineConfig`` / ``EndpointSettings``, so those defaults live in one place."""

    model: str
    name: str | None = None
    engine: str = "transformers"
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    rpm: float | None = None
    n_per_request: bool | None = None
    batch_size: int | None = None
    system_prompt: str | None = None
    fold_system: bool | None = None
    stop: str | list[str] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n_per_domain: dict[str, int] = field(default_factory=dict)
    domains: list[str] | None = None


@dataclass(frozen=True)
class MathOptions:
    """Options of the math verifier; unset ones keep ``verify_math_batch``'s defaults."""

    timeout: float | None = None
    workers: int | None = None
    ray: dict[str, Any] | None = None


@dataclass(frozen=True)
class CodeOptions:
    """Options of the code verifier; unset ones keep ``verify_code_batch``'s defaults."""

    timeout: float | None = None
    workers: int | None = None
    memory_mb: int | None = None
    ray: dict[str, Any] | None = None


def verifier_kwargs(options: MathOptions | CodeOptions) -> dict[str, Any]:
    """The keyword arguments a verifier batch call takes from its recipe block."""
    return {k: v for k, v in dataclasses.asdict(options).items() if v is not None and k != "ray"}


@dataclass(frozen=True)
class ScoringConfig:
    """The recipe's ``scoring:`` block; ``domains`` is merged over the FuseChat-3.0 defaults on load."""

    domains: dict[str, list[str]] = field(default_factory=dict)
    reward: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_REWARD))
    math: MathOptions = field(default_factory=MathOptions)
    code: CodeOptions = field(default_factory=CodeOptions)
    batch_size: int = 64

    @property
    def reward_spec(self) -> dict[str, Any]:
        """The reward block without its Ray placement: what ``fusedata.rewards`` takes."""
        return {k: v for k, v in self.reward.items() if k != "ray"}

    @property
    def reward_config(self) -> RewardConfig:
        """The typed reward block (``parse_scoring`` has checked it, so this does not fail)."""
        from .rewards import validate_spec

        return validate_spec(self.reward_spec)

    def resources(self, scorer: str) -> Resources:
        """What one replica of ``scorer`` (math, code, reward) needs on a Ray cluster."""
        ray = {"math": self.math.ray, "code": self.code.ray, "reward": self.reward.get("ray")}[scorer]
        return Resources.from_extra({"ray": ray})


@dataclass(frozen=True)
class PairsConfig:
    """The recipe's ``pairs:`` block. Options of the other methods may stay in a recipe built with
    another method; each builder takes only its own (:meth:`options`)."""

    method: str = "fusechat3"
    seed: int = 0
    test_fraction: float = 0.05
    keep_truncated: bool = False
    # fusechat3
    sft_ratio: float = 0.4
    gap: tuple[float, ...] | dict[str, tuple[float, ...] | None] | None = (0.01, 0.1)
    pick: Literal["largest_gap", "random"] = "largest_gap"
    # wrpo
    require_verified: bool = False
    export: Literal["quadruple", "wrpo"] = "quadruple"
    # fuserl
    m: int = 4
    tau: float = 1.0

    def options(self) -> dict[str, Any]:
        """The keyword arguments of this method's builder (besides the seed)."""
        if self.method == "fusechat3":
            return {"sft_ratio": self.sft_ratio, "gap": self.gap, "pick": self.pick}
        if self.method == "wrpo":
            return {"require_verified": self.require_verified}
        return {"m": self.m, "tau": self.tau}


@dataclass(frozen=True)
class Recipe:
    name: str
    out: str
    domains: dict[str, DomainSpec]
    models: tuple[ModelSpec, ...]
    target: ModelSpec | None = None
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class _RecipeFile:
    """The top level as written; domains and models have short forms and are resolved below."""

    domains: dict[str, Any] = field(default_factory=dict)
    models: list[Any] = field(default_factory=list)
    name: str = "fusekit-run"
    out: str | None = None
    target: dict[str, Any] | None = None
    scoring: dict[str, Any] | None = None
    pairs: dict[str, Any] | None = None


def _at_least(value: int | float | None, low: int, where: str) -> None:
    if value is not None and value < low:
        raise FusekitError(f"recipe: {where} must be >= {low}, got {value}")


def _domain_name(name: str, where: str) -> None:
    if name not in DOMAINS:
        raise FusekitError(f"recipe: {where}: unknown domain '{name}'{did_you_mean(name, DOMAINS)}; "
                           f"known: {', '.join(DOMAINS)}")


def _source(spec: SourceSpec, domain: str, where: str) -> None:
    from .sources import SOURCES

    known = SOURCES.get(spec.name)
    if known is None:
        raise FusekitError(f"recipe: {where}: unknown prompt source '{spec.name}'{did_you_mean(spec.name, SOURCES)}; "
                           f"known: {', '.join(SOURCES)}")
    if known.domain != domain:
        raise FusekitError(f"recipe: {where}: source '{spec.name}' gives {known.domain} prompts, "
                           f"listed under domain '{domain}'")
    _at_least(spec.limit, 1, f"{where}.limit")


def _domain(name: str, raw: Any) -> DomainSpec:
    where = f"domains.{name}"
    _domain_name(name, "domains")
    if isinstance(raw, (list, str)):  # short form: just the sources
        raw = {"sources": [raw] if isinstance(raw, str) else raw}
    if isinstance(raw, dict) and isinstance(raw.get("sources"), list):
        raw = {**raw, "sources": [{"name": s} if isinstance(s, str) else s for s in raw["sources"]]}
    spec = build(DomainSpec, raw, f"recipe: {where}")
    if not spec.sources:
        raise FusekitError(f"recipe: {where}.sources: expected a non-empty list of prompt sources")
    for i, src in enumerate(spec.sources):
        _source(src, name, f"{where}.sources[{i}]")
    _at_least(spec.limit, 1, f"{where}.limit")
    return spec


def _check_sampling(sp: SamplingParams, where: str) -> None:
    if sp.n < 1 or sp.max_tokens < 1 or not 0 < sp.top_p <= 1 or sp.temperature < 0 or sp.repetition_penalty <= 0:
        raise FusekitError(f"recipe: {where}.sampling: need n >= 1, max_tokens >= 1, 0 < top_p <= 1, "
                           f"temperature >= 0, repetition_penalty > 0; got {dataclasses.asdict(sp)}")


def _endpoint(block: _ModelBlock, where: str) -> EndpointSettings | None:
    if block.engine != "openai":
        stray = [k for k in ("base_url", *ENDPOINT_KEYS, "n_per_request") if getattr(block, k) is not None]
        if stray:
            raise FusekitError(f"recipe: {where}: {', '.join(stray)} only apply to engine 'openai' "
                               f"(this model's engine is '{block.engine}')")
        return None
    if not block.base_url:
        raise FusekitError(f"recipe: {where}: engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
    return endpoint_settings(block.base_url, block.model, f"recipe: {where}",
                             **{k: getattr(block, k) for k in ENDPOINT_KEYS})


def _model(raw: Any, where: str) -> ModelSpec:
    if isinstance(raw, dict) and "model" not in raw:
        raise FusekitError(f"recipe: {where}: needs 'model' (embedded:NAME, a folder, a .gguf file or a Hub id)")
    block = build(_ModelBlock, raw, f"recipe: {where}")
    if block.engine not in ENGINES:
        raise FusekitError(f"recipe: {where}.engine: unknown engine '{block.engine}'"
                           f"{did_you_mean(block.engine, ENGINES)}; choose one of {', '.join(ENGINES)}")
    _check_sampling(block.sampling, where)
    for d, n in block.n_per_domain.items():
        _domain_name(d, f"{where}.n_per_domain")
        _at_least(n, 1, f"{where}.n_per_domain.{d}")
    for d in block.domains or ():
        _domain_name(d, f"{where}.domains")
    _at_least(block.batch_size, 1, f"{where}.batch_size")
    try:
        Resources.from_extra(block.extra)
    except FusekitError as e:
        raise FusekitError(f"recipe: {where}: {str(e).removeprefix('recipe: ')}") from None
    engine_kw = {k: getattr(block, k) for k in ("batch_size", "system_prompt", "fold_system")
                 if getattr(block, k) is not None}
    name = block.name or block.model.split("/")[-1].replace("embedded:", "")
    stop = (block.stop,) if isinstance(block.stop, str) else tuple(block.stop)
    engine = EngineConfig(name=name, model=block.model, engine=block.engine, endpoint=_endpoint(block, where),
                          stop=stop, extra=block.extra, n_per_request=block.n_per_request, **engine_kw)
    return ModelSpec(engine, block.sampling, dict(block.n_per_domain),
                     tuple(block.domains) if block.domains is not None else None)


def parse_scoring(raw: dict[str, Any] | None, where: str = "recipe: scoring") -> ScoringConfig:
    """The ``scoring:`` block with the FuseChat-3.0 defaults filled in; the reward block is checked
    by ``fusedata.rewards.validate_spec``, which loads nothing."""
    from .rewards import validate_spec

    cfg = build(ScoringConfig, raw or {}, where)
    for d, scorers in cfg.domains.items():
        _domain_name(d, "scoring.domains")
        for s in scorers:
            if s not in SCORERS:
                raise FusekitError(f"{where}.domains.{d}: unknown scorer '{s}'{did_you_mean(s, SCORERS)}; "
                                   f"known: {', '.join(SCORERS)}")
    _at_least(cfg.batch_size, 1, "scoring.batch_size")
    cfg = dataclasses.replace(cfg, domains={**DEFAULT_DOMAINS, **cfg.domains}, reward=cfg.reward or DEFAULT_REWARD)
    for scorer in SCORERS:
        try:
            cfg.resources(scorer)
        except FusekitError as e:
            raise FusekitError(f"{where}.{scorer}: {str(e).removeprefix('recipe: ')}") from None
    validate_spec(cfg.reward_spec, f"{where}.reward")
    return cfg


def _check_window(win: tuple[float, ...] | None, where: str) -> None:
    if win is not None and (len(win) != 2 or win[0] > win[1]):
        raise FusekitError(f"recipe: {where}: a gap window is [low, high] with low <= high, got {list(win)}")


def parse_pairs(raw: dict[str, Any] | None, where: str = "recipe: pairs") -> PairsConfig:
    """The ``pairs:`` block: the method, its split and its options, every value range-checked."""
    cfg = build(PairsConfig, raw or {}, where)
    if cfg.method not in METHODS:
        raise FusekitError(f"{where}.method: unknown pair method '{cfg.method}'{did_you_mean(cfg.method, METHODS)}; "
                           f"choose one of {', '.join(METHODS)}")
    if not 0.0 <= cfg.test_fraction < 1.0:
        raise FusekitError(f"{where}.test_fraction must be in [0, 1), got {cfg.test_fraction}")
    if not 0.0 <= cfg.sft_ratio <= 1.0:
        raise FusekitError(f"{where}.sft_ratio must be in [0, 1], got {cfg.sft_ratio}")
    if isinstance(cfg.gap, dict):
        for d, win in cfg.gap.items():
            if d != "default":
                _domain_name(d, "pairs.gap")
            _check_window(win, f"pairs.gap.{d}")
    else:
        _check_window(cfg.gap, "pairs.gap")
    _at_least(cfg.m, 1, "pairs.m")
    if not cfg.tau > 0:
        raise FusekitError(f"{where}.tau must be > 0, got {cfg.tau}")
    return cfg


def parse(raw: Any, *, origin: str = "recipe") -> Recipe:
    """A validated :class:`Recipe` from a parsed YAML mapping; every mistake is one FusekitError."""
    if not isinstance(raw, dict):
        raise FusekitError(f"{origin}: a recipe is a YAML mapping, got {type(raw).__name__}")
    top = build(_RecipeFile, raw, "recipe")
    if not top.domains:
        raise FusekitError("recipe: 'domains' must map at least one domain to its prompt sources")
    if not top.models:
        raise FusekitError("recipe: 'models' must list at least one source model")
    models = tuple(_model(m, f"models[{i}]") for i, m in enumerate(top.models))
    target = _model(top.target, "target") if top.target else None
    names = [m.name for m in models] + ([target.name] if target else [])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FusekitError(f"recipe: model names must be unique (the target's too); repeated: {', '.join(dup)}")
    pairs = parse_pairs(top.pairs)
    if pairs.method == "wrpo" and target is None:
        raise FusekitError("recipe: pairs.method 'wrpo' needs a 'target' model in the recipe "
                           "(the model that will be trained)")
    return Recipe(name=top.name, out=top.out or f"runs/{top.name}",
                  domains={k: _domain(k, v) for k, v in top.domains.items()}, models=models, target=target,
                  scoring=parse_scoring(top.scoring), pairs=pairs, raw=raw)


def load_raw(path: str | Path | None = None) -> dict[str, Any]:
    """A recipe file's mapping, or the embedded default's when ``path`` is None."""
    if path is None:
        return load_yaml(Path(str(resources.files("fusedata.recipes").joinpath(DEFAULT_RECIPE))))
    return load_yaml(path)


def load(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """Load a recipe file (the embedded default when ``path`` is None), apply ``key=value``
    overrides to it (``models.0.sampling.n=4``), and check the result like the file."""
    origin = str(path) if path is not None else "default recipe"
    return parse(apply_overrides(load_raw(path), overrides), origin=origin)


def override(recipe: Recipe, *, domains: list[str] | None = None, out: str | None = None, limit: int | None = None,
             models: list[str] | None = None, n: int | None = None, max_tokens: int | None = None) -> Recipe:
    """Apply the CLI's shortcut flags. ``--domains`` keeps the named domains (each must be in the recipe)."""
    for flag, value in (("--limit", limit), ("--n", n), ("--max-tokens", max_tokens)):
        if value is not None and value < 1:
            raise FusekitError(f"{flag} must be >= 1, got {value}")
    doms = dict(recipe.domains)
    if domains:
        for d in domains:
            _domain_name(d, "--domains")
            if d not in doms:
                raise FusekitError(f"domain '{d}' has no prompt sources in this recipe; it has: {', '.join(doms)}")
        doms = {d: doms[d] for d in domains}
    if limit is not None:
        doms = {k: dataclasses.replace(v, limit=limit) for k, v in doms.items()}
    ms = recipe.models
    if models:
        known = [m.name for m in ms]
        for m in models:
            if m not in known:
                raise FusekitError(f"unknown model '{m}'{did_you_mean(m, known)}; the recipe has: {', '.join(known)}")
        ms = tuple(m for m in ms if m.name in models)
    if n is not None or max_tokens is not None:
        changes = {k: v for k, v in (("n", n), ("max_tokens", max_tokens)) if v is not None}
        ms = tuple(dataclasses.replace(m, sampling=dataclasses.replace(m.sampling, **changes),
                                       n_per_domain={} if n is not None else m.n_per_domain) for m in ms)
    return dataclasses.replace(recipe, domains=doms, models=ms, out=out or recipe.out)
