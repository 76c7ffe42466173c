"""Check every model a recipe names before any model loads or any prompt is sent.

``fusedata build`` runs :func:`preflight` right after the recipe check; ``fusedata build --check`` runs
it alone. Each source, the WRPO target and the reward model is checked for what would otherwise fail
hours into a run: the reference resolves, its architecture is one transformers has, each endpoint
lists the model, vLLM imports, vLLM's GPUs are there, the disk holds the store. Every problem found
goes into one table.

Offline (``HF_HUB_OFFLINE``) a Hub id cannot be checked, and that is reported as a note, not a
problem: an offline machine with a filled Hub cache can still load it. Nothing here loads weights;
embedded models are checked by name only (fusekit ships them, so their architecture is known).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from . import models
from .cluster import Resources
from .endpoint import EndpointSettings
from .errors import FusekitError
from .recipe import ModelSpec, Recipe

#: one try, short: a preflight that waits out a dead server is no preflight
ENDPOINT_TIMEOUT_S = 5.0

#: (Hub id) -> its config.json as a dict; raises on any fetch failure. Tests pass a fake.
HubFetch = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Problem:
    model: str
    role: str
    check: str
    problem: str
    note: bool = False  # not checked (offline): shown, but not a failure


@dataclass(frozen=True)
class Target:
    """One model to check, whatever block of the recipe it came from."""

    name: str
    role: str
    ref: str
    engine: str
    endpoint: EndpointSettings | None = None
    trust_remote_code: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def generating(recipe: Recipe) -> list[tuple[ModelSpec, str]]:
    """The models that generate, with their role: the sources, and the target where WRPO samples it."""
    sampled = recipe.target is not None and recipe.pairs.method == "wrpo"
    return [(m, "source") for m in recipe.models] + ([(recipe.target, "target")] if sampled else [])


def targets(recipe: Recipe) -> list[Target]:
    """Sources, the WRPO target and the reward model (seqcls, in-process judge or judge endpoint)."""
    out = [Target(m.name, role, m.engine.model, m.engine.engine, m.engine.endpoint, extra=m.engine.extra)
           for m, role in generating(recipe)]
    reward = recipe.scoring.reward_config
    if reward.kind == "seqcls":
        out.append(Target(reward.name or reward.model, "reward", reward.model, "transformers",
                          trust_remote_code=reward.trust_remote_code))
    elif reward.kind == "judge":
        endpoint = reward.endpoint("scoring.reward")
        out.append(Target(reward.name or reward.model, "reward", reward.model,
                          "openai" if endpoint else "transformers", endpoint))
    return out


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def fetch_hub_config(repo_id: str) -> dict[str, Any]:
    """config.json of a Hub model, and proof its tokenizer is there (small files only, cached)."""
    from huggingface_hub import hf_hub_download

    config = json.loads(Path(hf_hub_download(repo_id, "config.json")).read_text())
    hf_hub_download(repo_id, "tokenizer_config.json")
    return config


def _config(t: Target, fetch: HubFetch) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The model's config.json (None where there is none to read), or why the reference does not resolve."""
    def problem(text: str, note: bool = False) -> list[Problem]:
        return [Problem(t.name, t.role, "reference", text, note)]

    ref = t.ref
    if ref.startswith("embedded:"):
        name = ref.split(":", 1)[1]
        return None, [] if name in models.EMBEDDED else problem(
            f"unknown embedded model '{ref}'; known: {', '.join('embedded:' + k for k in models.EMBEDDED)}")
    if ref.endswith(".gguf"):
        return None, [] if Path(ref).expanduser().is_file() else problem(f"GGUF file not found: {ref}")
    try:
        resolved = models.resolve(ref)  # folders and Hub ids: no conversion, no load
    except FusekitError as e:
        return None, problem(str(e))
    if resolved.local:
        return json.loads((Path(resolved.path) / "config.json").read_text()), []
    if hub_offline():
        return None, problem("not checked: offline (HF_HUB_OFFLINE)", note=True)
    try:
        return fetch(ref), []
    except Exception as e:  # noqa: BLE001 - any fetch failure means the build would fail to load it
        return None, problem(f"cannot fetch config/tokenizer from the Hub: {type(e).__name__}: {e}")


def _architecture(t: Target, config: dict[str, Any]) -> list[Problem]:
    """transformers must have the class (ArmoRM fusekit loads itself); vLLM's list is not checked here."""
    from .rewards.armorm import is_armorm

    if t.engine != "transformers" or is_armorm(config):
        return []
    import transformers

    archs = config.get("architectures") or []
    missing = [a for a in archs if not hasattr(transformers, a)]
    if missing and not (t.trust_remote_code and config.get("auto_map")):
        return [Problem(t.name, t.role, "architecture",
                        f"transformers {transformers.__version__} has no {', '.join(missing)}")]
    return []


