"""The ``evals`` command line: ``evals run [RECIPE] [key=value ...]``, ``evals score``, ``evals benches``,
``evals prompts``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fusedata.cli import OneLineErrors, user_errors, version_option
from fusedata.engines import ENGINES
from fusedata.errors import FusekitError

from .benches import SOURCES
from .benches.mt_bench import REFERENCES
from .records import BENCH_ALIASES, BENCHES, MODES
from .score import PARSERS

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True,
                  help="AlpacaEval 2, Arena-Hard and MT-Bench with any OpenAI-compatible or in-process judge.")
console = Console(stderr=True)


def _choices(name: str, values: Sequence[str]) -> Any:
    """An Enum of ``values``: typer lists them in --help and offers them to shell completion."""
    return Enum(name, {v: v for v in values}, type=str)


BenchName = _choices("BenchName", [*BENCHES, *BENCH_ALIASES])
ParserName = _choices("ParserName", PARSERS)
EngineName = _choices("EngineName", ENGINES)
ModeName = _choices("ModeName", MODES)
SourceName = _choices("SourceName", SOURCES)
ReferenceName = _choices("ReferenceName", REFERENCES)


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=version_option("evals"), is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """evals: answers → judge verdicts → leaderboard scores, resumable and cached."""
    # Our own progress bars say what is happening; per-shard weight-loading bars would drown them.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The flags that were given, as plain recipe values."""
    plain = {Enum: lambda v: v.value, Path: str}
    return {k: next((f(v) for t, f in plain.items() if isinstance(v, t)), v) for k, v in values.items()
            if v is not None}


