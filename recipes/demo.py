"""The whole loop on the embedded default, offline: build a WRPO dataset → train → evaluate.

    python recipes/demo.py [--out runs/demo] [--small]      (what `make demo` runs)

1. ``fusedata build recipes/demo/fusedata.yaml``: SmolLM2-135M and Gemma 3 270M answer math, code
   and instruction prompts; verifiers and the SmolLM2 judge score them; the target samples the
   preference prompts; a WRPO dataset folder with its card comes out.
2. ``trainer train recipes/demo/trainer.yaml``: a few WRPO steps on SmolLM2-135M, written as a
   Hugging Face model folder with its card and training curves.
3. ``evals run --bench mt-bench``: the base target and the trained model side by side, judged by
   SmolLM2 in-process; a report, leaderboard CSV and chart.

Each stage is the one-line command it prints, run as its own process, so a user can run any stage
alone on their own models. Every stage resumes: after an interruption the demo continues where it
stopped, and once complete it finishes in seconds. ``--small`` shrinks every stage (the e2e test).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _shown(path: Path) -> Path:
    """Relative to the working directory when below it: the commands print as a user would type them."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


HERE = _shown(Path(__file__).resolve().parent)
BASE = "embedded:smollm2-135m"


def stage_commands(out: Path, small: bool) -> dict[str, list[str]]:
    data, model, evals = out / "data", out / "model", out / "evals"
    build = ["fusedata", "build", str(HERE / "demo" / "fusedata.yaml"), "--out", str(data)]
    # The run folder as data.path stands for the dataset folder the build wrote in it.
    train = ["trainer", "train", str(HERE / "demo" / "trainer.yaml"), f"data.path={data}", "--out", str(model)]
    # The embedded judge is SmolLM2-135M: it rarely writes MT-Bench's "[[rating]]" on its own, so its
    # reply is started with "Rating: [[" and it only has to finish the number (recorded in the report).
    run = ["evals", "run", "--bench", "mt-bench", "--limit", "4", "--model", f"base={BASE}",
           "--model", f"wrpo={model}", "--judge", BASE, "--judge-prefill", "Rating: [[", "--judge-max-tokens", "16",
           "--max-tokens", "128", "--out", str(evals)]
    if small:
        build += ["--limit", "2", "--max-tokens", "48"]
        train += ["train.max_steps=2", "train.grad_accum=1", "output.save_every=1"]
        run[run.index("--limit") + 1] = "2"
        run[run.index("--max-tokens") + 1] = "32"
    return {"build": build, "train": train, "eval": run}


def run_stage(name: str, cmd: list[str], console: Console) -> float:
    """Run one stage's command through this interpreter's package CLIs; exit like it on failure."""
    console.rule(f"[bold]{name}")
    console.print(f"$ {shlex.join(cmd)}", highlight=False)
    t0 = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", cmd[0], *cmd[1:]])
    if code != 0:
        console.print(f"[bold red]{name} stopped with exit code {code}[/]; fix the cause and run the demo again: "
                      "finished work is kept")
        sys.exit(code)
    return time.perf_counter() - t0


def train_command(cmd: list[str], model: Path) -> list[str] | None:
    """None when the model is complete; the command with --resume when a checkpoint exists."""
    summary = model / "summary.json"
    if summary.exists() and (model / "model.safetensors").exists():
        return None
    return cmd + ["--resume"] if any((model / "checkpoints").glob("step-*")) else cmd


def dataset_folder(out: Path, console: Console) -> Path:
    """The folder the build wrote, as its summary records it; stop when it wrote none."""
    dataset = json.loads((out / "data" / "summary.json").read_text()).get("dataset")
    if not dataset:
        console.print("[bold red]the build wrote no dataset[/]; see its output above")
        sys.exit(1)
    return Path(dataset["folder"])


def dataset_counts(folder: Path) -> dict[str, int]:
    """Rows per config, read back with the plain `load_dataset(folder, config)` a user would type."""
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    configs = [p.name for p in (folder / "data").iterdir() if p.is_dir() and any(p.glob("*.parquet"))]
    return {c: load_dataset(str(folder), c, split="train").num_rows for c in sorted(configs)}


