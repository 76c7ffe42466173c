"""The ``evals`` command line: ``evals run``, ``evals score``, ``evals benches``, ``evals prompts``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fusedata.cli import user_errors
from fusedata.errors import FusekitError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="AlpacaEval 2, Arena-Hard and MT-Bench with any OpenAI-compatible or in-process judge.")
console = Console(stderr=True)

DEFAULT_MODEL = "embedded:smollm2-135m"


@app.callback()
def main() -> None:
    """evals: answers → judge verdicts → leaderboard scores, resumable and cached."""
    # Our own progress bars say what is happening; per-shard weight-loading bars would drown them.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def model_specs(models: list[str], engine: str, base_url: Optional[str], api_key_env: Optional[str],
                system_prompt: Optional[str], temperature: Optional[float], max_tokens: Optional[int],
                batch_size: int, concurrency: int):
    """``--model REF`` or ``--model NAME=REF``; a REF's last path part names it by default."""
    from .answers import ModelSpec

    if base_url and engine == "transformers":
        engine = "openai"
    specs = []
    for m in models:
        name, _, ref = m.partition("=") if "=" in m and not m.startswith(("/", ".")) else ("", "", m)
        ref = ref.strip()
        if not ref:
            raise FusekitError(f"--model {m!r}: empty model reference")
        if not name:
            name = ref.split(":", 1)[1] if ref.startswith("embedded:") else Path(ref.rstrip("/")).name or ref
        specs.append(ModelSpec(name.strip(), ref, engine, base_url, api_key_env, system_prompt, temperature,
                               max_tokens, batch_size, concurrency))
    return specs


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
@user_errors
def run(
    bench: Annotated[str, typer.Option(help="mt-bench | arena-hard-v0.1 | arena-hard-v2.0 | alpaca-eval")],
    model: Annotated[Optional[list[str]], typer.Option(
        help="Model to evaluate, REF or NAME=REF (repeatable): embedded:smollm2-135m, a folder, a Hub id, "
             "a .gguf, or the served name with --base-url.")] = None,
    judge: Annotated[str, typer.Option(help="Judge: a model reference (in-process), or the served model "
                                            "name with --judge-base-url.")] = DEFAULT_MODEL,
    out: Annotated[Path, typer.Option(help="Run directory (store, reports); reuse it to add models.")] = Path("runs/evals"),
    limit: Annotated[Optional[int], typer.Option(help="Only the first N questions (smoke runs).")] = None,
    categories: Annotated[Optional[str], typer.Option(help="Comma-separated categories to keep.")] = None,
    engine: Annotated[str, typer.Option(help="Engine for the evaluated models: transformers | vllm | openai.")] = "transformers",
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint serving the evaluated model.")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="Env var with the models' endpoint API key.")] = None,
    system_prompt: Annotated[Optional[str], typer.Option(help="System prompt for the evaluated models.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Override the bench's generation temperature.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Override the bench's max new tokens per answer.")] = None,
    batch_size: Annotated[int, typer.Option(help="In-process generation batch size.")] = 8,
    judge_base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint of the judge.")] = None,
    judge_api_key_env: Annotated[Optional[str], typer.Option(help="Env var with the judge's API key.")] = None,
    judge_max_tokens: Annotated[Optional[int], typer.Option(help="Cap the judge's max_tokens (cheap smoke runs; recorded).")] = None,
    judge_prefill: Annotated[str, typer.Option(help="Start every judge reply with this text, e.g. 'Rating: [[' "
                                                    "(in-process judges; small models rarely write the verdict "
                                                    "format unaided; recorded).")] = "",
    concurrency: Annotated[int, typer.Option(help="Concurrent requests per endpoint.")] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds per judge request.")] = 300.0,
    retries: Annotated[int, typer.Option(help="Retries on 429/5xx/timeouts, with exponential backoff.")] = 4,
    mode: Annotated[str, typer.Option(help="MT-Bench grading: single (1–10) or pairwise (vs --baseline-model).")] = "single",
    baseline_model: Annotated[Optional[str], typer.Option(help="MT-Bench pairwise: the model name to compare against.")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Judge prompt name (see `evals prompts`); bench default when omitted.")] = None,
    source: Annotated[str, typer.Option(help="Bench data: auto (installed package, else Hub) | package | hub.")] = "auto",
    data_dir: Annotated[Optional[str], typer.Option(help="Folder laid out like the upstream data (arena-hard-v0.1).")] = None,
    reference: Annotated[str, typer.Option(help="MT-Bench reference answers: gpt-4 | gpt-4-0125-preview (corrected).")] = "gpt-4",
    prices: Annotated[Optional[str], typer.Option(help="YAML price table {model: {input, output}} in $/1M tokens.")] = None,
    lc_inputs: Annotated[Optional[str], typer.Option(help="AlpacaEval LC inputs: 'hub' or a folder with "
                                                          "instruction_difficulty.csv and df_gamed.csv.")] = None,
    style_control: Annotated[bool, typer.Option(help="Arena-Hard: also report style-controlled scores "
                                                     "(length + markdown features).")] = False,
) -> None:
    """Generate answers, judge them and score them; re-run to continue an interrupted run."""
    from .judges.client import JudgeSpec
    from .run import RunConfig
    from .run import run as run_bench

    if limit is not None and limit < 1:
        raise FusekitError("--limit must be at least 1")
    specs = model_specs(model or [DEFAULT_MODEL], engine, base_url, api_key_env, system_prompt, temperature,
                        max_tokens, batch_size, concurrency)
    judge_spec = JudgeSpec(judge, judge_base_url, judge_api_key_env, concurrency, timeout, retries,
                           max_tokens=judge_max_tokens, prefill=judge_prefill)
    cfg = RunConfig(bench, specs, judge_spec, out, limit, _csv(categories), source, data_dir, reference, mode,
                    baseline_model, prompt, prices, lc_inputs, style_control, command=["evals", *sys.argv[1:]])
    run_bench(cfg, console)


@app.command()
@user_errors
def score(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by `evals run`.")],
    judge: Annotated[Optional[str], typer.Option(help="Score this judge's verdicts (default: the latest judge).")] = None,
    prices: Annotated[Optional[str], typer.Option(help="YAML price table {model: {input, output}}.")] = None,
    lc_inputs: Annotated[Optional[str], typer.Option(help="AlpacaEval LC inputs: 'hub' or a folder.")] = None,
    style_control: Annotated[Optional[bool], typer.Option(help="Arena-Hard style control (default: as the run did).")] = None,
) -> None:
    """Recompute every score and report from the stored judgments, without calling any model."""
    from .pricing import load_prices
    from .run import rescore
    from .score import ScoreOptions
    from .store import DB_NAME, EvalStore

    if not (run_dir / DB_NAME).exists():
        raise FusekitError(f"{run_dir} holds no {DB_NAME}; point at a directory written by `evals run`")
    with EvalStore(run_dir) as store:
        rescore(store, ScoreOptions(judge=judge, prices=load_prices(prices), lc_inputs=lc_inputs,
                                    style_control=style_control), console,
                command=["evals", *sys.argv[1:]])


@app.command()
@user_errors
def benches() -> None:
    """The benches, their categories and where their data comes from here."""
    from .benches import bench_categories, load_questions
    from .records import BENCHES

    table = Table("bench", "categories", "questions", "data")
    for b in BENCHES:
        try:
            qs, files = load_questions(b, source="package")
            data = ", ".join(f"{f.name} ({(f.sha256 or '')[:10]})" for f in files)
            n = str(len(qs))
        except FusekitError as e:
            n, data = "–", f"[yellow]{escape(str(e))}[/]"
        table.add_row(b, ", ".join(bench_categories(b)), n, data)
    Console().print(table)


@app.command()
@user_errors
def prompts() -> None:
    """The judge prompts shipped with evals (select one with --prompt)."""
    from .judges.prompts import load_prompt, prompt_names

    table = Table("name", "version", "description")
    for name in prompt_names():
        p = load_prompt(name)
        table.add_row(name, p.version, escape(p.description))
    Console().print(table)
