"""Pairs and write stages of ``fusedata build`` (or ``fusedata pairs RUN_DIR``): scored run → dataset folder.

:func:`candidates` gives the candidates of the source models (and, for WRPO, of the target) as
:class:`StoreCandidates`, which join the run store a page of prompts at a time; :func:`build_configs`
streams them through the method's builder from ``fusedata.pairs``, prompt by prompt, into rows
spooled to disk; :func:`write_run_dataset` splits train/test and writes a Hugging Face dataset folder
(parquet per config and split, plus the card) inside the run folder. What stays in memory across a
run is counters and one float per row for the card, never the texts: the peak is the same for a
run ten times larger. The rows, their order and every number are what joining the whole store at
once gives (``gather`` and the ``build_*`` functions, which take in-memory candidates, still do).

The folder is named ``<recipe>-<method>-<8 hex digits of its rows>``. ``datasets`` caches a local
folder's prepared data under the folder's *name*, so two runs' folders that shared a name (every
one used to be called ``dataset``) made ``load_dataset(folder, config)`` return whichever run was
loaded first; a name that changes with the rows gives every distinct dataset its own cache entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import FusekitError
from .pairs import (
    Candidate,
    CandidateSet,
    FuseChat3Builder,
    FuseRLBuilder,
    WRPOBuilder,
    candidate_order,
    index_scores,
    make_candidate,
    reward_scorer_among,
    to_trl_rows,
    wrpo_quadruple_rows,
)
from .recipe import PairsConfig, Recipe
from .records import Pair, Prompt, canonical_json
from .store import DB_NAME, RunStore

if TYPE_CHECKING:  # publish (pyarrow) loads when a dataset is written, not with every command
    from .publish import Rows, RowSpool

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


class StoreCandidates:
    """A run's candidates as :func:`~fusedata.pairs.gather` would join them from the whole store, read
    a page of prompts at a time (``RunStore.prompt_groups``). :meth:`groups` yields ``(prompt,
    candidates)`` for every prompt in store order, an empty list where none is usable; :meth:`items`
    the same keyed by prompt id, like a ``CandidateSet``. Once a pass has ended, ``dropped`` counts the
    dropped responses by reason, in the order a pass over all responses in store order meets them.

    ``model`` keeps one model's responses, ``not_model`` leaves one out (the WRPO target).
    """

    def __init__(self, store: RunStore, reward_scorer: str | None, *, keep_truncated: bool = False,
                 ok_only: bool = True, model: str | None = None, not_model: str | None = None):
        self.store, self.folder = store, store.folder
        self.reward_scorer, self.keep_truncated = reward_scorer, keep_truncated
        self._filter: dict[str, Any] = {"ok_only": ok_only, "model": model, "not_model": not_model}
        self.dropped: Counter[str] = Counter()

    def groups(self) -> Iterator[tuple[Prompt, list[Candidate]]]:
        first: dict[str, int] = {}  # reason -> smallest rowid dropped for it
        counts: Counter[str] = Counter()

        def drop(reason: str, rowid: int, n: int = 1) -> None:
            counts[reason] += n
            first[reason] = min(first.get(reason, rowid), rowid)

        n, rowid = self.store.orphan_responses(**self._filter)
        if n:
            drop("unknown_prompt", rowid, n)
        scorers = [s for s in (self.reward_scorer, "math", "code") if s]
        for g in self.store.prompt_groups(**self._filter, scorers=scorers):
            by_key = index_scores(g.scores)
            lst = []
            for rowid, r in g.responses:
                c = make_candidate(g.prompt, r, by_key, self.reward_scorer, keep_truncated=self.keep_truncated)
                if isinstance(c, str):
                    drop(c, rowid)
                else:
                    lst.append(c)
            lst.sort(key=candidate_order)
            yield g.prompt, lst
        self.dropped = Counter({k: counts[k] for k in sorted(counts, key=first.__getitem__)})

    def items(self) -> Iterator[tuple[str, list[Candidate]]]:
        for p, lst in self.groups():
            yield p.id, lst


Candidates = CandidateSet | StoreCandidates


def run_reward_scorer(store: RunStore) -> str | None:
    """The run's one reward scorer (``rm:``/``judge:``); ValueError when it has several."""
    return reward_scorer_among(store.scorer_names())


def candidates(store: RunStore, recipe: Recipe) -> tuple[StoreCandidates, StoreCandidates | None]:
    """The source models' candidates, and the target's for WRPO (None otherwise), read from the store
    as they are used (see :class:`StoreCandidates`)."""
    target = recipe.target.name if recipe.target else None
    try:
        scorer = run_reward_scorer(store)
    except ValueError as e:  # e.g. several reward scorers in one run and none chosen
        raise FusekitError(f"cannot build pairs: {e}") from None
    keep = recipe.pairs.keep_truncated
    sources = StoreCandidates(store, scorer, keep_truncated=keep, not_model=target)
    if recipe.pairs.method != "wrpo" or target is None:
        return sources, None
    return sources, StoreCandidates(store, scorer, keep_truncated=keep, model=target)


