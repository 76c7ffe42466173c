"""The ``fusedata`` command line."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .errors import FusekitError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build FuseChat-3.0 / WRPO / FuseRL style datasets from several source models.")
console = Console(stderr=True)


@app.callback()
def main() -> None:
    """fusedata: prompts → responses → scores → pairs → a dataset on the Hub."""


def user_errors(fn):
    """Bad input ends as one red line and exit code 2; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FusekitError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: everything finished so far is in the run store; re-run to continue[/]")
            raise typer.Exit(130) from None

    return wrapper


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
@user_errors
def build(
    recipe: Annotated[Optional[Path], typer.Argument(help="Recipe YAML; the embedded default when omitted.")] = None,
    domains: Annotated[Optional[str], typer.Option(help="Comma-separated domains to build, e.g. math,code.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder (holds the run store).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many prompts per domain.")] = None,
    models: Annotated[Optional[str], typer.Option(help="Comma-separated source model names from the recipe.")] = None,
    n: Annotated[Optional[int], typer.Option(help="Samples per prompt per model (overrides the recipe).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Max new tokens per response (overrides the recipe).")] = None,
    score: Annotated[bool, typer.Option(help="Score the responses after generating them.")] = True,
    pairs: Annotated[bool, typer.Option(help="Build the dataset (pairs, folder, card) after scoring.")] = True,
    ray: Annotated[Optional[str], typer.Option(
        help="Run generation and scoring as Ray Data pipelines: 'local' starts a Ray instance here, 'auto' joins "
             "the running cluster, or a ray://HOST:PORT address. Replicas and resources come from the recipe's "
             "`extra.ray` (models) and `scoring.<scorer>.ray` blocks.")] = None,
    ray_cpus: Annotated[Optional[int], typer.Option(help="CPUs of a --ray local instance (default: all).")] = None,
) -> None:
    """Generate responses from every source model for every prompt, then score them (resumable: re-run to continue)."""
    from . import recipe as recipe_mod
    from .cluster import make_executor
    from .generate import generate, summary_table
    from .store import RunStore

    t0 = time.perf_counter()
    r = recipe_mod.load(recipe)
    r = recipe_mod.override(r, domains=_csv(domains), out=out, limit=limit, models=_csv(models), n=n, max_tokens=max_tokens)
    console.print(f"[bold]fusedata build[/] {r.name} → {r.out}  domains: {', '.join(r.domains)}  "
                  f"models: {', '.join(m.name for m in r.models)}")
    executor = make_executor(ray, ray_cpus)
    with RunStore(r.out) as store, contextlib.closing(executor):
        store.set_meta("recipe", r.raw)
        rep = generate(r, store, console, executor=executor)
        console.print(summary_table(store, rep))
        stats = store.response_stats()
        summary = {
            "prompts": dict(rep.prompts),
            "models": stats,
            "new_responses": dict(rep.new_responses),
            "new_failures": dict(rep.new_failures),
            "wall_s": round(time.perf_counter() - t0, 2),
        }
        (Path(r.out) / "summary.json").write_text(json.dumps(summary, indent=2))
        failures = sum(int(s["failures"]) for s in stats.values())
        console.print(f"prompts: {dict(rep.prompts)}  generation wall time {summary['wall_s']:.1f} s"
                      + (f"  [red]{failures} failed requests stored; re-run to retry them[/]" if failures else ""))
        if score:
            _score(store, r.scoring, executor)
            if pairs:
                try:
                    _pairs(store, r, method=None, executor=executor)
                except FusekitError as e:
                    # Responses and scores are all stored; only the dataset is missing.
                    console.print(f"[yellow]no dataset written:[/] {e}", highlight=False)


def _pairs(store, r, method: Optional[str], out: Optional[Path] = None, executor=None) -> None:
    from rich.table import Table

    from .dataset import parse_pairs, write_run_dataset

    cfg = parse_pairs(r.pairs, method)
    folder, counts = write_run_dataset(store, r, cfg, console, out, executor)
    t = Table(title=f"fusedata build — dataset ({cfg.method})")
    for col in ("config", "train", "test"):
        t.add_column(col, justify="left" if col == "config" else "right")
    for name, c in counts.items():
        t.add_row(name, str(c.get("train", 0)), str(c.get("test", 0)))
    console.print(t)
    console.print(f"dataset folder: {folder}  (load_dataset(\"{folder}\", \"{next(iter(counts))}\"); card: {folder / 'README.md'})")


