"""``evals run``: load a bench → generate answers → judge them → score → write the reports.

Every stage reads the eval store first and does only what is missing, so a killed run continues
where it stopped and a finished one re-scores in seconds. The reports always cover every model
and bench in the run directory, so models evaluated one after another appear side by side.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from fusedata.errors import FusekitError
from fusedata.generate import progress_bar

from . import judging
from .answers import ModelSpec, count_work, generate_answers
from .benches import load_questions
from .judges.client import JudgeSpec, make_judge
from .judges.prompts import load_prompt
from .pricing import load_prices
from .report import BenchReport, write_run_reports
from .score import ScoreOptions, score_bench
from .store import EvalStore


@dataclass
class RunConfig:
    bench: str
    models: list[ModelSpec]
    judge: JudgeSpec
    out: Path
    limit: int | None = None
    categories: list[str] | None = None
    source: str = "auto"
    data_dir: str | None = None
    reference: str = "gpt-4"
    mode: str = "single"
    pairwise_baseline: str | None = None
    prompt: str | None = None
    prices: str | None = None
    lc_inputs: str | None = None
    style_control: bool = False
    command: list[str] = field(default_factory=list)


def validate(cfg: RunConfig) -> None:
    """Everything checkable before a model loads or a request leaves."""
    if cfg.mode not in judging.MODES:
        raise FusekitError(f"unknown mode {cfg.mode!r}; choose one of {', '.join(judging.MODES)}")
    if cfg.mode == "pairwise":
        if cfg.bench != "mt-bench":
            raise FusekitError("--mode pairwise is MT-Bench's; Arena-Hard and AlpacaEval are always pairwise vs their baseline")
        if not cfg.pairwise_baseline:
            raise FusekitError("--mode pairwise needs --baseline-model NAME (one of the evaluated models)")
    names = [m.name for m in cfg.models]
    if len(set(names)) != len(names):
        raise FusekitError(f"model names must be unique, got {', '.join(names)}; use --model NAME=REF")
    if cfg.judge.prefill and cfg.judge.base_url:
        raise FusekitError("--judge-prefill needs an in-process judge: OpenAI-compatible endpoints do not continue "
                           "a prefilled reply")
    if cfg.prompt:
        load_prompt(cfg.prompt)  # unknown names fail here, with a did-you-mean
    load_prices(cfg.prices)


def run(cfg: RunConfig, console: Console) -> list[BenchReport]:
    validate(cfg)
    t0 = time.perf_counter()
    questions, files = load_questions(cfg.bench, limit=cfg.limit, categories=cfg.categories, source=cfg.source,
                                      data_dir=cfg.data_dir, reference=cfg.reference)
    bench = cfg.bench
    with EvalStore(cfg.out) as store:
        if cfg.mode == "pairwise" and cfg.pairwise_baseline not in {m.name for m in cfg.models} | set(store.models(bench)):
            raise FusekitError(f"--baseline-model {cfg.pairwise_baseline!r} is neither evaluated now nor stored in {cfg.out}")
        store.put_questions(questions)
        store.set_meta(f"{bench}:data", {f.name: f.sha256 or f.path for f in files})
        store.set_meta(f"{bench}:run", {"mode": cfg.mode, "pairwise_baseline": cfg.pairwise_baseline,
                                        "reference": cfg.reference, "prompt": cfg.prompt,
                                        "limit": cfg.limit, "categories": cfg.categories,
                                        "style_control": cfg.style_control})
        store.set_meta(f"{bench}:judge", {**asdict(cfg.judge), "kind": cfg.judge.kind})
        console.print(f"[bold]evals run[/] {bench}: {len(questions)} questions, models "
                      f"{', '.join(m.name for m in cfg.models)}, judge {cfg.judge.name} → {cfg.out}")
        try:
            _answers(bench, questions, cfg, store, console)
            _judge(bench, questions, cfg, store, console)
        finally:
            store.set_meta(f"{bench}:wall_seconds",
                           float(store.get_meta(f"{bench}:wall_seconds", 0.0)) + time.perf_counter() - t0)
        reports = rescore(store, ScoreOptions(prices=load_prices(cfg.prices), lc_inputs=cfg.lc_inputs), console,
                          command=cfg.command)
    return reports


def _answers(bench: str, questions, cfg: RunConfig, store: EvalStore, console: Console) -> None:
    with progress_bar(console) as bar:
        for spec in cfg.models:
            todo = count_work(bench, questions, spec, store)
            task = bar.add_task(f"answers {spec.name}", total=todo, failed=0, tokens=0)
            rep = generate_answers(bench, questions, spec, store, on_batch=lambda n: bar.advance(task, n))
            bar.update(task, failed=rep.failed, completed=todo)
            if rep.failed:
                console.print(f"[yellow]{spec.name}: {rep.failed} answers failed (stored with their error; "
                              "re-run to retry)[/]")


def _judge(bench: str, questions, cfg: RunConfig, store: EvalStore, console: Console) -> None:
    items = judging.plan(bench, questions, cfg.models, cfg.judge, store, mode=cfg.mode,
                         pairwise_baseline=cfg.pairwise_baseline, prompt=cfg.prompt)
    store.put_judgments(i.judgment for i in items)
    todo = judging.pending(items, store)
    console.print(f"judge {cfg.judge.name}: {len(items)} items, {len(todo)} calls to make "
                  f"({len(items) - len(todo)} from the store or decided without a call)")
    if not todo:
        return
    judge = make_judge(cfg.judge)
    try:
        if bench == "alpaca-eval":
            judging.preflight_logprobs(judge, todo[0], store)
            todo = todo[1:]
        with progress_bar(console) as bar:
            task = bar.add_task(f"judge {cfg.judge.name}", total=len(todo), failed=0, tokens=0)
            failed = 0

            def tick(req, reply) -> None:
                nonlocal failed
                failed += not reply.ok
                bar.update(task, advance=1, failed=failed,
                           tokens=bar.tasks[task].fields["tokens"] + reply.completion_tokens)

            counts = judging.send(judge, todo, store, on_reply=tick)
        if counts["failed"]:
            console.print(f"[yellow]{counts['failed']} judge calls failed (stored with their error; re-run to retry)[/]")
    finally:
        judge.close()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("fusekit", "torch", "transformers", "openai", "datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def rescore(store: EvalStore, opts: ScoreOptions, console: Console, *, command: list[str] | None = None) -> list[BenchReport]:
    """Score every bench in the store and rewrite the run's reports; calls nothing."""
    from .report import summary_table

    reports = [score_bench(store, b, opts) for b in store.benches() if store.judges(b)]
    if not reports:
        raise FusekitError(f"nothing judged in {store.folder} yet")
    manifest = {
        "command": command or sys.argv,
        "python": platform.python_version(),
        "benches": {r.bench: {"judge": r.judge, "data": r.data, "settings": r.settings, "usage": r.usage,
                              "wall_seconds": r.wall_seconds} for r in reports},
        "run_dir": str(store.folder),
        "store": str(store.path),
        "versions": _versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    paths = write_run_reports(store.folder, reports, manifest)
    console.print(summary_table(reports))
    for name, path in paths.items():
        console.print(f"  {name}: {path}")
    return reports