def _remote_code(t: Target, config: dict[str, Any]) -> list[Problem]:
    """With ``trust_remote_code`` every ``auto_map`` class must import, as ``from_pretrained`` will import it."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    refs = [r for v in (config.get("auto_map") or {}).values() for r in ([v] if isinstance(v, str) else v) if r]
    for ref in refs:
        try:
            get_class_from_dynamic_module(ref, t.ref)
        except (ImportError, OSError, AttributeError, ValueError) as e:
            return [Problem(t.name, t.role, "remote code", f"{ref}: {type(e).__name__}: {e}")]
    return []


def _endpoint(t: Target, s: EndpointSettings) -> list[Problem]:
    """``GET {base_url}/models`` once; the named model must be listed."""
    req = urllib.request.Request(s.base_url.rstrip("/") + "/models")
    key = os.environ.get(s.api_key_env)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=min(s.timeout, ENDPOINT_TIMEOUT_S)) as resp:
            listed = [m.get("id") for m in json.loads(resp.read()).get("data", [])]
    except (urllib.error.URLError, OSError, ValueError, AttributeError) as e:
        # The wording of fusedata.endpoint's own probe, so one failure reads the same wherever it is caught.
        return [Problem(t.name, t.role, "endpoint",
                        f"endpoint {s.base_url} is unreachable (GET /models: {getattr(e, 'reason', e)})")]
    if s.model not in listed:
        return [Problem(t.name, t.role, "endpoint",
                        f"{s.base_url} does not serve '{s.model}'; it lists: {', '.join(map(str, listed)) or 'none'}")]
    return []


def _vllm(t: Target, extra: dict[str, Any]) -> list[Problem]:
    from .engines.vllm import require_vllm, vllm_python

    try:
        require_vllm(vllm_python(extra))
    except FusekitError as e:
        return [Problem(t.name, t.role, "vllm", str(e))]
    return []


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _gpus(recipe: Recipe, cluster: bool) -> list[Problem]:
    """vLLM sources must fit the GPUs here: tensor × pipeline parallel size, × replicas unless Ray spreads
    them over a cluster. With no GPU at all vLLM can only be its CPU build, so there is nothing to count."""
    specs = [(m, role) for m, role in generating(recipe) if m.engine.engine == "vllm"]
    if not specs:
        return []  # no torch import: the embedded default stays fast
    have = gpu_count()
    problems = []
    for m, role in specs:
        kw = m.engine.extra.get("engine_kwargs") or {}
        try:
            per_replica = int(kw.get("tensor_parallel_size") or 1) * int(kw.get("pipeline_parallel_size") or 1)
        except (TypeError, ValueError):
            problems.append(Problem(m.name, role, "gpus", f"extra.engine_kwargs: parallel sizes must be whole "
                                    f"numbers, got {kw}"))
            continue
        need = per_replica * (1 if cluster else Resources.from_extra(m.engine.extra).replicas)
        if have and need > have:
            problems.append(Problem(m.name, role, "gpus",
                                    f"needs {need} GPUs (parallel size {per_replica}"
                                    f"{'' if cluster else ' × replicas'}), this machine has {have}"))
    return problems


def _disk(recipe: Recipe) -> list[Problem]:
    """The output folder's disk must hold the worst-case store ``fusedata plan`` estimates."""
    from .plan import _si, plan_recipe

    try:
        need = plan_recipe(recipe).totals()["store_bytes_worst"]
    except FusekitError as e:
        # A source the plan cannot size is no reason to stop a build that could run.
        return [Problem("(run store)", "output", "disk", f"not checked: cannot estimate the store size: {e}",
                        note=True)]
    folder = Path(recipe.out).expanduser().resolve()
    while not folder.exists():  # the run folder is made by the build; its disk is the nearest existing parent's
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        return [Problem("(run store)", "output", "disk", f"{recipe.out}: the store may take {_si(need)}B "
                        f"(fusedata plan, worst case), the disk has {_si(free)}B free")]
    return []


def check_target(t: Target, fetch: HubFetch) -> list[Problem]:
    """Every problem of one model."""
    if t.endpoint is not None:
        return _endpoint(t, t.endpoint)
    config, problems = _config(t, fetch)
    if config is not None:
        problems += _architecture(t, config)
        if t.trust_remote_code and config.get("auto_map"):
            problems += _remote_code(t, config)
    if t.engine == "vllm":
        problems += _vllm(t, t.extra)
    return problems


def preflight(recipe: Recipe, *, cluster: bool = False, fetch: HubFetch = fetch_hub_config) -> list[Problem]:
    """Every problem (and offline note) of every model the recipe names, in recipe order, then the
    GPU count and the disk. ``cluster``: generation runs on Ray, so replicas need not fit this machine."""
    problems = [p for t in targets(recipe) for p in check_target(t, fetch)]
    return problems + _gpus(recipe, cluster) + _disk(recipe)


def failures(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.note]


def problem_table(problems: list[Problem]) -> Table:
    t = Table(title=f"fusedata preflight — {len(failures(problems))} problem(s)")
    t.add_column("model", overflow="fold", max_width=32)
    for col in ("role", "check"):
        t.add_column(col, no_wrap=True)
    t.add_column("problem", overflow="fold")
    for p in problems:
        t.add_row(escape(p.model), p.role, p.check, escape(p.problem), style="yellow" if p.note else "red")
    return t
