"""``fusedata build`` as one function, read top to bottom; ``fusedata score`` and ``pairs`` run its later stages.

    load → sources → generate → score → [target generate → score] → pairs → write

Each stage writes what it made to the run store as it goes and the next one reads it from there, a
page at a time, so a killed build loses at most the requests or the batch in flight, a re-run
continues from the store, and memory does not grow with the run. The recipe was checked whole
before :func:`build` is called (``fusedata.recipe``); ``load`` here only makes sure every local
model exists before the first one is loaded. The bracketed stage runs for WRPO only: the target
samples the preference prompts, scored like the sources. Pairs builders take candidates only: they
never generate or score.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import models
from .cluster import Executor, LocalExecutor
from .dataset import Dataset, build_configs, candidates, write_run_dataset
from .errors import FusekitError
from .generate import GenerationReport, collect_prompts, generate_for, summary_table
from .pairs import split_wrpo
from .recipe import Recipe, ScoringConfig
from .records import Prompt
from .score import ScoreReport, domain_stats, plot_rewards, score_run, score_table
from .store import RunStore

SUMMARY = "summary.json"


@dataclass
class ScoringOutcome:
    """What the scoring stage did, and the per-domain statistics its table shows."""

    report: ScoreReport
    stats: dict[str, dict[str, Any]]
    wall_s: float


@dataclass
class BuildResult:
    generation: GenerationReport
    generation_wall_s: float
    scoring: ScoringOutcome | None = None
    dataset: Dataset | None = None

    @property
    def reward_error(self) -> str | None:
        return self.scoring.report.reward_error if self.scoring else None


def build(recipe: Recipe, console: Console, *, executor: Executor | None = None, score: bool = True,
          pairs: bool = True) -> BuildResult:
    """Run every stage the flags ask for; ``summary.json`` is written once, at the end."""
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    check_models(recipe, with_target=score and pairs)
    with RunStore(recipe.out) as store:
        store.set_meta("recipe", recipe.raw)
        prompts = sources_stage(recipe, store)
        generation = generate_for(recipe.models, prompts, store, console, executor=executor)
        result = BuildResult(generation, round(time.perf_counter() - t0, 2))
        report_generation(store, result, console)
        if score:
            result.scoring = score_stage(store, recipe.scoring, console, executor)
        if score and pairs and not result.reward_error:
            try:
                result.dataset = dataset_stages(store, recipe, console, executor)
            except FusekitError as e:
                # Responses and scores are all stored; only the dataset is missing.
                console.print(f"[yellow]no dataset written:[/] {escape(str(e))}", highlight=False)
        write_summary(store.folder, build_summary(store, result))
    return result


def check_models(recipe: Recipe, *, with_target: bool) -> None:
    """A missing local model fails now, before any model is loaded (endpoints are probed by their engine)."""
    sampled = with_target and recipe.target is not None and recipe.pairs.method == "wrpo"
    for m in (*recipe.models, *([recipe.target] if sampled else [])):
        if m.engine.endpoint is None:
            models.resolve(m.engine.model)


def sources_stage(recipe: Recipe, store: RunStore) -> list[Prompt]:
    """Every domain's prompts, deduplicated and limited, stored before any model sees them."""
    prompts = collect_prompts(recipe)
    store.put_prompts(prompts)
    return prompts


def report_generation(store: RunStore, result: BuildResult, console: Console) -> None:
    console.print(summary_table(store, result.generation))
    failures = sum(int(s["failures"]) for s in store.response_stats().values())
    console.print(f"prompts: {dict(result.generation.prompts)}  generation wall time {result.generation_wall_s:.1f} s"
                  + (f"  [red]{failures} failed requests stored; re-run to retry them[/]" if failures else ""))


