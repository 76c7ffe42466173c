"""The ``fusedata`` command line."""

from __future__ import annotations

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
) -> None:
    """Generate responses from every source model for every prompt (resumable: re-run to continue)."""
    from . import recipe as recipe_mod
    from .generate import generate, summary_table
    from .store import RunStore

    t0 = time.perf_counter()
    r = recipe_mod.load(recipe)
    r = recipe_mod.override(r, domains=_csv(domains), out=out, limit=limit, models=_csv(models), n=n, max_tokens=max_tokens)
    console.print(f"[bold]fusedata build[/] {r.name} → {r.out}  domains: {', '.join(r.domains)}  "
                  f"models: {', '.join(m.name for m in r.models)}")
    with RunStore(r.out) as store:
        store.set_meta("recipe", r.raw)
        rep = generate(r, store, console)
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
    console.print(f"prompts: {dict(rep.prompts)}  wall time {summary['wall_s']:.1f} s"
                  + (f"  [red]{failures} failed requests stored; re-run to retry them[/]" if failures else ""))
