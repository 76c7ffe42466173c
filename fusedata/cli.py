"""The ``fusedata`` command line. The work is done by ``fusedata.pipeline``; this module reads flags.

Every command that takes a recipe also takes dotted ``key=value`` overrides after it
(``fusedata build RECIPE models.0.sampling.n=4 pairs.method=wrpo``), checked exactly like the
file; the flags (``--limit``, ``--model``, ``--method``...) are shortcuts. Bad input of any kind —
a misspelt recipe key, a value off a flag's list, a negative limit — ends as one ``error:`` line
and exit code 2, before any model loads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from .errors import FusekitError

try:  # typer >= 0.23 carries its own copy of click, whose exceptions are not click's
    from typer._click.exceptions import UsageError
except ImportError:
    from click.exceptions import UsageError

if TYPE_CHECKING:
    from .recipe import Recipe, ScoringConfig
    from .store import RunStore

console = Console(stderr=True)


class OneLineErrors(TyperGroup):
    """Usage errors (a value off a flag's list, a missing argument) end like a FusekitError: one
    line and exit code 2, instead of click's usage box."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except UsageError as e:
            console.print(f"[bold red]error:[/] {escape(e.format_message())}", highlight=False)
            raise typer.Exit(2) from None


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fusekit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def version_option(prog: str) -> Callable[[bool], None]:
    """The callback of a CLI's ``--version`` flag."""

    def show(value: bool) -> None:
        if value:
            print(f"{prog} {package_version()}")
            raise typer.Exit()

    return show


app = typer.Typer(cls=OneLineErrors, no_args_is_help=True,
                  help="Build FuseChat-3.0 / WRPO / FuseRL style datasets from several source models.")


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=version_option("fusedata"), is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """fusedata: prompts → responses → scores → pairs → a dataset on the Hub."""


def user_errors(fn):
    """Bad input ends as one red line and exit code 2; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FusekitError as e:
            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: everything finished so far is in the run store; re-run to continue[/]")
            raise typer.Exit(130) from None

    return wrapper


def _csv(values: str | list[str] | None) -> list[str] | None:
    """Comma lists, possibly repeated: ``--model a,b --model c`` → [a, b, c]."""
    if not values:
        return None
    items = [values] if isinstance(values, str) else values
    return [v.strip() for item in items for v in item.split(",") if v.strip()] or None


Overrides = Annotated[Optional[list[str]], typer.Argument(
    help="key=value overrides of the recipe, e.g. models.0.sampling.n=4 pairs.method=wrpo", show_default=False)]
RecipeArg = Annotated[Optional[str], typer.Argument(
    help="Recipe YAML; the embedded default when omitted.", show_default=False)]
Domains = Annotated[Optional[str], typer.Option(
    help="Comma-separated domains to keep: instruction, math, code, zh.", show_default=False)]
Limit = Annotated[Optional[int], typer.Option(help="At most this many prompts per domain (>= 1).", show_default=False)]
Models = Annotated[Optional[list[str]], typer.Option(
    "--model", help="A source model of the recipe, by name (repeatable; a comma list works too).", show_default=False)]
Samples = Annotated[Optional[int], typer.Option(
    help="Samples per prompt per model (overrides the recipe).", show_default=False)]
MaxTokens = Annotated[Optional[int], typer.Option(
    help="Max new tokens per response (overrides the recipe).", show_default=False)]
RunDir = Annotated[Path, typer.Argument(help="A run folder written by `fusedata build`.")]
Method = Literal["fusechat3", "wrpo", "fuserl"]


def _load_recipe(path: str | None, overrides: list[str] | None, **flags: object) -> Recipe:
    """The recipe file (or the default) with its overrides, then the shortcut flags."""
    from . import recipe as recipe_mod

    items = list(overrides or [])
    if path is not None and "=" in path and not Path(path).is_file():  # `fusedata build key=value` on the default
        items.insert(0, path)
        path = None
    return recipe_mod.override(recipe_mod.load(path, items), **flags)


@app.command()
@user_errors
def build(
    recipe: RecipeArg = None,
    overrides: Overrides = None,
    domains: Domains = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (holds the run store).",
                                               show_default=False)] = None,
    limit: Limit = None,
    model: Models = None,
    n: Samples = None,
    max_tokens: MaxTokens = None,
    score: Annotated[bool, typer.Option(help="Score the responses after generating them.")] = True,
    pairs: Annotated[bool, typer.Option(help="Build the dataset (pairs, folder, card) after scoring.")] = True,
    ray: Annotated[Optional[str], typer.Option(
        help="Run generation and scoring as Ray Data pipelines: 'local' starts a Ray instance here, 'auto' joins "
             "the running cluster, or a ray://HOST:PORT address. Replicas and resources come from the recipe's "
             "`extra.ray` (models) and `scoring.<scorer>.ray` blocks.", show_default=False)] = None,
    ray_cpus: Annotated[Optional[int], typer.Option(help="CPUs of a --ray local instance (default: all).",
                                                    show_default=False)] = None,
    check: Annotated[bool, typer.Option("--check", help="Only run the preflight (models resolve, endpoints list "
                                        "their model, vLLM imports, GPUs and disk suffice) and exit.")] = False,
) -> None:
    """Generate, score and pair: the whole recipe (resumable: re-run to continue)."""
    from .cluster import make_executor
    from .pipeline import build as run_build

    r = _load_recipe(recipe, overrides, domains=_csv(domains), out=out, limit=limit, models=_csv(model), n=n,
                     max_tokens=max_tokens)
    run_preflight(r, cluster=ray is not None, verbose=check)
    if check:
        return
    console.print(f"[bold]fusedata build[/] {r.name} → {r.out}  domains: {', '.join(r.domains)}  "
                  f"models: {', '.join(m.name for m in r.models)}")
    with contextlib.closing(make_executor(ray, ray_cpus)) as executor:
        result = run_build(r, console, executor=executor, score=score, pairs=pairs)
    if result.reward_error:
        raise typer.Exit(2)


def run_preflight(recipe: Recipe, *, cluster: bool, verbose: bool) -> None:
    """Exit 2 with the table of every problem before any model loads; a clean preflight says so only
    when asked (``--check``)."""
    from . import preflight

    problems = preflight.preflight(recipe, cluster=cluster)
    if problems:
        # Wide when redirected, so that a problem's text stays on one line in a log.
        Console(stderr=True, width=None if sys.stderr.isatty() else 200).print(preflight.problem_table(problems))
    elif verbose:
        console.print(f"preflight: {len(preflight.targets(recipe))} model(s) checked, no problems")
    if preflight.failures(problems):
        raise typer.Exit(2)


def _open_run(run_dir: Path) -> RunStore:
    from .store import DB_NAME, RunStore

    if not (run_dir / DB_NAME).is_file():
        raise FusekitError(f"{run_dir} is not a fusedata run folder (no {DB_NAME})")
    return RunStore(run_dir)


def _run_recipe(store: RunStore, path: Optional[Path], overrides: list[str]) -> Recipe:
    """``--recipe FILE``, else the recipe the run was built with; overrides applied, checked whole."""
    from . import recipe as recipe_mod
    from .config import apply_overrides

    raw = recipe_mod.load_raw(path) if path else store.get_meta("recipe")
    if raw is None:
        raise FusekitError(f"{store.folder} has no stored recipe; pass --recipe")
    return recipe_mod.parse(apply_overrides(raw, overrides), origin=str(path or store.folder))


def _run_scoring(store: RunStore, path: Optional[Path], overrides: list[str]) -> ScoringConfig:
    from . import recipe as recipe_mod
    from .config import apply_overrides

    if path is None and store.get_meta("recipe") is None:
        # A store not written by `fusedata build`: the default scoring block.
        return recipe_mod.parse_scoring(apply_overrides({}, overrides).get("scoring"))
    return _run_recipe(store, path, overrides).scoring


@app.command()
@user_errors
def score(
    run_dir: RunDir,
    overrides: Overrides = None,
    recipe: Annotated[Optional[Path], typer.Option(help="Take the scoring block from this recipe instead of the run's.",
                                                   show_default=False)] = None,
) -> None:
    """Score a run's responses (verifiers, reward model); only what is missing is scored."""
    from .pipeline import score_stage, scoring_summary, update_summary

    with _open_run(run_dir) as store:
        outcome = score_stage(store, _run_scoring(store, recipe, list(overrides or [])), console)
        update_summary(store.folder, scoring_summary(outcome))
    if outcome.report.reward_error:
        raise typer.Exit(2)


@app.command("pairs")
@user_errors
def pairs_cmd(
    run_dir: RunDir,
    overrides: Overrides = None,
    method: Annotated[Optional[Method], typer.Option(help="The pair method (default: the recipe's).",
                                                     show_default=False)] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="Use this recipe instead of the run's.",
                                                   show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Dataset folder (default: one in RUN_DIR "
                                                "named RECIPE-METHOD-HASH).", show_default=False)] = None,
) -> None:
    """Turn a scored run into a dataset folder (parquet configs + card); WRPO samples its target first."""
    from .pipeline import dataset_stages, update_summary

    items = [*(overrides or []), *([f"pairs.method={method}"] if method else [])]
    with _open_run(run_dir) as store:
        dataset = dataset_stages(store, _run_recipe(store, recipe, items), console, out=out)
        sections = {"models": store.response_stats()} | ({"dataset": dataset.to_dict()} if out is None else {})
        update_summary(store.folder, sections)


