"""Pairs and write stages of ``fusedata build`` (or ``fusedata pairs RUN_DIR``): scored run → dataset folder.

:func:`candidates` reads the run store once and joins it into the candidates of the source models
(and, for WRPO, of the target); :func:`build_configs` turns candidates into the method's rows with
the pure builders in ``fusedata.pairs``; :func:`write_run_dataset` splits train/test and writes a
Hugging Face dataset folder (parquet per config and split, plus the card) inside the run folder.

The folder is named ``<recipe>-<method>-<8 hex digits of its rows>``. ``datasets`` caches a local
folder's prepared data under the folder's *name*, so two runs' folders that shared a name (every
one used to be called ``dataset``) made ``load_dataset(folder, config)`` return whichever run was
loaded first; a name that changes with the rows gives every distinct dataset its own cache entry.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FusekitError
from .pairs import (
    CandidateSet,
    build_fusechat3,
    build_fuserl,
    build_wrpo,
    gather,
    to_trl_rows,
    wrpo_quadruple_rows,
)
from .recipe import PairsConfig, Recipe
from .records import canonical_json
from .store import DB_NAME, RunStore

# Licences of the embedded sources; other models' terms are unknown here and the card says `other`.
KNOWN_LICENSES = {"embedded:smollm2-135m": "apache-2.0", "embedded:gemma3-270m": "gemma"}


@dataclass(frozen=True)
class Dataset:
    """A written dataset folder: where it is, which method built it, rows per config and split."""

    folder: Path
    method: str
    counts: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "counts": self.counts, "folder": str(self.folder)}


def candidates(store: RunStore, recipe: Recipe) -> tuple[CandidateSet, CandidateSet | None]:
    """The source models' candidates, and the target's for WRPO (None otherwise), from one read of the store."""
    target = recipe.target.name if recipe.target else None
    prompts, responses, scores = store.prompts(), store.responses(ok_only=True), store.scores()
    keep = recipe.pairs.keep_truncated
    try:
        sources = gather(prompts, [r for r in responses if r.model != target], scores, keep_truncated=keep)
        if recipe.pairs.method != "wrpo":
            return sources, None
        return sources, gather(prompts, [r for r in responses if r.model == target], scores, keep_truncated=keep)
    except ValueError as e:  # e.g. several reward scorers in one run and none chosen
        raise FusekitError(f"cannot build pairs: {e}") from None


def build_configs(cands: CandidateSet, target_cands: CandidateSet | None,
                  cfg: PairsConfig) -> tuple[dict[str, list[dict]], dict]:
    """Rows per dataset config, and the build report (kept/dropped with reasons). Pure: no store, no model."""
    opts = cfg.options()
    if cfg.method == "fusechat3":
        sft, dpo, rep = build_fusechat3(cands, seed=cfg.seed, **opts)
        return {"sft": to_trl_rows(sft, "sft"), "dpo": to_trl_rows(dpo, "preference")}, rep.to_dict()
    if cfg.method == "fuserl":
        sft, po, rep = build_fuserl(cands, **opts)
        return {"fuserl_sft": to_trl_rows(sft, "sft"), "fuserl_po": to_trl_rows(po, "preference")}, rep.to_dict()
    sft, pairs, rep = build_wrpo(cands, target_cands or {}, seed=cfg.seed, **opts)
    rows = wrpo_quadruple_rows(pairs) if cfg.export == "quadruple" else to_trl_rows(pairs, "wrpo")
    return {"sft": to_trl_rows(sft, "sft"), "wrpo": rows}, rep.to_dict()


def folder_name(recipe_name: str, method: str, parts: dict[str, dict[str, list[dict]]]) -> str:
    """``<recipe>-<method>-<hash>``: unique to the rows, so ``datasets``' cache never mixes two datasets."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", recipe_name.lower()).strip("-.") or "fusekit"
    digest = hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{method}-{digest}"


def _card_info(recipe: Recipe, cfg: PairsConfig, report: dict) -> dict[str, Any]:
    models = list(recipe.models) + ([recipe.target] if recipe.target and cfg.method == "wrpo" else [])
    return {
        "pretty_name": f"{recipe.name} ({cfg.method})",
        "description": f"Built with fusekit from {len(recipe.models)} source models, method {cfg.method}.",
        "recipe": recipe.raw,
        "source_models": [{"name": m.name, "license": KNOWN_LICENSES.get(m.engine.model),
                           "sampling": {**m.sampling.__dict__, "n_per_domain": m.n_per_domain}} for m in models],
        "reward_model": recipe.scoring.reward,
        "report": {"method": cfg.method, **report},
    }


def _drop_previous(store: RunStore, folder: Path) -> None:
    """Remove the run's previous dataset folder when this one replaces it under a new name."""
    previous = (store.get_meta("dataset") or {}).get("folder")
    old = Path(previous) if previous else None
    if old is None or not old.is_dir() or old.resolve() == folder.resolve():
        return
    # Only a folder this run wrote inside its own run folder: never one the user named with --out.
    if old.resolve().parent == store.folder.resolve() and (old / "README.md").is_file() and (old / "data").is_dir():
        shutil.rmtree(old)


def write_run_dataset(store: RunStore, recipe: Recipe, configs: dict[str, list[dict]], report: dict,
                      out: Path | None = None) -> Dataset:
    """Split each config train/test, write the folder and its card. A folder in the run (``out``
    None) is recorded in the store as the run's dataset and replaces the one recorded before."""
    from .publish import split_train_test, write_dataset

    cfg = recipe.pairs
    parts = {}
    for name, rows in configs.items():
        train, test = split_train_test(rows, cfg.test_fraction, cfg.seed)
        parts[name] = {"train": train, "test": test}
    counts = {c: {s: len(r) for s, r in p.items()} for c, p in parts.items()}
    if not any(n for c in counts.values() for n in c.values()):
        raise FusekitError(f"method {cfg.method} kept no examples: {report.get('dropped')}; "
                           "generate more samples (--n) or widen the filters")
    if out is not None:  # an export elsewhere: the run's own dataset folder stays what it was
        return Dataset(write_dataset(out, parts, card_info=_card_info(recipe, cfg, report)), cfg.method, counts)
    folder = write_dataset(store.folder / folder_name(recipe.name, cfg.method, parts), parts,
                           card_info=_card_info(recipe, cfg, report))
    _drop_previous(store, folder)
    dataset = Dataset(folder, cfg.method, counts)
    store.set_meta("dataset", dataset.to_dict())
    return dataset


def run_dataset_folder(run_dir: Path) -> Path | None:
    """The dataset folder a run recorded last (None when it has none, or it is gone)."""
    if not (run_dir / DB_NAME).is_file():
        return None
    with RunStore(run_dir) as store:
        recorded = (store.get_meta("dataset") or {}).get("folder")
    if not recorded:
        return None
    # Recorded as the build printed it, maybe relative to another working directory.
    for folder in (Path(recorded), run_dir / Path(recorded).name):
        if folder.is_dir():
            return folder
    return None