def _opt(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text)


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
@user_errors
def run(
    recipe: Annotated[Optional[str], typer.Argument(
        metavar="RECIPE", help="Recipe YAML (e.g. recipes/demo/evals.yaml); flags and overrides apply on top.")
    ] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(
        metavar="KEY=VALUE", help="Dotted overrides, e.g. limit=8 judge.model=gpt-4.1 models.0.max_tokens=64")
    ] = None,
    bench: Annotated[Optional[BenchName], _opt(
        f"= bench; arena-hard means {BENCH_ALIASES['arena-hard']}, upstream's current version.")] = None,
    model: Annotated[Optional[list[str]], _opt(
        "= models: REF or NAME=REF, repeatable: embedded:smollm2-135m (default), a folder, a Hub id, a .gguf, "
        "or the served name with --base-url.")] = None,
    judge: Annotated[Optional[str], _opt(
        "= judge.model: 'upstream' (the bench's leaderboard judge, or its successor once retired), an API model "
        "(gpt-4.1: sent to OPENAI_BASE_URL, else the OpenAI API with OPENAI_API_KEY), a served name with "
        "--judge-base-url, or a model loaded in-process. Default: upstream when OPENAI_API_KEY or OPENAI_BASE_URL "
        "is set, else embedded:smollm2-135m (smoke runs, not leaderboard-comparable).")] = None,
    out: Annotated[Optional[Path], _opt(
        "= out: the run directory (store, reports; default runs/evals); reuse it to add models.", "--out", "-o")
    ] = None,
    limit: Annotated[Optional[int], _opt("= limit: only the first N questions (smoke runs).")] = None,
    categories: Annotated[Optional[str], _opt("= categories, comma-separated.")] = None,
    engine: Annotated[Optional[EngineName], _opt(
        "= models.*.engine (default: openai with --base-url, else transformers).")] = None,
    base_url: Annotated[Optional[str], _opt("= models.*.base_url: the endpoint serving the models.")] = None,
    api_key_env: Annotated[Optional[str], _opt("= models.*.api_key_env for served models.")] = None,
    system_prompt: Annotated[Optional[str], _opt("= models.*.system_prompt.")] = None,
    temperature: Annotated[Optional[float], _opt("= models.*.temperature: override the bench's.")] = None,
    max_tokens: Annotated[Optional[int], _opt("= models.*.max_tokens: override the bench's.")] = None,
    batch_size: Annotated[Optional[int], _opt("= models.*.batch_size (in-process; default 8).")] = None,
    judge_base_url: Annotated[Optional[str], _opt("= judge.base_url: the judge's endpoint.")] = None,
    judge_api_key_env: Annotated[Optional[str], _opt("= judge.api_key_env.")] = None,
    judge_max_tokens: Annotated[Optional[int], _opt(
        "= judge.max_tokens: cap the judge's budget (cheap smoke runs; recorded).")] = None,
    judge_prefill: Annotated[Optional[str], _opt(
        "= judge.prefill: start every judge reply with this, e.g. 'Rating: [[' (in-process judges; recorded).")
    ] = None,
    concurrency: Annotated[Optional[int], _opt(
        "= judge.concurrency and that of every served model (default 8).")] = None,
    timeout: Annotated[Optional[float], _opt("= judge.timeout: seconds per judge request (default 300).")] = None,
    retries: Annotated[Optional[int], _opt("= judge.max_retries on 429/5xx/timeouts (default 4).")] = None,
    mode: Annotated[Optional[ModeName], _opt(
        "= mode: MT-Bench grading, single (1–10, default) or pairwise against --baseline-model.")] = None,
    baseline_model: Annotated[Optional[str], _opt("= baseline_model: the MT-Bench pairwise opponent.")] = None,
    prompt: Annotated[Optional[str], _opt(
        "= prompt: upstream (default: upstream's own judge prompts, read at run time and pinned), fusekit-1 "
        "(fusekit's paraphrases, for offline smoke runs), or one prompt's name (`evals prompts`).")] = None,
    parser: Annotated[Optional[ParserName], _opt(
        "= parser: upstream (default: FastChat's, arena-hard-auto's and alpaca_eval's exact rules) or lenient.")
    ] = None,
    source: Annotated[Optional[SourceName], _opt(
        "= source of the bench data (default auto: the installed package, else the Hub).")] = None,
    data_dir: Annotated[Optional[str], _opt("= data_dir: a folder laid out like upstream's data.")] = None,
    reference: Annotated[Optional[ReferenceName], _opt("= reference: MT-Bench reference answers (default gpt-4).")
    ] = None,
    prices: Annotated[Optional[str], _opt("= prices: YAML {model: {input, output}} in $/1M tokens.")] = None,
    lc_inputs: Annotated[Optional[str], _opt("= lc_inputs: AlpacaEval LC's df_gamed.csv, 'hub' or a folder holding it.")
                         ] = None,
    style_control: Annotated[Optional[bool], _opt("= style_control: Arena-Hard style-controlled scores too.")] = None,
) -> None:
    """Generate answers, judge them and score them; re-run to continue an interrupted run."""
    from .config import load
    from .run import run as run_bench

    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        recipe, overrides = None, [recipe, *(overrides or [])]
    flags = _given({  # recipe keys, dotted for the judge block; model_flags apply to every model
        "bench": bench, "models": model, "out": out, "limit": limit, "categories": _csv(categories),
        "mode": mode, "baseline_model": baseline_model, "prompt": prompt, "parser": parser, "source": source,
        "data_dir": data_dir, "reference": reference, "prices": prices, "lc_inputs": lc_inputs,
        "style_control": style_control,
        "judge.model": judge, "judge.base_url": judge_base_url, "judge.api_key_env": judge_api_key_env,
        "judge.max_tokens": judge_max_tokens, "judge.prefill": judge_prefill, "judge.concurrency": concurrency,
        "judge.timeout": timeout, "judge.max_retries": retries,
    })
    model_flags = _given({"engine": engine, "base_url": base_url, "api_key_env": api_key_env,
                          "system_prompt": system_prompt, "temperature": temperature, "max_tokens": max_tokens,
                          "batch_size": batch_size, "concurrency": concurrency})
    cfg = load(recipe, overrides or [], flags, model_flags)
    run_bench(cfg, console, command=["evals", *sys.argv[1:]])