@app.command("inspect")
@user_errors
def inspect_cmd(
    run_dir: RunDir,
    examples: Annotated[int, typer.Option(help="How many example prompts to show.")] = 2,
) -> None:
    """Counts, per-source win shares, reward histograms (and a PNG), a few examples."""
    from rich.table import Table

    from .inspect import examples as pick_examples
    from .inspect import inspect_run, plot_inspect

    if examples < 0:
        raise FusekitError(f"--examples must be >= 0, got {examples}")
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
    run_dir: Annotated[Path, typer.Argument(help="A run folder (its dataset folder is pushed) or a dataset folder.")],
    repo_id: Annotated[str, typer.Argument(help="Hub dataset repo, e.g. my-org/fusion-mix.")],
    token: Annotated[Optional[str], typer.Option(help="Hub token (default: HF_TOKEN or the stored login).",
                                                 show_default=False)] = None,
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    exist_ok: Annotated[bool, typer.Option(help="Update the repo if it already exists.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List exactly what would be uploaded; send nothing.")] = False,
) -> None:
    """Publish a dataset folder to the Hugging Face Hub (create_repo + upload_folder)."""
    from .dataset import run_dataset_folder
    from .push import push as push_folder

    folder = run_dataset_folder(run_dir) or run_dir
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
    tests: Annotated[Optional[Path], typer.Option(help="A file of test asserts to run after it.",
                                                  show_default=False)] = None,
    timeout: Annotated[float, typer.Option(help="Wall-clock limit in seconds (> 0).")] = 10.0,
    memory_mb: Annotated[int, typer.Option(help="Address-space limit in MiB (>= 1).")] = 1024,
) -> None:
    """Run one file exactly as the code verifier does and print the result as JSON."""
    from .verifiers import run_python

    if not (timeout > 0 and math.isfinite(timeout)):
        raise FusekitError(f"--timeout must be a positive number of seconds, got {timeout}")
    if memory_mb < 1:
        raise FusekitError(f"--memory-mb must be >= 1, got {memory_mb}")
    for p in (file, tests):
        if p is not None and not p.is_file():
            raise FusekitError(f"file not found: {p}")
    res = run_python(file.read_text(), tests=tests.read_text() if tests else None, timeout=timeout, memory_mb=memory_mb)
    print(res.to_json())