def score_stage(store: RunStore, cfg: ScoringConfig, console: Console,
                executor: Executor | None = None) -> ScoringOutcome:
    """Score what is missing, print the per-domain table and write the reward histogram."""
    t0 = time.perf_counter()
    rep = score_run(store, cfg, console, executor)
    stats = domain_stats(store)
    console.print(score_table(stats))
    png = plot_rewards(store, store.folder / "scores.png")
    outcome = ScoringOutcome(rep, stats, round(time.perf_counter() - t0, 2))
    if rep.isolation:
        console.print(f"code sandbox: {rep.isolation}")
    console.print(f"scored {dict(rep.new)} in {outcome.wall_s:.1f} s" + (f"; histogram {png}" if png else ""))
    for e in rep.errors:
        console.print(f"[yellow]warning:[/] {escape(e)}", highlight=False)
    if rep.reward_error:
        # Everything else is scored and stored; the run is incomplete until the reward model loads.
        console.print(f"[bold red]error:[/] {escape(rep.reward_error)}", highlight=False)
    return outcome


def target_stage(store: RunStore, recipe: Recipe, console: Console, executor: Executor | None = None) -> None:
    """WRPO: the target samples the preference prompts (the split is by prompt hash, known before
    any candidate exists) through the same engines, and is scored by the same scorers."""
    if recipe.target is None:
        raise FusekitError("pairs.method 'wrpo' needs a 'target' model in the recipe")
    prompts = store.prompts()
    preference = set(split_wrpo([p.id for p in prompts], recipe.pairs.seed)[1])
    generate_for([recipe.target], [p for p in prompts if p.id in preference], store, console, executor=executor)
    rep = score_run(store, recipe.scoring, console, executor)
    if rep.reward_error:
        console.print(f"[yellow]warning:[/] the target's {escape(rep.reward_error)}", highlight=False)


def dataset_stages(store: RunStore, recipe: Recipe, console: Console, executor: Executor | None = None,
                   out: Path | None = None) -> Dataset:
    """[target generate → score] → pairs → write, then the dataset table and how to load it."""
    if recipe.pairs.method == "wrpo":
        target_stage(store, recipe, console, executor)
    configs, report = build_configs(*candidates(store, recipe), recipe.pairs)
    dataset = write_run_dataset(store, recipe, configs, report, out)
    t = Table(title=f"fusedata build — dataset ({dataset.method})")
    for col in ("config", "train", "test"):
        t.add_column(col, justify="left" if col == "config" else "right")
    for name, c in dataset.counts.items():
        t.add_row(name, str(c.get("train", 0)), str(c.get("test", 0)))
    console.print(t)
    folder = dataset.folder
    console.print(f"dataset folder: {folder}  (load_dataset(\"{folder}\", \"{next(iter(dataset.counts))}\"); "
                  f"card: {folder / 'README.md'})")
    return dataset


def build_summary(store: RunStore, result: BuildResult) -> dict[str, Any]:
    """``summary.json`` of a build: what the store holds now, and what this build added."""
    summary: dict[str, Any] = {
        "prompts": dict(result.generation.prompts),
        "models": store.response_stats(),
        "new_responses": dict(result.generation.new_responses),
        "new_failures": dict(result.generation.new_failures),
        "wall_s": result.generation_wall_s,
    }
    if result.scoring is not None:
        summary.update(scoring_summary(result.scoring))
    if result.dataset is not None:
        summary["dataset"] = result.dataset.to_dict()
    return summary


def scoring_summary(outcome: ScoringOutcome) -> dict[str, Any]:
    # The sandbox layer is known only when code was run; a later run that ran none keeps the earlier one.
    sandbox = {"sandbox": outcome.report.isolation} if outcome.report.isolation else {}
    return {"scores": outcome.stats, "scoring_wall_s": outcome.wall_s, **sandbox}


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2))


def update_summary(folder: Path, sections: dict[str, Any]) -> None:
    """``fusedata score`` / ``pairs`` on an existing run: replace their sections, keep the build's."""
    path = folder / SUMMARY
    summary = json.loads(path.read_text()) if path.is_file() else {}
    write_summary(folder, {**summary, **sections})
