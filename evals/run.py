"""``evals run``: load a bench → generate answers → judge them → score → write the reports.

Every stage reads the eval store first and does only what is missing, so a killed run continues
where it stopped and a finished one re-scores in seconds. The reports always cover every model
and bench in the run directory, so models evaluated one after another appear side by side.
"""

from __future__ import annotations

import platform
import sys
import time

from rich.console import Console

from fusedata.errors import FusekitError
from fusedata.generate import progress_bar
from fusedata.judge import JudgeReply, JudgeRequest, make_judge

from . import judging
from .answers import EvalModel, count_work, generate_answers
from .benches import Bench, get_bench, load_questions
from .comparable import JUDGES, has_api_env
from .config import EvalConfig
from .pricing import load_prices
from .records import Question
from .report import BenchReport, write_run_reports
from .score import ScoreOptions, score_bench
from .store import EvalStore


def run(cfg: EvalConfig, console: Console, command: list[str] | None = None) -> list[BenchReport]:
    """Answers, verdicts and reports for a checked config (``evals.config.load``); ``command`` is
    what the manifest records as the command line."""
    t0 = time.perf_counter()
    bench = get_bench(str(cfg.bench))
    models = cfg.eval_models()
    questions, files = load_questions(bench.name, limit=cfg.limit, categories=cfg.categories, source=cfg.source,
                                      data_dir=cfg.data_dir, reference=cfg.reference)
    with EvalStore(cfg.out) as store:
        known = {m.name for m in models} | set(store.models(bench.name))
        if cfg.mode == "pairwise" and cfg.baseline_model not in known:
            raise FusekitError(f"--baseline-model {cfg.baseline_model!r} is neither evaluated now nor stored in "
                               f"{cfg.out}")
        store.put_questions(questions)
        store.set_meta(f"{bench.name}:data", {f.name: f.sha256 or f.path for f in files})
        store.set_meta(f"{bench.name}:run", {"mode": cfg.mode, "pairwise_baseline": cfg.baseline_model,
                                             "reference": cfg.reference, "prompt": cfg.prompt, "parser": cfg.parser,
                                             "limit": cfg.limit, "categories": cfg.categories,
                                             "style_control": cfg.style_control,
                                             "requested_bench": cfg.requested_bench})
        store.set_meta(f"{bench.name}:judge", cfg.judge.record())
        console.print(f"[bold]evals run[/] {bench.name}: {len(questions)} questions, models "
                      f"{', '.join(m.name for m in models)}, judge {cfg.judge.model} → {cfg.out}")
        _notes(cfg, bench.name, console)
        try:
            _answers(bench.name, questions, models, store, console)
            _judge(bench, questions, models, cfg, store, console)
        finally:
            store.set_meta(f"{bench.name}:wall_seconds",
                           float(store.get_meta(f"{bench.name}:wall_seconds", 0.0)) + time.perf_counter() - t0)
        return rescore(store, ScoreOptions(prices=load_prices(cfg.prices), lc_inputs=cfg.lc_inputs), console,
                       command=command)


def _notes(cfg: EvalConfig, bench: str, console: Console) -> None:
    """What the user should know before the calls start: which bench an alias meant, where the judge goes."""
    if cfg.requested_bench:
        console.print(f"  {cfg.requested_bench} = {bench}")
    up = JUDGES[bench]
    console.print(f"  judge {cfg.judge.model}: {cfg.judge.base_url or 'in-process'} ({cfg.judge.routed})")
    if cfg.judge.model == up.model and up.retired:
        console.print(f"[yellow]  {up.model} is retired from its API; `--judge upstream` sends {up.successor} "
                      f"({up.successor_by}), whose scores are not comparable with the published leaderboard[/]")
    elif cfg.judge.base_url is None and not has_api_env():
        console.print("  no OPENAI_API_KEY/OPENAI_BASE_URL: a smoke-test judge, not leaderboard-comparable")


def _answers(bench: str, questions: list[Question], models: list[EvalModel], store: EvalStore,
             console: Console) -> None:
    with progress_bar(console) as bar:
        for model in models:
            todo = count_work(bench, questions, model, store)
            task = bar.add_task(f"answers {model.name}", total=todo, failed=0, tokens=0)
            rep = generate_answers(bench, questions, model, store, on_batch=lambda n: bar.advance(task, n))
            bar.update(task, failed=rep.failed, completed=todo)
            if rep.failed:
                console.print(f"[yellow]{model.name}: {rep.failed} answers failed (stored with their error; "
                              "re-run to retry)[/]")


def _judge(bench: Bench, questions: list[Question], models: list[EvalModel], cfg: EvalConfig, store: EvalStore,
           console: Console) -> None:
    settings = cfg.judge.settings()
    planner = judging.plan(bench.name, questions, models, settings, store, mode=cfg.mode,
                           pairwise_baseline=cfg.baseline_model, prompt=cfg.prompt, data_dir=cfg.data_dir)
    items = planner.items
    store.set_meta(f"{bench.name}:prompts", planner.prompt_sources)
    store.put_judgments(i.judgment for i in items)
    todo = judging.pending(items, store)
    console.print(f"judge {settings.name}: {len(items)} items, {len(todo)} calls to make "
                  f"({len(items) - len(todo)} from the store or decided without a call)")
    if not todo:
        return
    judge = make_judge(settings)
    try:
        if bench.logprob_judge:
            judging.preflight_logprobs(judge, todo[0], store)
            todo = todo[1:]
        with progress_bar(console) as bar:
            task = bar.add_task(f"judge {settings.name}", total=len(todo), failed=0, tokens=0)
            failed = 0

            def tick(req: JudgeRequest, reply: JudgeReply) -> None:
                nonlocal failed
                failed += not reply.ok
                bar.update(task, advance=1, failed=failed,
                           tokens=bar.tasks[task].fields["tokens"] + reply.completion_tokens)

            counts = judging.send(judge, todo, store, on_reply=tick)
        if counts["failed"]:
            console.print(f"[yellow]{counts['failed']} judge calls failed (stored with their error; "
                          "re-run to retry)[/]")
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


def rescore(store: EvalStore, opts: ScoreOptions, console: Console, *,
            command: list[str] | None = None) -> list[BenchReport]:
    """Score every bench in the store and rewrite the run's reports; calls nothing."""
    from .report import summary_table

    reports = [score_bench(store, b, opts) for b in store.benches() if store.judges(b)]
    if not reports:
        raise FusekitError(f"nothing judged in {store.folder} yet")
    manifest = {
        "command": command or sys.argv,
        "python": platform.python_version(),
        "benches": {r.bench: {"judge": r.judge, "data": r.data, "settings": r.settings, "usage": r.usage,
                              "wall_seconds": r.wall_seconds,
                              "leaderboard_comparable": r.comparable.record() if r.comparable else None}
                    for r in reports},
        "run_dir": str(store.folder),
        "store": str(store.path),
        "versions": _versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    paths = write_run_reports(store.folder, reports, manifest)
    console.print(summary_table(reports))
    for r in reports:
        if r.comparable is not None and not r.comparable.comparable:
            console.print(f"  {r.bench}: not leaderboard-comparable: {'; '.join(r.comparable.differs)}")
    for name, path in paths.items():
        console.print(f"  {name}: {path}")
    return reports