# method -> builder part -> (dataset config, row layout)
_LAYOUT: dict[str, dict[str, tuple[str, str]]] = {
    "fusechat3": {"sft": ("sft", "sft"), "dpo": ("dpo", "preference")},
    "fuserl": {"sft": ("fuserl_sft", "sft"), "po": ("fuserl_po", "preference")},
    "wrpo": {"sft": ("sft", "sft"), "preference": ("wrpo", "wrpo")},
}


def _builder(cfg: PairsConfig) -> FuseChat3Builder | FuseRLBuilder | WRPOBuilder:
    opts = cfg.options()
    if cfg.method == "fusechat3":
        return FuseChat3Builder(seed=cfg.seed, **opts)
    if cfg.method == "fuserl":
        return FuseRLBuilder(**opts)
    return WRPOBuilder(seed=cfg.seed, **opts)


def _rows(pair: Pair, layout: str, cfg: PairsConfig) -> list[dict]:
    if layout == "wrpo" and cfg.export == "quadruple":
        return wrpo_quadruple_rows([pair])
    return to_trl_rows([pair], layout)  # type: ignore[arg-type]


def _with_target(cands: Candidates, target: Candidates | None) -> Iterator[tuple[str, list, list]]:
    """(prompt id, source candidates, target candidates) for every prompt of ``cands``, in order."""
    if not isinstance(target, StoreCandidates):
        for pid, lst in cands.items():
            yield pid, lst, (target or {}).get(pid, [])
        return
    # Both read the prompts in store order: one pass, side by side.
    for (pid, lst), (tid, tgt) in zip(cands.items(), target.items(), strict=True):
        if tid != pid:
            raise FusekitError("the run store changed while pairs were built; run fusedata pairs again")
        yield pid, lst, tgt


def build_configs(cands: Candidates, target_cands: Candidates | None,
                  cfg: PairsConfig) -> tuple[dict[str, Rows], dict]:
    """Rows per dataset config, and the build report (kept/dropped with reasons). No model runs here.

    Candidates from the store stream through the builder prompt by prompt and their rows go to
    :class:`~fusedata.publish.RowSpool` files in the run folder; in-memory candidates give lists.
    """
    from .publish import RowSpool

    builder = _builder(cfg)
    layout = _LAYOUT[cfg.method]
    spool = cands.folder if isinstance(cands, StoreCandidates) else None
    configs: dict[str, Any] = {c: RowSpool(spool) if spool else [] for c, _ in layout.values()}
    for pid, lst, tgt in _with_target(cands, target_cands):
        for part, pair in builder.add(pid, lst, tgt):
            config, kind = layout[part]
            configs[config].extend(_rows(pair, kind, cfg))
    builder.report.responses_dropped = dict(getattr(cands, "dropped", {}) or {})
    return configs, builder.report.to_dict()


def _canonical_pieces(parts: dict[str, dict[str, Iterable[dict]]]) -> Iterator[str]:
    """``canonical_json(parts)`` in pieces, a row at a time."""
    yield "{"
    for i, c in enumerate(sorted(parts)):
        yield ("," if i else "") + canonical_json(c) + ":{"
        for j, s in enumerate(sorted(parts[c])):
            yield ("," if j else "") + canonical_json(s) + ":["
            for k, row in enumerate(parts[c][s]):
                yield ("," if k else "") + canonical_json(row)
            yield "]"
        yield "}"
    yield "}"


def folder_name(recipe_name: str, method: str, parts: dict[str, dict[str, Iterable[dict]]]) -> str:
    """``<recipe>-<method>-<hash>``: unique to the rows, so ``datasets``' cache never mixes two datasets."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", recipe_name.lower()).strip("-.") or "fusekit"
    h = hashlib.sha256()
    for piece in _canonical_pieces(parts):
        h.update(piece.encode("utf-8"))
    return f"{slug}-{method}-{h.hexdigest()[:8]}"


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


def write_run_dataset(store: RunStore, recipe: Recipe, configs: dict[str, Rows], report: dict,
                      out: Path | None = None) -> Dataset:
    """Split each config train/test, write the folder and its card. A folder in the run (``out``
    None) is recorded in the store as the run's dataset and replaces the one recorded before."""
    from .publish import RowSpool, split_train_test, write_dataset

    cfg = recipe.pairs
    with contextlib.ExitStack() as spools:
        def spool() -> RowSpool:
            return spools.enter_context(contextlib.closing(RowSpool(store.folder)))

        parts = {}
        for name, rows in configs.items():
            train, test = split_train_test(rows, cfg.test_fraction, cfg.seed, into=spool)
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
