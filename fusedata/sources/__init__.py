"""Prompt sources: where the prompts sent to every source model come from.

    from fusedata.sources import load_source, SOURCES
    prompts = load_source("leetcode", limit=100)                      # from the Hub
    prompts = load_source("openmathinstruct2", data_files="omi2.jsonl")  # a local copy
    prompts = load_source("embedded:math")                             # shipped, offline

``SOURCES`` maps each name to its spec (``hub_id``, ``split``, ``domain``, ``fields``,
``description``): the eight FuseChat-3.0 sources (see ``fusedata.sources.hub``) and
four small embedded sets (see ``fusedata.sources.embedded``).

``load_source`` reads rows in order, maps each to a ``Prompt``, drops rows the mapping
cannot use (blank prompts; code problems without usable tests), removes duplicate
prompts by ``Prompt.id`` keeping the first, and stops after ``limit`` prompts, so the
result is the first N unique prompts in file order. Skipped rows and duplicates are
reported on the ``fusedata.sources`` logger (one WARNING line per load when rows were
skipped). Bad input (unknown name, missing file, missing column, wrong type) raises
``FusekitError``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Union

from fusedata.errors import FusekitError
from fusedata.records import Prompt
from fusedata.sources.embedded import EMBEDDED_SOURCES, EmbeddedSource
from fusedata.sources.hub import (
    CODE_INSTRUCTION,
    HUB_SOURCES,
    MATH_INSTRUCTION,
    HubSource,
    parse_leetcode,
    sc2_tests,
)

__all__ = [
    "CODE_INSTRUCTION",
    "MATH_INSTRUCTION",
    "SOURCES",
    "EmbeddedSource",
    "HubSource",
    "SourceSpec",
    "load_source",
    "parse_leetcode",
    "sc2_tests",
]

log = logging.getLogger("fusedata.sources")

SourceSpec = Union[HubSource, EmbeddedSource]

#: Every known source by name: the eight Hub sources, then the embedded sets.
SOURCES: dict[str, SourceSpec] = {spec.name: spec for spec in (*HUB_SOURCES, *EMBEDDED_SOURCES)}


def load_source(
    name: str,
    *,
    limit: int | None = None,
    data_files: str | os.PathLike | list[str] | None = None,
    split: str | None = None,
) -> list[Prompt]:
    """Load the prompts of source ``name``: deduplicated by prompt id, first ``limit`` kept.

    ``data_files`` reads local files with the source's columns instead of the Hub
    (JSON/JSONL/Parquet for Hub sources, JSONL for embedded ones); ``split`` overrides
    the default split (for local files the default is ``train``).
    """
    spec = SOURCES.get(name)
    if spec is None:
        raise FusekitError(f"unknown prompt source {name!r}; known sources: {', '.join(SOURCES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise FusekitError(f"source {name!r}: limit must be a non-negative integer, got {limit!r}")
    prompts: list[Prompt] = []
    if limit == 0:
        return prompts
    seen: set[str] = set()
    skipped: Counter[str] = Counter()
    first_rows: dict[str, list[int]] = {}
    rows = duplicates = 0
    for index, item in spec.items(data_files=data_files, split=split):
        rows += 1
        if isinstance(item, str):
            skipped[item] += 1
            first_rows.setdefault(item, [])
            if len(first_rows[item]) < 5:
                first_rows[item].append(index)
            continue
        if item.id in seen:
            duplicates += 1
            continue
        seen.add(item.id)
        prompts.append(item)
        if limit is not None and len(prompts) >= limit:
            break
    if skipped:
        detail = "; ".join(
            f"{count} {reason} (rows {', '.join(map(str, first_rows[reason]))}{', ...' if count > 5 else ''})"
            for reason, count in skipped.most_common()
        )
        log.warning("source %r: skipped %d of %d rows read: %s", name, sum(skipped.values()), rows, detail)
    log.info("source %r: %d prompts from %d rows (%d duplicates dropped)", name, len(prompts), rows, duplicates)
    return prompts
