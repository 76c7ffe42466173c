"""An ``evals run`` recipe: YAML → typed dataclasses, checked whole before any model loads.

A recipe (``recipes/demo/evals.yaml`` is one)::

    bench: mt-bench                  # mt-bench | arena-hard-v0.1 | arena-hard-v2.0 | alpaca-eval
    models:                          # evaluated side by side; "NAME=REF" or "REF" is short for {name, model}
      - base=embedded:smollm2-135m
      - {name: wrpo, model: runs/demo/model, max_tokens: 128}
      - {model: my-8b, base_url: http://127.0.0.1:8000/v1}   # a served model: engine openai
    judge: {model: embedded:smollm2-135m, prefill: "Rating: [[", max_tokens: 16}
    out: runs/evals
    limit: 4                         # and categories, source, data_dir, reference, mode, baseline_model,
                                     # prompt, prices, lc_inputs, style_control

``evals run RECIPE.yaml key=value ...`` applies dotted overrides (``models.0.max_tokens=64``,
``judge.model=gpt-4.1``) to the file before it is checked, exactly like the other CLIs; the
``evals run`` flags are shortcuts that set the same keys (a per-model flag sets it on every model).
:func:`load` refuses an unknown key (with a did-you-mean), a wrong type, an unknown bench, category,
source, mode, engine or judge prompt, and impossible numbers, all before a file is downloaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fusedata.config import apply_overrides, build, choice, load_yaml
from fusedata.endpoint import ENDPOINT_KEYS, endpoint_settings
from fusedata.engines import ENGINES, EngineConfig
from fusedata.errors import FusekitError
from fusedata.judge import JudgeSettings

from .answers import EvalModel
from .benches import check_selection
from .comparable import UPSTREAM_JUDGE, has_api_env, route_judge
from .judges.prompts import check_choice, resolve
from .pricing import load_prices
from .records import BENCH_ALIASES, MODES
from .score import PARSERS, check_lc_inputs

DEFAULT_MODEL = "embedded:smollm2-135m"


@dataclass
class ModelConfig:
    """One evaluated model. ``engine`` defaults to ``openai`` when ``base_url`` is set, else
    ``transformers``; the endpoint keys left unset keep ``EndpointSettings``' defaults."""

    model: str
    name: str | None = None  # the label in every table; by default the reference's last part
    engine: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    rpm: float | None = None  # requests per minute (rate-limited APIs)
    batch_size: int = 8
    system_prompt: str | None = None
    temperature: float | None = None  # overrides the bench's decoding for every question
    max_tokens: int | None = None


@dataclass
class JudgeConfig:
    """The judge: a model reference loaded in-process, or the served model's name with ``base_url``.

    ``model`` unset is the bench's upstream judge when ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is in the
    environment, else the embedded smoke-test judge; :func:`load` routes it (``evals.comparable.route_judge``).
    """

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    rpm: float | None = None  # requests per minute (rate-limited APIs)
    batch_size: int = 4
    max_tokens: int | None = None  # caps every request's max_tokens (cheap smoke runs); recorded
    prefill: str = ""  # starts every reply (in-process judges only); recorded
    routed: str = field(default="", init=False)  # how load() chose the endpoint, for the manifest

    @property
    def kind(self) -> str:
        return "openai" if self.base_url else "transformers"

    def settings(self) -> JudgeSettings:
        assert self.model is not None, "load() resolves the judge"
        endpoint = None
        if self.base_url:
            endpoint = endpoint_settings(self.base_url, self.model, "judge", **_endpoint_keys(self))
        return JudgeSettings(self.model, endpoint, self.batch_size, self.max_tokens, self.prefill)

    def record(self) -> dict[str, Any]:
        """The judge as a run stores it (``evals score`` reads ``base_url`` to price it)."""
        return {**asdict(self), "kind": self.kind}