@app.command()
@user_errors
def score(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by `evals run`.")],
    judge: Annotated[Optional[str], _opt("Score this judge's verdicts (default: the latest judge).")] = None,
    prices: Annotated[Optional[str], _opt("YAML price table {model: {input, output}}.")] = None,
    lc_inputs: Annotated[Optional[str], _opt("AlpacaEval LC inputs: 'hub' or a folder.")] = None,
    style_control: Annotated[Optional[bool], _opt("Arena-Hard style control (default: as the run did).")] = None,
    parser: Annotated[Optional[ParserName], _opt("Verdict parser (default: as the run did).")] = None,
) -> None:
    """Recompute every score and report from the stored judgments, without calling any model."""
    from .pricing import load_prices
    from .run import rescore
    from .score import ScoreOptions, check_lc_inputs
    from .store import DB_NAME, EvalStore

    check_lc_inputs(lc_inputs)
    if not (run_dir / DB_NAME).exists():
        raise FusekitError(f"{run_dir} holds no {DB_NAME}; point at a directory written by `evals run`")
    with EvalStore(run_dir) as store:
        rescore(store, ScoreOptions(judge=judge, prices=load_prices(prices), lc_inputs=lc_inputs,
                                    style_control=style_control, parser=parser.value if parser else None), console,
                command=["evals", *sys.argv[1:]])


@app.command()
@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by `evals run`.")],
    out: Annotated[Path, _opt("Folder to write the upstream-layout files into.", "--out", "-o")],
    bench: Annotated[Optional[BenchName], _opt("Only this bench (default: every judged bench).")] = None,
    judge: Annotated[Optional[str], _opt("Export this judge's verdicts (default: the run's judge).")] = None,
    data_dir: Annotated[Optional[str], _opt(
        "Where AlpacaEval's evaluation set is read when it is not installed (its row order goes into the "
        "annotations).")] = None,
) -> None:
    """Write answers and judgments in AlpacaEval's, Arena-Hard-Auto's and FastChat's own layouts, so the
    upstream tools can re-score them."""
    from .export import export_files, summary_table
    from .records import BENCH_ALIASES

    name = BENCH_ALIASES.get(bench.value, bench.value) if bench else None
    files = export_files(run_dir, out, name, judge, data_dir=data_dir)
    Console().print(summary_table(files, out))


@app.command()
@user_errors
def benches() -> None:
    """The benches, their categories and where their data comes from here."""
    from .benches import bench_categories, load_questions
    from .comparable import JUDGES

    table = Table("bench", "categories", "questions", "judge", "data")
    for b in BENCHES:
        try:
            qs, files = load_questions(b, source="package")
            data = ", ".join(f"{f.name} ({(f.sha256 or '')[:10]})" for f in files)
            n = str(len(qs))
        except FusekitError as e:
            n, data = "–", f"[yellow]{escape(str(e))}[/]"
        up = JUDGES[b]
        judge = up.model + (f" (retired; upstream → {up.successor})" if up.retired else "")
        table.add_row(b, ", ".join(bench_categories(b)), n, judge, data)
    Console().print(table)


@app.command()
@user_errors
def prompts(
    data_dir: Annotated[Optional[str], _opt("A checkout to read upstream's prompts from (as `evals run`).")] = None,
) -> None:
    """The judge prompts: where upstream's are read from here, and fusekit's paraphrases (--prompt fusekit-1)."""
    from .judges.prompts import load_prompt, prompt_names, resolve

    table = Table("name", "upstream (default)", "fusekit-1 paraphrase")
    for name in prompt_names():
        try:
            _, source = resolve(name, "upstream", data_dir)
            upstream = f"{source['version']}  {source['path']}"
        except FusekitError as e:
            upstream = f"[yellow]{escape(str(e))}[/]"
        table.add_row(name, upstream, escape(load_prompt(name).description))
    Console().print(table)