def summarise(out: Path, dataset: Path, seconds: dict[str, float], console: Console) -> dict:
    data_summary = json.loads((out / "data" / "summary.json").read_text())
    counts = dataset_counts(dataset)
    responses = {m: int(s["responses"]) for m, s in data_summary["models"].items()}
    train = json.loads((out / "model" / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "model" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    with open(out / "evals" / "mt-bench" / "leaderboard.csv", newline="") as fh:
        board = {r["model"]: r for r in csv.DictReader(fh)}
    summary = {
        "dataset": {"prompts": data_summary["prompts"], "rows": counts, "responses": responses,
                    "verified_correct": {d: s["accuracy"] for d, s in data_summary["scores"].items()
                                         if s.get("accuracy") is not None}},
        "training": {"steps": train["steps"], "examples": train["examples"], "loss_first": rows[0]["loss"],
                     "loss_last": rows[-1]["loss"], "accuracy_last": rows[-1].get("rewards/accuracies"),
                     "margin_last": rows[-1].get("rewards/margins"), "tokens_per_s": train["tokens_per_s"]},
        "mt_bench": {m: {k: _num(r.get(k)) for k in ("score", "turn_1", "turn_2", "n_judged", "n_failed")}
                     for m, r in board.items()},
        "artefacts": {
            "dataset": str(dataset), "dataset card": str(dataset / "README.md"),
            "model": str(out / "model"), "model card": str(out / "model" / "README.md"),
            "training curves": str(out / "model" / "curves.png"), "eval report": str(out / "evals" / "report.md"),
            "leaderboard": str(out / "evals" / "mt-bench" / "leaderboard.csv"),
            "eval chart": str(out / "evals" / "mt-bench" / "scores.png"),
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))

    table = Table(title="fusekit demo: build → train → eval", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    d = summary["dataset"]
    table.add_row("dataset", f"prompts {_kv(d['prompts'])}; responses {_kv(d['responses'])}; verified correct "
                             f"{_kv({k: f'{v:.0%}' for k, v in d['verified_correct'].items()})}; "
                             f"dataset rows {_kv(d['rows'])}")
    t = summary["training"]
    table.add_row("training", f"WRPO {t['steps']} steps on {t['examples']} examples: loss {t['loss_first']:.3f} → "
                              f"{t['loss_last']:.3f}, reward accuracy {_fmt(t['accuracy_last'])}, margin "
                              f"{_fmt(t['margin_last'])}, {t['tokens_per_s']:.0f} tok/s")
    for m, s in summary["mt_bench"].items():
        table.add_row(f"MT-Bench {m}", f"{_fmt(s['score'])} (turn 1 {_fmt(s['turn_1'])}, turn 2 {_fmt(s['turn_2'])}; "
                                       f"{_fmt(s['n_judged'], 0)} judged, {_fmt(s['n_failed'], 0)} unparsed/failed)")
    for name, path in summary["artefacts"].items():
        table.add_row(name, path)
    table.add_row("wall time", ", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds"].items()))
    console.print(table)
    return summary


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _kv(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/demo"), help="where every stage writes")
    ap.add_argument("--small", action="store_true", help="a smaller run of every stage (minutes)")
    args = ap.parse_args()
    console = Console()
    t0 = time.perf_counter()
    cmds = stage_commands(args.out, args.small)
    seconds = {"build": run_stage("1/3 fusedata build", cmds["build"], console)}
    dataset = dataset_folder(args.out, console)
    train = train_command(cmds["train"], args.out / "model")
    if train is None:
        console.rule("[bold]2/3 trainer train")
        console.print(f"{args.out / 'model'} is complete; skipping training (delete it to train again)")
        seconds["train"] = 0.0
    else:
        seconds["train"] = run_stage("2/3 trainer train", train, console)
    seconds["eval"] = run_stage("3/3 evals run", cmds["eval"], console)
    seconds["total"] = time.perf_counter() - t0
    console.rule("[bold]summary")
    summarise(args.out, dataset, seconds, console)


if __name__ == "__main__":
    main()