def _score(store, scoring_raw: dict, executor=None) -> None:
    """Run the scoring stage, print its table, write the reward histogram; exit 2 on skipped input."""
    from .score import domain_stats, parse_config, plot_rewards, score_run, score_table

    t0 = time.perf_counter()
    rep = score_run(store, parse_config(scoring_raw), console, executor)
    stats = domain_stats(store)
    console.print(score_table(stats))
    png = plot_rewards(store, store.folder / "scores.png")
    summary_path = store.folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["scores"] = stats
    summary["scoring_wall_s"] = round(time.perf_counter() - t0, 2)
    summary["sandbox"] = rep.isolation or summary.get("sandbox", "")
    summary_path.write_text(json.dumps(summary, indent=2))
    if rep.isolation:
        console.print(f"code sandbox: {rep.isolation}")
    console.print(f"scored {dict(rep.new)} in {summary['scoring_wall_s']:.1f} s" + (f"; histogram {png}" if png else ""))
    for e in rep.errors:
        console.print(f"[yellow]warning:[/] {e}", highlight=False)
    if rep.reward_error:
        # Everything else is scored and stored; the run is incomplete until the reward model loads.
        console.print(f"[bold red]error:[/] {rep.reward_error}", highlight=False)
        raise typer.Exit(2)


@app.command()
@user_errors
def score(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `fusedata build`.")],
    recipe: Annotated[Optional[Path], typer.Option(help="Take the scoring block from this recipe instead of the run's.")] = None,
) -> None:
    """Score a run's responses (verifiers, reward model); only what is missing is scored."""
    from . import recipe as recipe_mod

    with _open_run(run_dir) as store:
        scoring = recipe_mod.load(recipe).scoring if recipe else (store.get_meta("recipe") or {}).get("scoring") or {}
        _score(store, scoring)


def _run_recipe(store, recipe: Optional[Path]):
    from . import recipe as recipe_mod

    if recipe:
        return recipe_mod.load(recipe)
    raw = store.get_meta("recipe")
    if raw is None:
        raise FusekitError(f"{store.folder} has no stored recipe; pass --recipe")
    return recipe_mod.parse(raw)


def _open_run(run_dir: Path):
    from .store import DB_NAME, RunStore

    if not (run_dir / DB_NAME).is_file():
        raise FusekitError(f"{run_dir} is not a fusedata run folder (no {DB_NAME})")
    return RunStore(run_dir)


@app.command("pairs")
@user_errors
def pairs_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `fusedata build`.")],
    method: Annotated[Optional[str], typer.Option(help="fusechat3 | wrpo | fuserl (default: the recipe's).")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="Use this recipe instead of the run's.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Dataset folder (default RUN_DIR/dataset).")] = None,
) -> None:
    """Turn a scored run into a dataset folder (parquet configs + card)."""
    with _open_run(run_dir) as store:
        _pairs(store, _run_recipe(store, recipe), method, out)


@app.command("inspect")
@user_errors
def inspect_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `fusedata build`.")],
    examples: Annotated[int, typer.Option(help="How many example prompts to show.")] = 2,
) -> None:
    """Counts, per-source win shares, reward histograms (and a PNG), a few examples."""
    from rich.table import Table

    from .inspect import examples as pick_examples
    from .inspect import inspect_run, plot_inspect

    with _open_run(run_dir) as store:
        stats = inspect_run(store)
        png = plot_inspect(stats, run_dir / "inspect.png")
        t = Table(title="per-source win share (best reward per prompt)")
        t.add_column("domain")
        models = sorted({m for d in stats["win_share"].values() for m in d.get("shares", {})})
        for m in models:
            t.add_column(m, justify="right")
        for d, w in stats["win_share"].items():
            t.add_row(d, *(f"{100 * w.get('shares', {}).get(m, 0):.0f}%" for m in models))
        console.print(t)
        console.print(f"prompts per domain: {stats['prompts']}  failures: {stats['failures']}")
        for ex in pick_examples(store, examples):
            console.print_json(json.dumps(ex, ensure_ascii=False, default=str)[:4000])
        console.print(f"plot: {png}")


