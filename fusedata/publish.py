"""Hugging Face dataset folders: parquet shards per config and split, plus the card.

:func:`write_dataset` builds the whole repo tree locally —
``data/<config>/<split>-00000-of-00001.parquet`` and a ``README.md`` whose YAML
``configs:`` make ``datasets.load_dataset(folder, "<config>")`` work offline — in a
temporary sibling folder that is renamed into place, so a crash never leaves half a
dataset. Pushing is then one ``upload_folder``; :func:`upload_tree` lists exactly the
files that push would send (``--dry-run``).

Rows may come as lists or as :class:`RowSpool` (rows pickled to an unnamed temporary file): a run's
dataset goes through the spool, its parquet shards are written a row group at a time, and the card's
facts are gathered on the way, so the rows are never all in memory.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import statistics
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import FusekitError
from .pairs import median, unit_hash
from .records import canonical_json, prompt_id_for

SPLITS: tuple[str, ...] = ("train", "test")
SCORE_COLUMNS: tuple[str, ...] = ("score", "rm_score", "score_chosen", "score_rejected", "margin", "weight")
_TEMP_SUFFIXES = (".tmp", ".part", ".lock", "~", ".swp")
SPOOL_CHUNK = 256  # rows per pickled chunk of a RowSpool
ROW_GROUP = 1000  # rows per parquet row group written at once (the `datasets` writer batch size)


class RowSpool:
    """An append-only sequence of rows kept in an unnamed temporary file in ``folder``, in pickled
    chunks of :data:`SPOOL_CHUNK` rows; it can be read back in order any number of times. Pickle keeps
    every value as it was (floats bit for bit, key order), so a spooled row is the row."""

    def __init__(self, folder: str | Path):
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".rows-")
        self._buffer: list[dict[str, Any]] = []
        self._n = 0

    def append(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self._n += 1
        if len(self._buffer) >= SPOOL_CHUNK:
            self._flush()

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            self.append(r)

    def _flush(self) -> None:
        if self._buffer:
            self._file.seek(0, os.SEEK_END)
            pickle.dump(self._buffer, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._buffer = []

    def __len__(self) -> int:
        return self._n

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        """The rows, a chunk at a time (each read keeps its own position: two reads may interleave)."""
        self._flush()
        self._file.seek(0, os.SEEK_END)
        end, pos = self._file.tell(), 0
        while pos < end:
            self._file.seek(pos)
            chunk = pickle.load(self._file)
            pos = self._file.tell()
            yield chunk

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for chunk in self.chunks():
            yield from chunk

    def close(self) -> None:
        self._file.close()


Rows = Sequence[dict[str, Any]] | RowSpool


def row_chunks(rows: Rows, size: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in lists of ``size`` rows (default :data:`ROW_GROUP`), the last one shorter."""
    size = size or ROW_GROUP
    if not isinstance(rows, RowSpool):
        for i in range(0, len(rows), size):
            yield list(rows[i:i + size])
        return
    batch: list[dict[str, Any]] = []
    for chunk in rows.chunks():
        batch.extend(chunk)
        while len(batch) >= size:
            yield batch[:size]
            batch = batch[size:]
    if batch:
        yield batch


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


def _is_test_row(row: dict[str, Any], test_fraction: float, seed: int = 0) -> bool:
    return unit_hash("split", seed, row_prompt_id(row)) < test_fraction


def split_train_test(rows: Iterable[dict[str, Any]], test_fraction: float, seed: int = 0, *,
                     into: Callable[[], Any] = list) -> tuple[Any, Any]:
    """(train, test): a row goes to test when ``unit_hash(seed, prompt_id) < test_fraction``.

    Deterministic and independent of row order; every row of one prompt lands in the same
    split, in every config, so the test split never shares a prompt with train. ``into`` makes
    the two containers (lists; e.g. ``lambda: RowSpool(folder)`` for a run's rows).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise FusekitError(f"test_fraction must be in [0, 1), not {test_fraction}")
    train, test = into(), into()
    for r in rows:
        (test if _is_test_row(r, test_fraction, seed) else train).append(r)
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


class _ConfigFacts:
    """One config's card facts, gathered row by row (in the order the rows are given)."""

    def __init__(self) -> None:
        self.domains: dict[str, int] = {}
        self.scores: dict[str, array] = {col: array("d") for col in SCORE_COLUMNS}

    def add(self, r: dict[str, Any]) -> None:
        d = str(r.get("domain") or "unknown")
        self.domains[d] = self.domains.get(d, 0) + 1
        for col, vals in self.scores.items():
            v = r.get(col)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals.append(float(v))

    def score_summary(self) -> dict[str, dict[str, float]]:
        return {col: {"n": len(vals), "mean": statistics.fmean(vals), "min": min(vals),
                      "p50": median(vals), "max": max(vals)}
                for col, vals in self.scores.items() if vals}


