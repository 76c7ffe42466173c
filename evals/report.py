"""What an ``evals run`` leaves in its run folder: leaderboard CSVs, charts, a Markdown report, a manifest.

The runner scores each bench into a :class:`BenchReport` (one :class:`ModelResult` per model,
the baseline included where it has a score) and hands the list to :func:`write_run_reports`::

    RUN_DIR/<bench>/leaderboard.csv   upstream column layout (``docs/evals.md``, each bench's leaderboard columns)
    RUN_DIR/<bench>/scores.png        score bars with CIs, per-category bars when there are any
    RUN_DIR/report.md                 every bench: scores, failures, cost, data hashes, settings
    RUN_DIR/manifest.json             what the runner recorded, pretty and with sorted keys

Every file is written to a temporary name in its folder and renamed into place, so a run killed
mid-write leaves the previous file or none, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from cards.render import render_eval_report

from .comparable import Verdict

__all__ = [
    "ModelResult",
    "BenchReport",
    "write_leaderboard_csv",
    "write_chart",
    "render_markdown",
    "write_manifest",
    "write_run_reports",
    "summary_table",
]

# The counts that are failures, summed in the score table and the console summary. The report
# states each per model even when zero (a missing key is a zero): an absent zero reads like
# "not checked".
FAILURE_KEYS: tuple[str, ...] = ("answers_failed", "judge_failed", "unparsed")
COUNT_KEYS: tuple[str, ...] = ("questions", "judged", *FAILURE_KEYS)
USAGE_KEYS: tuple[str, ...] = ("calls", "cached", "failed", "prompt_tokens", "completion_tokens")
MISSING = "—"


@dataclass
class ModelResult:
    """One model's result on one bench.

    ``score`` is the headline: MT-Bench overall (1–10), Arena-Hard win rate against the baseline
    (%), AlpacaEval LC win rate when computed, else the raw win rate (%). ``lower``/``upper``
    bound its CI (None where the bench has none, as MT-Bench). ``columns`` is the model's
    leaderboard CSV row keyed by :attr:`BenchReport.csv_columns`. ``avg_length`` is in characters
    (AlpacaEval) or tokens (Arena-Hard).
    """

    model: str
    score: float
    lower: float | None = None
    upper: float | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    avg_length: float | None = None


@dataclass
class BenchReport:
    """Everything the report says about one bench.

    ``csv_index`` names the first CSV column (``"model"``, or ``""`` for AlpacaEval's unnamed
    pandas index); ``csv_columns`` follow it in upstream order. ``usage`` holds the judge's
    calls, cached, failed, prompt_tokens, completion_tokens and ``cost_usd`` (None when the
    judge's price is unknown); ``data`` maps data file names to their sha256 or Hub id.
    """

    bench: str
    judge: str
    score_name: str
    score_range: tuple[float, float]
    csv_index: str
    csv_columns: list[str]
    models: list[ModelResult]
    notes: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    length_unit: str = ""  # what ModelResult.avg_length counts: "chars", "tokens", or "" when no bench says
    comparable: Verdict | None = None  # leaderboard-comparable, or what differs (evals.comparable)


# ---------------------------------------------------------------------------------------------
# helpers


def _atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder (same file system,
    so ``os.replace`` is atomic), fsynced so the rename never exposes an empty file after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: mkstemp's 0600 mode would survive the rename and
    # leave the report unreadable to the other users the umask allows.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _ranked(models: list[ModelResult]) -> list[ModelResult]:
    """Models by score, best first; models without a finite score last, in input order."""
    return sorted(models, key=lambda m: (0, -float(m.score)) if _finite(m.score) else (1, 0.0))


def _has_ci(m: ModelResult) -> bool:
    return _finite(m.lower) and _finite(m.upper)


def _num(value: Any) -> str:
    """A number for a table: integers as they are, floats to 2 decimals (3 significant digits
    when smaller, so a coefficient of 0.004 does not print as 0.00), missing as a dash."""
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    v = float(value)
    if math.isnan(v):
        return MISSING
    if math.isinf(v):
        return str(v)
    return f"{v:,.2f}" if v == 0 or abs(v) >= 0.01 else f"{v:.3g}"


def _ci(m: ModelResult) -> str:
    return f"[{_num(m.lower)}, {_num(m.upper)}]" if _has_ci(m) else MISSING


def _failures(m: ModelResult) -> int:
    return sum(int(m.counts.get(k, 0)) for k in FAILURE_KEYS)


def _duration(seconds: float) -> str:
    if not _finite(seconds):
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _cost(usage: dict[str, Any], judge: str) -> str:
    cost = usage.get("cost_usd")
    if not _finite(cost):
        return f"price unknown for {judge}"
    return f"${cost:,.2f}" if cost == 0 or cost >= 0.01 else f"${cost:.4f}"


def _avg_length_header(unit: str) -> str:
    return f"avg length ({unit})" if unit else "avg length"


def _categories(models: list[ModelResult]) -> list[str]:
    """Category names in first-seen order over the ranked models."""
    seen: dict[str, None] = {}
    for m in models:
        seen.update(dict.fromkeys(m.categories))
    return list(seen)


def _check_bench_dir(bench: str) -> None:
    # The bench name becomes a folder under the run directory; it must not point elsewhere.
    if not bench or bench in (".", "..") or "/" in bench or "\\" in bench:
        raise ValueError(f"bench name {bench!r} cannot be used as a folder name")


# ---------------------------------------------------------------------------------------------
# leaderboard CSV


def _csv_cell(value: Any) -> str:
    """A CSV cell as pandas ``to_csv`` writes it: full-precision floats, NaN and None empty."""
    if value is None or isinstance(value, bool) or isinstance(value, str):
        return "" if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)  # numpy scalars repr as "np.float64(...)"; a float reprs as its digits
        return "" if math.isnan(v) else repr(v)
    return str(value)


def write_leaderboard_csv(report: BenchReport, path: Path) -> Path:
    """``path`` as the bench's upstream leaderboard CSV: header ``[csv_index] + csv_columns``,
    one row per model (the model name in the index column), best score first."""
    buf = io.StringIO()
    # pandas writes "\n" line ends; csv's default "\r\n" would make the file differ from upstream's.
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([report.csv_index, *report.csv_columns])
    for m in _ranked(report.models):
        writer.writerow([m.model, *(_csv_cell(m.columns.get(c)) for c in report.csv_columns)])
    return _atomic_write(Path(path), buf.getvalue().encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# chart


def _label(name: str, limit: int = 32) -> str:
    """``name`` fit for a chart: one line, at most ``limit`` characters, and "$" escaped, as
    matplotlib would read a name holding two of them as mathtext."""
    name = " ".join(name.split())
    name = name if len(name) <= limit else name[: limit - 1] + "…"
    return name.replace("$", r"\$")


def write_chart(report: BenchReport, path: Path) -> Path:
    """``path`` as a PNG: one horizontal score bar per model (best on top) with its CI as an
    error bar, on the bench's score range; below it, when any model has per-category scores,
    grouped bars per category with one colour per model."""
    # The object-oriented API with an Agg canvas draws without pyplot, so there is no global
    # backend to switch and no figure registry that could leak figures across calls.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = _ranked(report.models)
    lo, hi = (float(x) for x in report.score_range)
    span = hi - lo
    cmap = matplotlib.colormaps["tab10" if len(models) <= 10 else "tab20"]
    # By rank, not by name: two results under one name still get a bar each.
    colours = [cmap(i % cmap.N) for i in range(len(models))]
    cats = _categories(models)

    bars_h = 0.45 * len(models) + 1.4
    cats_h = 3.8 if cats else 0.0
    fig = Figure(figsize=(10, bars_h + cats_h), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    if cats:
        ax, ax_cat = fig.subplots(2, 1, height_ratios=[bars_h, cats_h])
    else:
        ax, ax_cat = fig.subplots(1, 1), None

    # Best model on top: barh draws the first row at the bottom.
    rows = list(reversed(models))
    row_colours = list(reversed(colours))
    y = list(range(len(rows)))
    scores = [float(m.score) if _finite(m.score) else lo for m in rows]
    ax.barh(y, [s - lo for s in scores], left=lo, color=row_colours, height=0.6)
    for yi, m, s in zip(y, rows, scores):
        if _has_ci(m):
            # Clipped at zero: a CI that does not contain its point estimate must not crash the plot.
            err = [[max(0.0, s - float(m.lower))], [max(0.0, float(m.upper) - s)]]
            ax.errorbar([s], [yi], xerr=err, fmt="none", ecolor="black", capsize=3, linewidth=1)
        label = _num(m.score) if _finite(m.score) else "n/a"
        right = float(m.upper) if _has_ci(m) else s
        if right + 0.15 * span <= hi:
            ax.text(right + 0.01 * span, yi, label, va="center", ha="left", fontsize=9)
        else:  # no room right of the bar: write inside it, left of the error bar
            left = float(m.lower) if _has_ci(m) else s
            ax.text(min(left, s) - 0.01 * span, yi, label, va="center", ha="right", fontsize=9, color="white",
                    fontweight="bold")
    ax.set_yticks(y, [_label(m.model) for m in rows])
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(_label(report.score_name, 100))
    ax.set_title(_label(f"{report.bench} — judge {report.judge}", 100))
    ax.grid(axis="x", alpha=0.3)

    if ax_cat is not None:
        width = 0.8 / len(models)
        for i, m in enumerate(models):
            xs = [j + (i - (len(models) - 1) / 2) * width for j, c in enumerate(cats) if _finite(m.categories.get(c))]
            vals = [float(m.categories[c]) - lo for c in cats if _finite(m.categories.get(c))]
            ax_cat.bar(xs, vals, bottom=lo, width=width, color=colours[i], label=_label(m.model))
        ax_cat.set_xticks(range(len(cats)), [_label(c, 20) for c in cats], rotation=30 if len(cats) > 6 else 0,
                          ha="right" if len(cats) > 6 else "center")
        ax_cat.set_ylim(lo, hi)
        ax_cat.set_ylabel("score")
        ax_cat.set_title("per category")
        ax_cat.grid(axis="y", alpha=0.3)
        ax_cat.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return _atomic_write(Path(path), buf.getvalue())


# ---------------------------------------------------------------------------------------------
# Markdown report


def _bench_context(report: BenchReport) -> dict[str, Any]:
    models = _ranked(report.models)
    cats = _categories(models)
    extra_counts = [k for m in models for k in m.counts if k not in COUNT_KEYS]
    count_keys = [*COUNT_KEYS, *dict.fromkeys(extra_counts)]
    usage_keys = [*USAGE_KEYS, *(k for k in report.usage if k not in USAGE_KEYS and k != "cost_usd")]
    return {
        "bench": report.bench,
        "judge": report.judge,
        "comparable": _comparable(report),
        "differs": report.comparable.differs if report.comparable else [],
        "score_name": report.score_name,
        "wall_time": _duration(report.wall_seconds),
        "avg_length_header": _avg_length_header(report.length_unit),
        "rows": [{"model": m.model, "score": _num(m.score), "ci": _ci(m), "judged": _num(m.counts.get("judged")),
                  "failures": _num(_failures(m)), "avg_length": _num(m.avg_length)} for m in models],
        "category_header": ["Category", *(m.model for m in models)],
        "category_rows": [[c, *(_num(m.categories.get(c)) for m in models)] for c in cats],
        "leaderboard_header": ["Model", *report.csv_columns],
        "leaderboard_rows": [[m.model, *(_num(m.columns.get(c)) for c in report.csv_columns)] for m in models],
        "count_header": ["Model", *(k.replace("_", " ") for k in count_keys)],
        "count_rows": [[m.model, *(_num(m.counts.get(k, 0 if k in FAILURE_KEYS else None)) for k in count_keys)]
                       for m in models],
        "notes": list(report.notes),
        "usage": [{"name": k.replace("_", " "), "value": _num(report.usage.get(k))} for k in usage_keys]
        if report.usage else [],
        "cost": _cost(report.usage, report.judge),
        "data": [{"name": k, "value": v} for k, v in report.data.items()],
        "settings": _jsonable(report.settings),
    }


def _comparable(report: BenchReport) -> str:
    if report.comparable is None:
        return "not assessed"
    return "yes" if report.comparable.comparable else "no"


def _command_line(manifest: dict[str, Any]) -> str:
    command = manifest.get("command")
    if isinstance(command, (list, tuple)):
        return shlex.join(str(c) for c in command)
    return str(command) if command else "(not recorded)"


def render_markdown(reports: list[BenchReport], manifest: dict[str, Any]) -> str:
    """The run's Markdown report (``cards/eval.md.j2``).

    ``manifest["command"]`` (a string or an argv list) is shown as the command line and
    ``manifest["run_dir"]``, when present, fills in the re-score command; the manifest's other
    top-level scalar entries (run id, times, versions...) head the report.
    """
    run_dir = manifest.get("run_dir")
    context = {
        "title": "Evaluation report",
        # A dict, not rows, so that the renderer's redaction sees secret-sounding keys.
        "run": {k: _num(v) if isinstance(v, numbers.Real) else str(v) for k, v in sorted(manifest.items())
                if k != "command" and (isinstance(v, (str, numbers.Real)) or v is None)},
        "overview": [
            {"bench": r.bench, "judge": r.judge, "score_name": r.score_name, "models": len(r.models),
             "comparable": _comparable(r),
             "wall_time": _duration(r.wall_seconds),
             "best": next((f"{m.model} ({_num(m.score)})" for m in _ranked(r.models) if _finite(m.score)), MISSING)}
            for r in reports
        ],
        "benches": [_bench_context(r) for r in reports],
        "command": _command_line(manifest),
        "rescore": f"evals score {shlex.quote(str(run_dir)) if run_dir else 'RUN_DIR'}",
    }
    return render_eval_report(context)


# ---------------------------------------------------------------------------------------------
# manifest and the run folder


def _jsonable(obj: Any) -> Any:
    """``obj`` as strict JSON values: NaN and infinities become null (``json`` would write the
    non-standard ``NaN``), paths and other objects their text, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_jsonable(v) for v in items]
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj) if math.isfinite(float(obj)) else None
    return str(obj)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """``run_dir/manifest.json``: indented, keys sorted, strict JSON."""
    text = json.dumps(_jsonable(manifest), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return _atomic_write(Path(run_dir) / "manifest.json", (text + "\n").encode("utf-8"))


def write_run_reports(run_dir: Path, reports: list[BenchReport], manifest: dict[str, Any]) -> dict[str, Path]:
    """Write every file of the run folder; returns {path relative to ``run_dir``: path}.

    The keys are ``"<bench>/leaderboard.csv"``, ``"<bench>/scores.png"`` per bench, then
    ``"report.md"`` and ``"manifest.json"``.
    """
    run_dir = Path(run_dir)
    benches = [r.bench for r in reports]
    for bench in benches:
        _check_bench_dir(bench)
    if len(set(benches)) != len(benches):
        raise ValueError(f"each bench may be reported once; got {benches}")
    written: dict[str, Path] = {}
    for r in reports:
        written[f"{r.bench}/leaderboard.csv"] = write_leaderboard_csv(r, run_dir / r.bench / "leaderboard.csv")
        written[f"{r.bench}/scores.png"] = write_chart(r, run_dir / r.bench / "scores.png")
    written["report.md"] = _atomic_write(run_dir / "report.md", render_markdown(reports, manifest).encode("utf-8"))
    written["manifest.json"] = write_manifest(run_dir, manifest)
    return written


def summary_table(reports: list[BenchReport]) -> Table:
    """The console summary: one row per (bench, model), best first within each bench."""
    table = Table(title="evals run")
    table.add_column("Bench")
    table.add_column("Model")
    for name in ("Score", "CI", "judged", "failed"):
        table.add_column(name, justify="right")
    table.add_column("Leaderboard-comparable")
    for i, r in enumerate(reports):
        if i:
            table.add_section()
        for j, m in enumerate(_ranked(r.models)):
            # Text, not str: a model name with "[...]" would otherwise be read as rich markup.
            table.add_row(Text(r.bench if j == 0 else ""), Text(" ".join(m.model.split())), _num(m.score), _ci(m),
                          _num(m.counts.get("judged")), _num(_failures(m)), _comparable(r) if j == 0 else "")
    return table
