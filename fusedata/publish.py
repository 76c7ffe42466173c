"""Hugging Face dataset folders: parquet shards per config and split, plus the card.

:func:`write_dataset` builds the whole repo tree locally —
``data/<config>/<split>-00000-of-00001.parquet`` and a ``README.md`` whose YAML
``configs:`` make ``datasets.load_dataset(folder, "<config>")`` work offline — in a
temporary sibling folder that is renamed into place, so a crash never leaves half a
dataset. Pushing is then one ``upload_folder``; :func:`upload_tree` lists exactly the
files that push would send (``--dry-run``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import FusekitError
from .pairs import unit_hash
from .records import canonical_json, prompt_id_for

SPLITS: tuple[str, ...] = ("train", "test")
SCORE_COLUMNS: tuple[str, ...] = ("score", "rm_score", "score_chosen", "score_rejected", "margin", "weight")
_TEMP_SUFFIXES = (".tmp", ".part", ".lock", "~", ".swp")


def shard_name(split: str) -> str:
    return f"{split}-00000-of-00001.parquet"


def row_prompt_id(row: dict[str, Any]) -> str:
    """The row's ``prompt_id``, or one computed from its prompt messages."""
    pid = row.get("prompt_id")
    if pid:
        return str(pid)
    prompt = row.get("prompt")
    if isinstance(prompt, dict):
        prompt = [prompt]
    if prompt is None and isinstance(row.get("messages"), list):
        prompt = [m for m in row["messages"] if m.get("role") != "assistant"] or row["messages"][:1]
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        return prompt_id_for([{"role": m.get("role", ""), "content": m.get("content") or ""} for m in prompt])
    return canonical_json(prompt if prompt is not None else row)


def split_train_test(rows: list[dict[str, Any]], test_fraction: float,
                     seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test): a row goes to test when ``unit_hash(seed, prompt_id) < test_fraction``.

    Deterministic and independent of row order; every row of one prompt lands in the same
    split, in every config, so the test split never shares a prompt with train.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise FusekitError(f"test_fraction must be in [0, 1), not {test_fraction}")
    train, test = [], []
    for r in rows:
        (test if unit_hash("split", seed, row_prompt_id(r)) < test_fraction else train).append(r)
    return train, test


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Rows → Arrow table over the union of their keys (first-seen order); missing keys are null."""
    keys: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    if schema is not None:
        keys = list(schema.names) + [k for k in keys if k not in schema.names]
    cols = {k: [r.get(k) for r in rows] for k in keys}
    if schema is not None:
        return pa.table({k: pa.array(cols[k], type=schema.field(k).type) for k in schema.names})
    try:
        return pa.table({k: pa.array(v) for k, v in cols.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise FusekitError(f"rows do not form a table: {e}") from e


def summarize(configs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Card facts from rows: ``splits`` (rows per split), ``domain_counts``, ``score_summary``, ``samples``."""
    splits: dict[str, dict[str, int]] = {}
    domains: dict[str, dict[str, int]] = {}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    samples: dict[str, dict[str, Any]] = {}
    for c, parts in configs.items():
        splits[c] = {s: len(rows) for s, rows in parts.items() if rows}
        allrows = [r for rows in parts.values() for r in rows]
        per: dict[str, int] = {}
        for r in allrows:
            d = str(r.get("domain") or "unknown")
            per[d] = per.get(d, 0) + 1
        domains[c] = dict(sorted(per.items()))
        for col in SCORE_COLUMNS:
            vals = [float(r[col]) for r in allrows if isinstance(r.get(col), (int, float))
                    and not isinstance(r.get(col), bool)]
            if vals:
                scores.setdefault(c, {})[col] = {"n": len(vals), "mean": statistics.fmean(vals), "min": min(vals),
                                                 "p50": statistics.median(vals), "max": max(vals)}
        order = [s for s in SPLITS if s in parts] + [s for s in parts if s not in SPLITS]
        first = next((parts[s][0] for s in order if parts[s]), None)
        if first is not None:
            samples[c] = first
    return {"splits": splits, "domain_counts": domains, "score_summary": scores, "samples": samples}


def _is_dataset_folder(folder: Path) -> bool:
    return not any(folder.iterdir()) or (folder / "README.md").exists() or (folder / "data").is_dir()


def write_dataset(folder: str | Path, configs: dict[str, dict[str, list[dict[str, Any]]]], *,
                  card_info: dict[str, Any]) -> Path:
    """Write a Hub dataset folder for ``configs`` ({config: {split: rows}}) with its card.

    Empty splits are skipped. The tree is built in a hidden temporary sibling and renamed
    over ``folder``; an existing ``folder`` is replaced only if it looks like a dataset
    folder (empty, or holding README.md / data/). Returns ``folder``.
    """
    from cards.render import render_dataset_card

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or not _is_dataset_folder(folder)):
        raise FusekitError(f"{folder} exists and is not a dataset folder; refusing to replace it")
    if not any(rows for parts in configs.values() for rows in parts.values()):
        raise FusekitError("no rows to publish")
    for c in configs:
        if not c or "/" in c or c.startswith("."):
            raise FusekitError(f"bad config name {c!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for c, parts in configs.items():
            nonempty = {s: rows for s, rows in parts.items() if rows}
            if not nonempty:
                continue
            # One schema for all splits of a config, so datasets casts every split alike.
            schema = rows_to_table([r for rows in nonempty.values() for r in rows]).schema
            (tmp / "data" / c).mkdir(parents=True)
            for s, rows in nonempty.items():
                pq.write_table(rows_to_table(rows, schema), tmp / "data" / c / shard_name(s))
        info = {**summarize(configs), **card_info}
        render_dataset_card(info).save(tmp / "README.md")
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _hidden_or_temp(part: str) -> bool:
    return part.startswith(".") or part == "__pycache__" or part.endswith(_TEMP_SUFFIXES) or ".tmp" in part


def upload_tree(folder: str | Path) -> list[str]:
    """Relative POSIX paths of the files a push of ``folder`` uploads, sorted.

    Everything except hidden files and folders (``.cache``, ``.git``...) and temporary
    files (``*.tmp``, ``*.part``, ``*.lock``, ``*~``, ``*.swp``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FusekitError(f"{folder} is not a folder")
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _hidden_or_temp(d)]
        for f in files:
            if not _hidden_or_temp(f):
                out.append((Path(root) / f).relative_to(folder).as_posix())
    return sorted(out)
