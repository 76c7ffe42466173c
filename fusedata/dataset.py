"""Final stage of ``fusedata build`` (or ``fusedata pairs RUN_DIR``): scored run → dataset folder.

Reads the run store, builds the method's examples with the pure builders in
``fusedata.pairs``, and writes a Hugging Face dataset folder (parquet per config and
split, plus the card) under ``RUN_DIR/dataset``. For WRPO the target model first samples
the preference prompts through the same engines and is scored by the same scorers —
both resumable through the run store like everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from .cluster import Executor
from .errors import FusekitError
from .pairs import build_fusechat3, build_fuserl, build_wrpo, gather, split_wrpo, to_trl_rows, wrpo_quadruple_rows
from .recipe import Recipe
from .store import RunStore

METHODS = ("fusechat3", "wrpo", "fuserl")
_OPTIONS = {
    "fusechat3": {"sft_ratio", "gap", "pick"},
    "wrpo": {"require_verified", "export"},
    "fuserl": {"m", "tau"},
}


@dataclass(frozen=True)
class PairsConfig:
    method: str = "fusechat3"
    seed: int = 0
    test_fraction: float = 0.05
    keep_truncated: bool = False
    options: dict[str, Any] | None = None


def parse_pairs(raw: dict[str, Any] | None, method: str | None = None) -> PairsConfig:
    raw = dict(raw or {})
    m = method or raw.pop("method", "fusechat3")
    raw.pop("method", None)
    if m not in METHODS:
        raise FusekitError(f"unknown pair method '{m}'; choose one of {', '.join(METHODS)}")
    seed, test_fraction = raw.pop("seed", 0), raw.pop("test_fraction", 0.05)
    keep_truncated = bool(raw.pop("keep_truncated", False))
    # Options of the other methods may stay in a recipe that is built with --method X.
    bad = set(raw) - set().union(*_OPTIONS.values())
    raw = {k: v for k, v in raw.items() if k in _OPTIONS[m]}
    if bad:
        raise FusekitError(f"recipe: pairs: unknown option(s): {', '.join(sorted(bad))}; allowed: method, seed, "
                           f"test_fraction, keep_truncated, {', '.join(sorted(set().union(*_OPTIONS.values())))}")
    if isinstance(raw.get("gap"), list):
        raw["gap"] = tuple(raw["gap"])
    return PairsConfig(m, int(seed), float(test_fraction), keep_truncated, raw)


def build_configs(store: RunStore, recipe: Recipe, cfg: PairsConfig, console: Console,
                  executor: Executor | None = None) -> tuple[dict[str, list[dict]], dict]:
    """Rows per dataset config, and the build report (kept/dropped with reasons)."""
    target = recipe.target.name if recipe.target else None
    prompts = store.prompts()
    scores = store.scores()
    sources = [r for r in store.responses(ok_only=True) if r.model != target]
    kt = cfg.keep_truncated
    cands = gather(prompts, sources, scores, keep_truncated=kt)
    opts = dict(cfg.options or {})
    if cfg.method == "fusechat3":
        sft, dpo, rep = build_fusechat3(cands, seed=cfg.seed, **opts)
        return {"sft": to_trl_rows(sft, "sft"), "dpo": to_trl_rows(dpo, "preference")}, rep.to_dict()
    if cfg.method == "fuserl":
        sft, po, rep = build_fuserl(cands, **opts)
        return {"fuserl_sft": to_trl_rows(sft, "sft"), "fuserl_po": to_trl_rows(po, "preference")}, rep.to_dict()
    # WRPO: the target samples the preference prompts, scored by the same scorers.
    if recipe.target is None:
        raise FusekitError("method 'wrpo' needs a 'target' model in the recipe (the model that will be trained)")
    export = opts.pop("export", "quadruple")
    _, pref_ids = split_wrpo(cands, cfg.seed)
    by_id = {p.id: p for p in prompts}
    from .generate import generate_for
    from .score import parse_config, score_run

    generate_for([recipe.target], [by_id[i] for i in pref_ids], store, console, executor=executor)
    score_run(store, parse_config(recipe.scoring), console, executor)
    scores = store.scores()
    targets = [r for r in store.responses(ok_only=True) if r.model == target]
    sft, pairs, rep = build_wrpo(gather(prompts, sources, scores, keep_truncated=kt),
                                 gather(prompts, targets, scores, keep_truncated=kt), seed=cfg.seed, **opts)
    rows = wrpo_quadruple_rows(pairs) if export == "quadruple" else to_trl_rows(pairs, "wrpo")
    return {"sft": to_trl_rows(sft, "sft"), "wrpo": rows}, rep.to_dict()


# Licences of the embedded sources; other models' terms are unknown here and the card says `other`.
KNOWN_LICENSES = {"embedded:smollm2-135m": "apache-2.0", "embedded:gemma3-270m": "gemma"}


def write_run_dataset(store: RunStore, recipe: Recipe, cfg: PairsConfig, console: Console,
                      out: Path | None = None, executor: Executor | None = None) -> tuple[Path, dict[str, dict[str, int]]]:
    """Build the method's configs, split train/test, write the folder and its card."""
    from .publish import split_train_test, write_dataset

    try:
        configs, report = build_configs(store, recipe, cfg, console, executor)
    except ValueError as e:  # e.g. several reward scorers in one run and none chosen
        raise FusekitError(f"cannot build pairs: {e}") from None
    parts = {}
    for name, rows in configs.items():
        train, test = split_train_test(rows, cfg.test_fraction, cfg.seed)
        parts[name] = {"train": train, "test": test}
    counts = {c: {s: len(r) for s, r in p.items()} for c, p in parts.items()}
    if not any(n for c in counts.values() for n in c.values()):
        raise FusekitError(f"method {cfg.method} kept no examples: {report.get('dropped')}; "
                           "generate more samples (--n) or widen the filters")
    models = list(recipe.models) + ([recipe.target] if recipe.target and cfg.method == "wrpo" else [])
    info = {
        "pretty_name": f"{recipe.name} ({cfg.method})",
        "description": f"Built with fusekit from {len(recipe.models)} source models, method {cfg.method}.",
        "recipe": recipe.raw,
        "source_models": [{"name": m.name, "license": KNOWN_LICENSES.get(m.engine.model),
                           "sampling": {**m.sampling.__dict__, "n_per_domain": m.n_per_domain}} for m in models],
        "reward_model": (recipe.scoring or {}).get("reward"),
        "report": {"method": cfg.method, **report},
    }
    folder = write_dataset(out or store.folder / "dataset", parts, card_info=info)
    store.set_meta("dataset", {"method": cfg.method, "counts": counts, "folder": str(folder)})
    return folder, counts