@app.command()
@user_errors
def push(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (its dataset/ is pushed) or a dataset folder.")],
    repo_id: Annotated[str, typer.Argument(help="Hub dataset repo, e.g. my-org/fusion-mix.")],
    token: Annotated[Optional[str], typer.Option(help="Hub token (default: HF_TOKEN or the stored login).")] = None,
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    exist_ok: Annotated[bool, typer.Option(help="Update the repo if it already exists.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List exactly what would be uploaded; send nothing.")] = False,
) -> None:
    """Publish a dataset folder to the Hugging Face Hub (create_repo + upload_folder)."""
    from .push import push as push_folder

    folder = run_dir / "dataset" if (run_dir / "dataset" / "README.md").is_file() else run_dir
    res = push_folder(folder, repo_id, token=token, private=private, exist_ok=exist_ok, dry_run=dry_run)
    if dry_run:
        console.print(f"[bold]dry run[/]: would upload {len(res['files'])} files from {folder} to {repo_id}:")
        for f in res["files"]:
            print(f)
    else:
        console.print(f"pushed {len(res['files'])} files to {res.get('url') or repo_id}")


@app.command()
@user_errors
def sandbox(
    file: Annotated[Path, typer.Argument(help="A Python file to run in the code verifier's sandbox.")],
    tests: Annotated[Optional[Path], typer.Option(help="A file of test asserts to run after it.")] = None,
    timeout: Annotated[float, typer.Option(help="Wall-clock limit in seconds.")] = 10.0,
    memory_mb: Annotated[int, typer.Option(help="Address-space limit in MiB.")] = 1024,
) -> None:
    """Run one file exactly as the code verifier does and print the result as JSON."""
    from .verifiers import run_python

    for p in (file, tests):
        if p is not None and not p.is_file():
            raise FusekitError(f"file not found: {p}")
    res = run_python(file.read_text(), tests=tests.read_text() if tests else None, timeout=timeout, memory_mb=memory_mb)
    print(res.to_json())


@app.command()
@user_errors
def plan(
    recipe: Annotated[Optional[Path], typer.Argument(help="Recipe YAML; the embedded default when omitted.")] = None,
    tokens_per_s: Annotated[Optional[list[str]], typer.Option(
        "--tokens-per-s", help="NAME=X: measured output tokens/s of one replica of model NAME (repeatable).")] = None,
    fill: Annotated[Optional[float], typer.Option(
        help="Expected response length as a share of max_tokens (default 0.5).")] = None,
    prompt_tokens: Annotated[Optional[list[str]], typer.Option(
        "--prompt-tokens", help="DOMAIN=N: average prompt length in tokens (repeatable).")] = None,
    rm_tokens_per_s: Annotated[Optional[float], typer.Option(
        help="Reward-model scoring speed: prompt+response tokens/s of one replica.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Run folder whose store gives measured rates (default: the recipe's out).")] = None,
    domains: Annotated[Optional[str], typer.Option(help="Comma-separated domains to plan, e.g. math,code.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many prompts per domain.")] = None,
    models: Annotated[Optional[str], typer.Option(help="Comma-separated source model names from the recipe.")] = None,
    n: Annotated[Optional[int], typer.Option(help="Samples per prompt per model (overrides the recipe).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Max new tokens per response (overrides the recipe).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout.")] = False,
) -> None:
    """Size a build before running it: generations, tokens and GPU-hours per model, from the recipe alone."""
    from . import plan as plan_mod
    from . import recipe as recipe_mod

    r = recipe_mod.load(recipe)
    r = recipe_mod.override(r, domains=_csv(domains), out=out, limit=limit, models=_csv(models), n=n, max_tokens=max_tokens)
    p = plan_mod.plan_recipe(
        r, fill=plan_mod.DEFAULT_FILL if fill is None else fill,
        tokens_per_s=plan_mod.parse_assignments(tokens_per_s, "--tokens-per-s"),
        prompt_tokens=plan_mod.parse_assignments(prompt_tokens, "--prompt-tokens", integer=True),
        rm_tokens_per_s=rm_tokens_per_s,
    )
    if as_json:
        print(json.dumps(p.to_dict(), indent=2, ensure_ascii=False))
        return
    # The plan is this command's output: stdout, wide enough that a redirected table keeps its columns.
    import sys

    stdout = Console(width=None if sys.stdout.isatty() else 200)
    for table in plan_mod.plan_tables(p):
        stdout.print(table)
    for line in plan_mod.plan_notes(p):
        stdout.print(f"• {line}", highlight=False)