def _first_row(parts: dict[str, Rows]) -> dict[str, Any] | None:
    order = [s for s in SPLITS if s in parts] + [s for s in parts if s not in SPLITS]
    return next((next(iter(parts[s])) for s in order if len(parts[s])), None)


def summarize(configs: dict[str, dict[str, Rows]],
              on_chunk: Callable[[str, list[dict[str, Any]]], None] | None = None) -> dict[str, Any]:
    """Card facts from rows: ``splits`` (rows per split), ``domain_counts``, ``score_summary``, ``samples``.

    One pass over the rows; ``on_chunk(config, rows)`` sees them on the way, a chunk at a time.
    """
    splits: dict[str, dict[str, int]] = {}
    domains: dict[str, dict[str, int]] = {}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    samples: dict[str, dict[str, Any]] = {}
    for c, parts in configs.items():
        splits[c] = {s: len(rows) for s, rows in parts.items() if len(rows)}
        facts = _ConfigFacts()
        for rows in parts.values():
            for chunk in row_chunks(rows):
                for r in chunk:
                    facts.add(r)
                if on_chunk is not None:
                    on_chunk(c, chunk)
        domains[c] = dict(sorted(facts.domains.items()))
        if summary := facts.score_summary():
            scores[c] = summary
        first = _first_row(parts)
        if first is not None:
            samples[c] = first
    return {"splits": splits, "domain_counts": domains, "score_summary": scores, "samples": samples}


class _SchemaInference:
    """The schema :func:`rows_to_table` would infer from all of a config's rows, from one chunk at a time:
    columns in first-seen order, each column's types merged as pyarrow's inference merges them (a null
    column takes any type, int64 and double give double, structs unite their fields)."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, pa.DataType]] = {}

    def add(self, config: str, rows: list[dict[str, Any]]) -> None:
        types = self.types.setdefault(config, {})
        for f in rows_to_table(rows).schema:
            old = types.get(f.name)
            types[f.name] = f.type if old is None else _merged(f.name, old, f.type)

    def schema(self, config: str) -> pa.Schema:
        return pa.schema(list(self.types[config].items()))


def _merged(name: str, a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    try:
        return pa.unify_schemas([pa.schema([(name, a)]), pa.schema([(name, b)])],
                                promote_options="permissive").field(name).type
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise FusekitError(f"rows do not form a table: {e}") from e


def _is_dataset_folder(folder: Path) -> bool:
    return not any(folder.iterdir()) or (folder / "README.md").exists() or (folder / "data").is_dir()


def write_dataset(folder: str | Path, configs: dict[str, dict[str, Rows]], *,
                  card_info: dict[str, Any]) -> Path:
    """Write a Hub dataset folder for ``configs`` ({config: {split: rows}}) with its card.

    Empty splits are skipped. The tree is built in a hidden temporary sibling and renamed
    over ``folder``; an existing ``folder`` is replaced only if it looks like a dataset
    folder (empty, or holding README.md / data/). Returns ``folder``.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or not _is_dataset_folder(folder)):
        raise FusekitError(f"{folder} exists and is not a dataset folder; refusing to replace it")
    if not any(len(rows) for parts in configs.values() for rows in parts.values()):
        raise FusekitError("no rows to publish")
    for c in configs:
        if not c or "/" in c or c.startswith("."):
            raise FusekitError(f"bad config name {c!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        with _system_allocator():
            _write_tree(tmp, configs, card_info)
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


def _write_tree(tmp: Path, configs: dict[str, dict[str, Rows]], card_info: dict[str, Any]) -> None:
    """The shards and the card, in ``tmp``."""
    from cards.render import render_dataset_card

    # One pass for the card's facts and each config's schema (one schema for all splits of a
    # config, so datasets casts every split alike), one to write the shards.
    inference = _SchemaInference()
    facts = summarize(configs, on_chunk=inference.add)
    for c, parts in configs.items():
        nonempty = {s: rows for s, rows in parts.items() if len(rows)}
        if nonempty:
            (tmp / "data" / c).mkdir(parents=True)
        for s, rows in nonempty.items():
            _write_shard(tmp / "data" / c / shard_name(s), rows, inference.schema(c))
    render_dataset_card({**facts, **card_info}).save(tmp / "README.md")


@contextlib.contextmanager
def _system_allocator() -> Iterator[None]:
    """pyarrow's own allocator (mimalloc in the wheels) keeps what one row group freed while the next
    is built, so the process grew with the number of row groups; the system allocator gives it back.
    Each buffer returns to the pool it came from, so switching back afterwards is safe."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _write_shard(path: Path, rows: Rows, schema: pa.Schema) -> None:
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in row_chunks(rows):
            writer.write_table(rows_to_table(chunk, schema))


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