@dataclass
class EvalConfig:
    """One ``evals run``: a bench, the models to evaluate side by side, the judge, and where it goes."""

    bench: str | None = None  # a bench or an alias (arena-hard = arena-hard-v2.0); load() stores the bench
    models: list[ModelConfig] = field(default_factory=list)  # load() puts DEFAULT_MODEL when none is named
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    out: str = "runs/evals"
    limit: int | None = None
    categories: list[str] | None = None
    source: str = "auto"
    data_dir: str | None = None
    reference: str = "gpt-4"  # MT-Bench's reference answers: gpt-4 | gpt-4-0125-preview (corrected)
    mode: str = "single"  # MT-Bench grading: single (1–10) or pairwise against baseline_model
    baseline_model: str | None = None
    prompt: str = "upstream"  # upstream's judge prompts; fusekit-1: the paraphrases; or one shipped prompt's name
    parser: str = "upstream"  # verdict parsing: upstream's exact rules, or lenient (named in the report)
    prices: str | None = None  # YAML price table {model: {input, output}} in $/1M tokens
    lc_inputs: str | None = None  # AlpacaEval LC inputs: "hub" or a folder
    style_control: bool = False  # Arena-Hard: also report style-controlled scores
    requested_bench: str | None = field(default=None, init=False)  # the alias the user typed, if any

    def eval_models(self) -> list[EvalModel]:
        return [_eval_model(m) for m in self.models]


def model_entry(text: str) -> dict[str, str]:
    """``REF`` or ``NAME=REF`` as a model block; a path may hold "=" when it starts with / or ."""
    name, sep, ref = text.partition("=")
    if not sep or text.startswith(("/", ".")):
        name, ref = "", text
    ref = ref.strip()
    if not ref:
        raise FusekitError(f"model {text!r}: empty model reference")
    return {"name": name.strip(), "model": ref} if name.strip() else {"model": ref}


def _default_name(ref: str) -> str:
    return ref.split(":", 1)[1] if ref.startswith("embedded:") else Path(ref.rstrip("/")).name or ref


def _endpoint_keys(block: ModelConfig | JudgeConfig) -> dict[str, Any]:
    return {k: getattr(block, k) for k in ENDPOINT_KEYS}


def _engine(engine: str | None, base_url: str | None) -> str:
    return engine or ("openai" if base_url else "transformers")


def _eval_model(m: ModelConfig) -> EvalModel:
    endpoint = None
    if m.base_url:
        endpoint = endpoint_settings(m.base_url, m.model, f"model {m.name or m.model}", **_endpoint_keys(m))
    engine = EngineConfig(name=m.name or _default_name(m.model), model=m.model, engine=_engine(m.engine, m.base_url),
                          endpoint=endpoint, batch_size=m.batch_size, system_prompt=m.system_prompt)
    return EvalModel(engine, m.temperature, m.max_tokens)


def _as_overrides(values: dict[str, Any], prefix: str = "") -> list[str]:
    # JSON is YAML, so a flag's value comes out of the override parser exactly as given (a system
    # prompt "yes" stays a string) and the flag sets its key just as key=value would.
    return [f"{prefix}{key}={json.dumps(value, ensure_ascii=False)}" for key, value in values.items()]


def _model_overrides(models: list[Any], flags: dict[str, Any]) -> list[str]:
    """``flags`` as overrides of every model block; the endpoint ones only where the model is served,
    so that one ``--concurrency`` sets the judge's and the served models' alike."""
    out = []
    for i, m in enumerate(models):
        if not isinstance(m, dict):
            continue  # build() names the bad entry
        merged = {**m, **flags}
        served = _engine(merged.get("engine"), merged.get("base_url")) == "openai"
        out += _as_overrides({k: v for k, v in flags.items() if served or k not in ENDPOINT_KEYS}, f"models.{i}.")
    return out


def load(recipe: str | Path | None, overrides: Sequence[str] = (), flags: dict[str, Any] | None = None,
         model_flags: dict[str, Any] | None = None) -> EvalConfig:
    """The checked config from a recipe file (or none), dotted overrides, then the CLI's flags:
    ``flags`` by dotted key, ``model_flags`` on every model."""
    raw = load_yaml(recipe) if recipe is not None else {}
    raw = apply_overrides(raw, [*overrides, *_as_overrides(flags or {})])
    models = raw.get("models")
    if models is None:
        models = [DEFAULT_MODEL]
    if isinstance(models, list):
        raw["models"] = [model_entry(m) if isinstance(m, str) else m for m in models]
        raw = apply_overrides(raw, _model_overrides(raw["models"], model_flags or {}))
    cfg = build(EvalConfig, raw, "recipe")
    if cfg.bench in BENCH_ALIASES:
        cfg.requested_bench, cfg.bench = cfg.bench, BENCH_ALIASES[cfg.bench]
    check(cfg)
    _route(cfg)
    return cfg


