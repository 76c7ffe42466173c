"""The ``trainer`` command line: ``trainer train RECIPE [key=value ...] [--resume]``.

Multi-process: ``torchrun --nproc-per-node N -m trainer train RECIPE`` (add ``--nnodes``, ``--node-rank``
and ``--master-addr``/``--master-port`` across machines), or ``accelerate launch --config_file
trainer/launch/….yaml -m trainer train RECIPE``; the loop reads the launcher's environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from fusedata.cli import OneLineErrors, user_errors, version_option

from . import config as config_mod

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True,
                  help="Train a target model with SFT, FuseSFT, DPO, SimPO, WRPO, FusePO or RLOO.")
console = Console(stderr=True)


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=version_option("trainer"), is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """trainer: dataset → fused target model (Hugging Face folder + card + curves)."""


@app.command()
@user_errors
def train(
    recipe: Annotated[str, typer.Argument(
        help="recipe YAML, or the name of a packaged recipe (see `trainer recipes`)")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="dotted overrides, e.g. loss.beta=0.1 train.max_steps=20 data.path=runs/demo/data/DATASET")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="= output.dir", show_default=False)] = None,
    # The option's name before --out; kept so that existing launch scripts still work.
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", hidden=True)] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="= data.path")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="= train.max_steps")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the latest checkpoint in output.dir")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="validate the recipe and data, print the plan, stop")] = False,
) -> None:
    """Train as RECIPE says; writes a Hugging Face model folder with a card, metrics.jsonl and curves.png."""
    extra = list(overrides or [])
    if out is not None or output_dir is not None:
        extra.append(f"output.dir={out or output_dir}")
    if data is not None:
        extra.append(f"data.path={data}")
    if max_steps is not None:
        extra.append(f"train.max_steps={max_steps}")
    cfg = config_mod.load(recipe, extra)
    if dry_run:
        from fusedata.models import load_tokenizer

        from .loop import prepare_examples

        examples, report = prepare_examples(cfg, load_tokenizer(cfg.model.name))
        console.print_json(data={"config": cfg.to_dict(), "examples": len(examples), "data": report})
        return
    from .loop import train as run_training

    run_training(cfg, resume=resume, console=console)


@app.command()
def recipes() -> None:
    """List the packaged recipes."""
    t = Table(title="trainer recipes")
    paths = sorted(config_mod.RECIPES_DIR.glob("*.yaml"))
    # Names must survive a pipe or a narrow terminal: they are what users type.
    t.add_column("name", no_wrap=True, min_width=max((len(p.stem) for p in paths), default=4))
    t.add_column("method", no_wrap=True)
    t.add_column("model", overflow="fold")
    t.add_column("description", ratio=1)
    for path in paths:
        text = path.read_text()
        raw = yaml.safe_load(text) or {}
        first = text.splitlines()[0].lstrip("# ").strip() if text.startswith("#") else ""
        t.add_row(path.stem, str(raw.get("method", "")), str((raw.get("model") or {}).get("name", "")), first)
    Console().print(t)


if __name__ == "__main__":
    app()