@app.command()
@user_errors
def plan(
    recipe: RecipeArg = None,
    overrides: Overrides = None,
    tokens_per_s: Annotated[Optional[list[str]], typer.Option(
        "--tokens-per-s", help="NAME=X: measured output tokens/s of one replica of model NAME (repeatable).",
        show_default=False)] = None,
    fill: Annotated[Optional[float], typer.Option(
        help="Expected response length as a share of max_tokens (default 0.5).", show_default=False)] = None,
    prompt_tokens: Annotated[Optional[list[str]], typer.Option(
        "--prompt-tokens", help="DOMAIN=N: average prompt length in tokens (repeatable).", show_default=False)] = None,
    rm_tokens_per_s: Annotated[Optional[float], typer.Option(
        help="Reward-model scoring speed: prompt+response tokens/s of one replica.", show_default=False)] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder whose store gives measured rates "
                                               "(default: the recipe's out).", show_default=False)] = None,
    domains: Domains = None,
    limit: Limit = None,
    model: Models = None,
    n: Samples = None,
    max_tokens: MaxTokens = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout.")] = False,
) -> None:
    """Size a build before running it: generations, tokens and GPU-hours per model, from the recipe alone."""
    from . import plan as plan_mod

    r = _load_recipe(recipe, overrides, domains=_csv(domains), out=out, limit=limit, models=_csv(model), n=n,
                     max_tokens=max_tokens)
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
    stdout = Console(width=None if sys.stdout.isatty() else 200)
    for table in plan_mod.plan_tables(p):
        stdout.print(table)
    for line in plan_mod.plan_notes(p):
        stdout.print(f"• {line}", highlight=False)
