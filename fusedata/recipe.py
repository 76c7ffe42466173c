"""YAML recipe → typed, validated config. CLI flags override; every mistake is one clear message.

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
    scoring: {...}                 # read by the scoring stage
    pairs: {...}                   # read by the pair-construction stage
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .engines import ENGINES, EngineConfig
from .errors import FusekitError
from .records import DOMAINS, SamplingParams

DEFAULT_RECIPE = "default.yaml"


@dataclass(frozen=True)
class SourceSpec:
    name: str
    limit: int | None = None
    data_files: str | list[str] | None = None
    split: str | None = None


@dataclass(frozen=True)
class DomainSpec:
    sources: tuple[SourceSpec, ...]
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
class Recipe:
    name: str
    out: str
    domains: dict[str, DomainSpec]
    models: tuple[ModelSpec, ...]
    target: ModelSpec | None = None
    scoring: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def _where(ctx: str) -> str:
    return f"recipe: {ctx}" if ctx else "recipe"


def _check_keys(d: Any, allowed: set[str], ctx: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise FusekitError(f"{_where(ctx)}: expected a mapping, got {type(d).__name__}")
    for k in d:
        if k not in allowed:
            hint = difflib.get_close_matches(str(k), allowed, n=1)
            tip = f" (did you mean '{hint[0]}'?)" if hint else f"; allowed: {', '.join(sorted(allowed))}"
            raise FusekitError(f"{_where(ctx)}: unknown key '{k}'{tip}")
    return d


def _typed(value: Any, typ: type | tuple[type, ...], ctx: str) -> Any:
    # bool is an int in Python; a recipe saying `max_tokens: true` is a typo, not 1.
    if isinstance(value, bool) and typ is not bool:
        ok = False
    else:
        ok = isinstance(value, typ)
    if not ok:
        names = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
        raise FusekitError(f"{_where(ctx)}: expected {names}, got {value!r}")
    return value


def _source(d: Any, ctx: str) -> SourceSpec:
    if isinstance(d, str):
        return SourceSpec(d)
    _check_keys(d, {"name", "limit", "data_files", "split"}, ctx)
    if "name" not in d:
        raise FusekitError(f"{_where(ctx)}: a source needs a 'name'")
    if d.get("limit") is not None:
        _typed(d["limit"], int, f"{ctx}.limit")
    return SourceSpec(_typed(d["name"], str, f"{ctx}.name"), d.get("limit"), d.get("data_files"), d.get("split"))


def _domain(name: str, d: Any) -> DomainSpec:
    ctx = f"domains.{name}"
    if name not in DOMAINS:
        raise FusekitError(f"{_where(ctx)}: unknown domain '{name}'; known: {', '.join(DOMAINS)}")
    if isinstance(d, (list, str)):
        d = {"sources": [d] if isinstance(d, str) else d}
    _check_keys(d, {"sources", "limit"}, ctx)
    srcs = d.get("sources")
    if not isinstance(srcs, list) or not srcs:
        raise FusekitError(f"{_where(ctx)}.sources: expected a non-empty list of prompt sources")
    if d.get("limit") is not None:
        _typed(d["limit"], int, f"{ctx}.limit")
    return DomainSpec(tuple(_source(s, f"{ctx}.sources[{i}]") for i, s in enumerate(srcs)), d.get("limit"))


_SAMPLING_TYPES = {"temperature": (int, float), "top_p": (int, float), "repetition_penalty": (int, float),
                   "max_tokens": int, "n": int, "seed": int}
_ENGINE_KEYS = {f.name for f in fields(EngineConfig)} - {"name", "model", "engine", "extra", "stop"}


def _model(d: Any, ctx: str) -> ModelSpec:
    allowed = {"name", "model", "engine", "sampling", "n_per_domain", "domains", "stop", "extra"} | _ENGINE_KEYS
    _check_keys(d, allowed, ctx)
    if "model" not in d:
        raise FusekitError(f"{_where(ctx)}: needs 'model' (embedded:NAME, a folder, a .gguf file or a Hub id)")
    model = _typed(d["model"], str, f"{ctx}.model")
    engine = d.get("engine", "transformers")
    if engine not in ENGINES:
        raise FusekitError(f"{_where(ctx)}.engine: unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    if engine == "openai" and not d.get("base_url"):
        raise FusekitError(f"{_where(ctx)}: engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
    sampling = _check_keys(d.get("sampling", {}), set(_SAMPLING_TYPES), f"{ctx}.sampling")
    for k, v in sampling.items():
        _typed(v, _SAMPLING_TYPES[k], f"{ctx}.sampling.{k}")
    sp = SamplingParams(**sampling)
    if sp.n < 1 or sp.max_tokens < 1 or not 0 < sp.top_p <= 1 or sp.temperature < 0:
        raise FusekitError(f"{_where(ctx)}.sampling: need n ≥ 1, max_tokens ≥ 1, 0 < top_p ≤ 1, temperature ≥ 0; got {sampling}")
    eng_kw = {k: d[k] for k in _ENGINE_KEYS if k in d}
    for k in ("batch_size", "concurrency", "max_retries"):
        if k in eng_kw:
            _typed(eng_kw[k], int, f"{ctx}.{k}")
    stop = d.get("stop", [])
    if isinstance(stop, str):
        stop = [stop]
    npd = _check_keys(d.get("n_per_domain", {}), set(DOMAINS), f"{ctx}.n_per_domain")
    doms = d.get("domains")
    if doms is not None:
        for x in doms:
            if x not in DOMAINS:
                raise FusekitError(f"{_where(ctx)}.domains: unknown domain '{x}'; known: {', '.join(DOMAINS)}")
    name = _typed(d.get("name") or model.split("/")[-1].replace("embedded:", ""), str, f"{ctx}.name")
    cfg = EngineConfig(name=name, model=model, engine=engine, stop=tuple(stop), extra=d.get("extra", {}), **eng_kw)
    return ModelSpec(cfg, sp, {k: _typed(v, int, f"{ctx}.n_per_domain.{k}") for k, v in npd.items()},
                     tuple(doms) if doms is not None else None)


def parse(raw: Any, *, origin: str = "recipe") -> Recipe:
    if not isinstance(raw, dict):
        raise FusekitError(f"{origin}: a recipe is a YAML mapping, got {type(raw).__name__}")
    _check_keys(raw, {"name", "out", "domains", "models", "target", "scoring", "pairs"}, "")
    doms = raw.get("domains")
    if not isinstance(doms, dict) or not doms:
        raise FusekitError("recipe: 'domains' must map at least one domain to its prompt sources")
    models_raw = raw.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise FusekitError("recipe: 'models' must list at least one source model")
    models = tuple(_model(m, f"models[{i}]") for i, m in enumerate(models_raw))
    names = [m.name for m in models]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise FusekitError(f"recipe: model names must be unique; repeated: {', '.join(sorted(dup))}")
    return Recipe(
        name=str(raw.get("name", "fusekit-run")),
        out=str(raw.get("out", f"runs/{raw.get('name', 'fusekit-run')}")),
        domains={k: _domain(k, v) for k, v in doms.items()},
        models=models,
        target=_model(raw["target"], "target") if raw.get("target") else None,
        scoring=raw.get("scoring") or {},
        pairs=raw.get("pairs") or {},
        raw=raw,
    )


def load(path: str | Path | None = None) -> Recipe:
    """Load a recipe file, or the embedded default when ``path`` is None."""
    if path is None:
        text, origin = resources.files("fusedata.recipes").joinpath(DEFAULT_RECIPE).read_text("utf-8"), "default recipe"
    else:
        p = Path(path)
        if not p.is_file():
            raise FusekitError(f"recipe file not found: {path}")
        text, origin = p.read_text("utf-8"), str(p)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FusekitError(f"{origin}: not valid YAML: {e}") from None
    return parse(raw, origin=origin)


def override(recipe: Recipe, *, domains: list[str] | None = None, out: str | None = None, limit: int | None = None,
             models: list[str] | None = None, n: int | None = None, max_tokens: int | None = None) -> Recipe:
    """Apply CLI flags. ``--domains`` keeps the named domains (each must be in the recipe)."""
    import dataclasses

    doms = dict(recipe.domains)
    if domains:
        for d in domains:
            if d not in DOMAINS:
                raise FusekitError(f"unknown domain '{d}'; known: {', '.join(DOMAINS)}")
            if d not in doms:
                raise FusekitError(f"domain '{d}' has no prompt sources in this recipe; it has: {', '.join(doms)}")
        doms = {d: doms[d] for d in domains}
    if limit is not None:
        doms = {k: dataclasses.replace(v, limit=limit) for k, v in doms.items()}
    ms = recipe.models
    if models:
        known = {m.name for m in ms}
        for m in models:
            if m not in known:
                raise FusekitError(f"unknown model '{m}'; the recipe has: {', '.join(sorted(known))}")
        ms = tuple(m for m in ms if m.name in models)
    if n is not None or max_tokens is not None:
        def upd(m: ModelSpec) -> ModelSpec:
            sp = dataclasses.replace(m.sampling, **{k: v for k, v in (("n", n), ("max_tokens", max_tokens)) if v is not None})
            return dataclasses.replace(m, sampling=sp, n_per_domain={} if n is not None else m.n_per_domain)
        ms = tuple(upd(m) for m in ms)
    return dataclasses.replace(recipe, domains=doms, models=ms, out=out or recipe.out)