def _route(cfg: EvalConfig) -> None:
    j = cfg.judge
    if j.model is None:
        j.model = UPSTREAM_JUDGE if has_api_env() else DEFAULT_MODEL
    assert cfg.bench is not None
    j.model, j.base_url, j.routed = route_judge(cfg.bench, j.model, j.base_url)
    if j.prefill and j.base_url:
        raise FusekitError("judge.prefill (--judge-prefill) needs an in-process judge: OpenAI-compatible endpoints "
                           "do not continue a prefilled reply")


def _check_model(m: ModelConfig, where: str) -> None:
    engine = _engine(m.engine, m.base_url)
    choice(engine, ENGINES, f"{where}.engine")
    if engine == "openai" and not m.base_url:
        raise FusekitError(f"{where}: engine 'openai' needs base_url (--base-url), e.g. http://127.0.0.1:8000/v1")
    stray = [k for k in ("base_url", *ENDPOINT_KEYS) if engine != "openai" and getattr(m, k) is not None]
    if stray:
        raise FusekitError(f"{where}: {', '.join(stray)}: for engine 'openai' only, this model's is '{engine}'")
    _positive(m.batch_size, f"{where}.batch_size")
    _positive(m.concurrency, f"{where}.concurrency")
    _positive(m.max_tokens, f"{where}.max_tokens")
    _seconds(m.timeout, f"{where}.timeout")
    _at_least_zero(m.max_retries, f"{where}.max_retries")
    _at_least_zero(m.temperature, f"{where}.temperature")


def _check_judge(j: JudgeConfig) -> None:
    if j.prefill and j.base_url:
        raise FusekitError("judge.prefill (--judge-prefill) needs an in-process judge: OpenAI-compatible endpoints "
                           "do not continue a prefilled reply")
    _positive(j.concurrency, "judge.concurrency")
    _positive(j.batch_size, "judge.batch_size")
    _positive(j.max_tokens, "judge.max_tokens")
    _seconds(j.timeout, "judge.timeout")
    _at_least_zero(j.max_retries, "judge.max_retries")


def check(cfg: EvalConfig) -> None:
    """Everything checkable before a model loads or a request leaves."""
    if cfg.bench is None:
        raise FusekitError("recipe: no bench; set bench (--bench) to one of mt-bench, arena-hard-v0.1, "
                           "arena-hard-v2.0, alpaca-eval")
    bench = check_selection(cfg.bench, limit=cfg.limit, categories=cfg.categories, source=cfg.source,
                            reference=cfg.reference)
    choice(cfg.mode, MODES, "mode")
    if cfg.mode == "pairwise":
        if not bench.pairwise_mode:
            raise FusekitError(f"mode pairwise (--mode) is MT-Bench's; {bench.name} is always judged against "
                               "its own baseline")
        if not cfg.baseline_model:
            raise FusekitError("mode pairwise needs baseline_model (--baseline-model NAME), "
                               "one of the evaluated models")
    if not cfg.models:
        raise FusekitError("recipe: models is empty; name at least one model to evaluate")
    for i, m in enumerate(cfg.models):
        _check_model(m, f"models[{i}]")
    names = [m.name for m in cfg.eval_models()]
    if len(set(names)) != len(names):
        raise FusekitError(f"model names must be unique, got {', '.join(names)}; name them (--model NAME=REF)")
    _check_judge(cfg.judge)
    check_choice(cfg.prompt)  # unknown names fail here, with a did-you-mean
    for role in bench.prompt_roles:  # a missing or altered upstream prompt stops the run before any answer
        resolve(role, cfg.prompt, cfg.data_dir)
    choice(cfg.parser, PARSERS, "parser")
    load_prices(cfg.prices)
    check_lc_inputs(cfg.lc_inputs)


def _positive(value: int | None, where: str) -> None:
    if value is not None and value < 1:
        raise FusekitError(f"{where} must be at least 1, got {value}")


def _at_least_zero(value: float | None, where: str) -> None:
    if value is not None and value < 0:
        raise FusekitError(f"{where} must be >= 0, got {value}")


def _seconds(value: float | None, where: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise FusekitError(f"{where} must be a positive number of seconds, got {value}")
