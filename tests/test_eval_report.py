"""evals.report: leaderboard CSVs, PNG charts, the Markdown report and the manifest of a run folder."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from matplotlib import image as mpimg
from rich.console import Console

from evals.report import (
    BenchReport,
    ModelResult,
    render_markdown,
    summary_table,
    write_chart,
    write_leaderboard_csv,
    write_manifest,
    write_run_reports,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHA_Q = "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"
SHA_REF = "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4"
ALPACA_COLUMNS = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                  "discrete_win_rate", "mode", "avg_length", "length_controlled_winrate", "lc_standard_error"]
ARENA_COLUMNS = ["score", "rating_q025", "rating_q975", "CI", "avg_tokens", "date"]


def mt_bench() -> BenchReport:
    def row(model: str, t1: float, t2: float, cats: dict[str, float], **counts: int) -> ModelResult:
        overall = (t1 + t2) / 2
        return ModelResult(model, overall, columns={"first_turn": t1, "second_turn": t2, "average": overall},
                           categories=cats, counts={"questions": 80, "judged": 160, **counts})

    return BenchReport(
        bench="mt-bench", judge="gpt-4-0613", score_name="MT-Bench score (1–10)", score_range=(1, 10),
        csv_index="model", csv_columns=["first_turn", "second_turn", "average"],
        models=[
            row("qwen-0.5b", 5.125, 4.25, {"writing": 6.5, "math": 3.25}, unparsed=2),
            row("fused|model\nv2", 7.5, 6.875, {"writing": 8.0, "math": 6.0}, judge_failed=1),
            row("llama-1b", 6.0, 5.5, {"writing": 7.25, "math": 4.0}),
        ],
        notes=["judge gpt-4-0613 | matches the historical leaderboard"],
        usage={"calls": 480, "cached": 0, "failed": 1, "prompt_tokens": 250_000, "completion_tokens": 60_000,
               "cost_usd": None},
        settings={"generation": {"max_tokens": 1024, "temperature": {"writing": 0.7, "math": 0.0}},
                  "judge": {"temperature": 0, "max_tokens": 2048, "prompt": "single-v1@fastchat-0e6d3e4"}},
        data={"question.jsonl": SHA_Q},
        wall_seconds=754.0,
    )


def arena_v01() -> BenchReport:
    return BenchReport(
        bench="arena-hard-v0.1", judge="gpt-4-1106-preview", score_name="win rate vs gpt-4-0314 (%)",
        score_range=(0, 100), csv_index="model", csv_columns=ARENA_COLUMNS,
        models=[
            ModelResult("gpt-4-0314", 50.0, 50.0, 50.0,
                        columns={"score": 50.0, "rating_q025": 50.0, "rating_q975": 50.0, "CI": "(0, 0)",
                                 "avg_tokens": 423, "date": "2025-01-02"}),
            ModelResult("small", 12.3456, 10.5, 14.25, avg_length=301.5, counts={"judged": 998, "judge_failed": 2},
                        columns={"score": 12.3456, "rating_q025": 10.5, "rating_q975": 14.25, "CI": "(-1.85, +1.9)",
                                 "avg_tokens": 301, "date": "2025-01-02"}),
            ModelResult("big", 81.25, 79.0, 83.5, avg_length=612.0, counts={"judged": 1000},
                        columns={"score": 81.25, "rating_q025": 79.0, "rating_q975": 83.5, "CI": "(-2.25, +2.25)",
                                 "avg_tokens": 612, "date": "2025-01-02"}),
        ],
        usage={"calls": 1000, "cached": 12, "failed": 2, "prompt_tokens": 1_500_000, "completion_tokens": 700_000,
               "cost_usd": 36.0},
        settings={"judge": {"temperature": 0, "max_tokens": 4096, "system_prompt": "Judge.\n```\nfenced\n```"}},
        data={"question.jsonl": "2650242d2883f22b2abd498f273b6a7e02253cce533f5c91a858e1d44aa3002f"},
        wall_seconds=3723.0,
        length_unit="tokens",
    )


def alpaca() -> BenchReport:
    def row(model: str, wr: float, lc: float) -> dict[str, object]:
        return {"win_rate": wr, "standard_error": 1.25, "n_wins": 300, "n_wins_base": 500, "n_draws": 5,
                "n_total": 805, "discrete_win_rate": wr + 0.5, "mode": "community", "avg_length": 1500,
                "length_controlled_winrate": lc, "lc_standard_error": 0.75}

    return BenchReport(
        bench="alpaca-eval", judge="weighted_alpaca_eval_gpt4_turbo", score_name="win rate vs gpt4_1106_preview (%)",
        score_range=(0, 100), csv_index="", csv_columns=ALPACA_COLUMNS,
        models=[ModelResult("a", 20.5, 18.0, 23.0, columns=row("a", 20.5, math.nan)),
                ModelResult("b", 35.75, 33.25, 38.25, columns=row("b", 35.75, math.nan))],
        notes=["LC not computed: instruction difficulty unavailable offline"],
        data={"alpaca_eval_gpt4_baseline.json": SHA_REF},
        length_unit="chars",
    )


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.shape[0] > 0 and img.shape[1] > 0


# --- leaderboard CSV -------------------------------------------------------------------------


def test_csv_header_and_rows_sorted_by_score(tmp_path: Path) -> None:
    path = write_leaderboard_csv(arena_v01(), tmp_path / "leaderboard.csv")
    rows = read_csv(path)
    assert rows[0] == ["model", *ARENA_COLUMNS]
    assert [r[0] for r in rows[1:]] == ["big", "gpt-4-0314", "small"]
    assert rows[1] == ["big", "81.25", "79.0", "83.5", "(-2.25, +2.25)", "612", "2025-01-02"]
    # Full precision, not rounded for display.
    assert rows[3][1] == "12.3456"
    assert "\r" not in path.read_text(encoding="utf-8")


def test_csv_alpaca_index_column_and_nan_cells(tmp_path: Path) -> None:
    rows = read_csv(write_leaderboard_csv(alpaca(), tmp_path / "lb.csv"))
    assert rows[0] == ["", *ALPACA_COLUMNS]
    assert [r[0] for r in rows[1:]] == ["b", "a"]
    lc = ALPACA_COLUMNS.index("length_controlled_winrate") + 1
    assert rows[1][lc] == ""
    assert rows[1][1] == "35.75" and rows[1][ALPACA_COLUMNS.index("mode") + 1] == "community"


def test_csv_model_name_with_pipe_and_newline_round_trips(tmp_path: Path) -> None:
    rows = read_csv(write_leaderboard_csv(mt_bench(), tmp_path / "lb.csv"))
    assert rows[1][0] == "fused|model\nv2"
    assert rows[1][1:] == ["7.5", "6.875", "7.1875"]


def test_csv_missing_score_sorts_last(tmp_path: Path) -> None:
    report = arena_v01()
    report.models.append(ModelResult("broken", math.nan))
    rows = read_csv(write_leaderboard_csv(report, tmp_path / "lb.csv"))
    assert rows[-1][0] == "broken" and rows[-1][1:] == [""] * len(ARENA_COLUMNS)


# --- charts ----------------------------------------------------------------------------------


def test_chart_with_categories(tmp_path: Path) -> None:
    path = write_chart(mt_bench(), tmp_path / "mt.png")
    assert_png(path)
    # The category panel makes the figure taller than the same models without categories.
    plain = mt_bench()
    for m in plain.models:
        m.categories = {}
    assert mpimg.imread(path).shape[0] > mpimg.imread(write_chart(plain, tmp_path / "plain.png")).shape[0]


@pytest.mark.parametrize("n", [1, 3, 12])
def test_chart_without_categories_any_model_count(tmp_path: Path, n: int) -> None:
    report = arena_v01()
    report.models = [ModelResult(f"m{i}", 97.0 - 7 * i, 95.0 - 7 * i, 99.0 - 7 * i) for i in range(n)]
    assert_png(write_chart(report, tmp_path / f"chart{n}.png"))


def test_chart_tolerates_missing_score_odd_ci_and_dollar_names(tmp_path: Path) -> None:
    report = arena_v01()
    report.models += [ModelResult("nan", math.nan), ModelResult("odd ci", 40.0, 45.0, 50.0),
                      ModelResult("broken$^{$name", 30.0)]
    assert_png(write_chart(report, tmp_path / "odd.png"))


def test_chart_leaves_no_open_pyplot_figures(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    write_chart(mt_bench(), tmp_path / "a.png")
    assert len(plt.get_fignums()) == before


# --- Markdown --------------------------------------------------------------------------------


@pytest.fixture
def markdown() -> str:
    manifest = {"command": ["evals", "run", "--bench", "mt-bench", "--judge-model", "gpt-4-0613"],
                "run_id": "20250102-abc", "fusekit_version": "0.1.0"}
    return render_markdown([mt_bench(), arena_v01()], manifest)


def test_markdown_scores_ci_and_order(markdown: str) -> None:
    assert "# Evaluation report" in markdown
    assert "## mt-bench" in markdown and "## arena-hard-v0.1" in markdown
    assert "Judge: **gpt-4-0613**" in markdown
    assert "| big | 81.25 | [79.00, 83.50] | 1,000 | 0 | 612.00 |" in markdown
    assert "| small | 12.35 | [10.50, 14.25] | 998 | 2 | 301.50 |" in markdown
    assert markdown.index("| big |") < markdown.index("| gpt-4-0314 |") < markdown.index("| small |")
    # MT-Bench has no CI: a dash, not a made-up interval.
    assert "| llama-1b | 5.75 | — | 160 | 0 | — |" in markdown
    assert "avg length (tokens)" in markdown


def test_markdown_categories_with_models_as_columns(markdown: str) -> None:
    assert "| Category | fused\\|model v2 | llama-1b | qwen-0.5b |" in markdown
    assert "| writing | 8.00 | 7.25 | 6.50 |" in markdown
    assert "| math | 6.00 | 4.00 | 3.25 |" in markdown
    # The upstream turn-1 / turn-2 / average table.
    assert "| Model | first_turn | second_turn | average |" in markdown
    assert "| qwen-0.5b | 5.12 | 4.25 | 4.69 |" in markdown


def test_markdown_failure_counts_stated_even_when_zero(markdown: str) -> None:
    assert "| Model | questions | judged | answers failed | judge failed | unparsed |" in markdown
    assert "| fused\\|model v2 | 80 | 160 | 0 | 1 | 0 |" in markdown
    assert "| qwen-0.5b | 80 | 160 | 0 | 0 | 2 |" in markdown
    assert "| llama-1b | 80 | 160 | 0 | 0 | 0 |" in markdown
    assert "| big | — | 1,000 | 0 | 0 | 0 |" in markdown


def test_markdown_cost_tokens_time_data_settings(markdown: str) -> None:
    assert "Cost: price unknown for gpt-4-0613." in markdown
    assert "Cost: $36.00." in markdown
    assert "| prompt tokens | 250,000 |" in markdown and "| completion tokens | 700,000 |" in markdown
    assert "Wall time: 12m 34s." in markdown and "Wall time: 1h 02m 03s." in markdown
    assert f"| question.jsonl | {SHA_Q} |" in markdown
    assert "2650242d2883f22b2abd498f273b6a7e02253cce533f5c91a858e1d44aa3002f" in markdown
    assert '"prompt": "single-v1@fastchat-0e6d3e4"' in markdown
    # A system prompt holding a fenced block gets a longer fence around it.
    assert "````json" in markdown


def test_markdown_escapes_pipes_and_newlines(markdown: str) -> None:
    assert "fused\\|model v2" in markdown
    assert "fused|model" not in markdown.replace("fused\\|model", "")
    assert "- judge gpt-4-0613 \\| matches the historical leaderboard" in markdown
    # Every table row has as many unescaped separators as its header row.
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            width = lines[i - 1].replace("\\|", "").count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert lines[j].replace("\\|", "").count("|") == width, lines[j]
                j += 1


def test_markdown_command_line_and_rescore(markdown: str) -> None:
    assert "evals run --bench mt-bench --judge-model gpt-4-0613" in markdown
    assert "evals score RUN_DIR" in markdown
    assert "| run_id | 20250102-abc |" in markdown
    with_dir = render_markdown([alpaca()], {"command": "evals run --bench alpaca-eval", "run_dir": "runs/my run"})
    assert "evals score 'runs/my run'" in with_dir
    assert "LC not computed: instruction difficulty unavailable offline" in with_dir


def test_markdown_redacts_credentials_in_settings() -> None:
    report = alpaca()
    report.settings = {"judge": {"api_key": "abc123", "base_url": "http://127.0.0.1:8000/v1",
                                 "headers": "Authorization: Bearer abcdefghijklmnop"}}
    text = render_markdown([report], {"command": "evals run", "judge_api_key": "abc123"})
    assert "abc123" not in text and "abcdefghijklmnop" not in text
    assert "http://127.0.0.1:8000/v1" in text


# --- manifest and the run folder -------------------------------------------------------------


def test_manifest_round_trips_sorted(tmp_path: Path) -> None:
    manifest = {"zeta": 1, "alpha": {"b": 2, "a": [1, 2.5, None]}, "cost_usd": None, "command": ["evals", "run"],
                "out": tmp_path, "nan": math.nan}
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / "manifest.json"
    text = path.read_text(encoding="utf-8")
    loaded = json.loads(text)
    assert loaded == {"zeta": 1, "alpha": {"b": 2, "a": [1, 2.5, None]}, "cost_usd": None,
                      "command": ["evals", "run"], "out": str(tmp_path), "nan": None}
    assert text == json.dumps(loaded, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert list(loaded) == sorted(loaded)


def test_write_run_reports_layout(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    manifest = {"command": "evals run --bench mt-bench --bench arena-hard-v0.1", "run_dir": str(run_dir)}
    written = write_run_reports(run_dir, [mt_bench(), arena_v01()], manifest)
    assert written == {
        "mt-bench/leaderboard.csv": run_dir / "mt-bench" / "leaderboard.csv",
        "mt-bench/scores.png": run_dir / "mt-bench" / "scores.png",
        "arena-hard-v0.1/leaderboard.csv": run_dir / "arena-hard-v0.1" / "leaderboard.csv",
        "arena-hard-v0.1/scores.png": run_dir / "arena-hard-v0.1" / "scores.png",
        "report.md": run_dir / "report.md",
        "manifest.json": run_dir / "manifest.json",
    }
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    assert_png(written["mt-bench/scores.png"])
    assert read_csv(written["arena-hard-v0.1/leaderboard.csv"])[0][0] == "model"
    assert json.loads(written["manifest.json"].read_text()) == manifest
    assert "## arena-hard-v0.1" in written["report.md"].read_text(encoding="utf-8")
    # Written files get the umask's mode like any other file, not a temp file's 0600.
    probe = tmp_path / "probe"
    probe.write_text("x")
    assert written["report.md"].stat().st_mode & 0o777 == probe.stat().st_mode & 0o777
    # Only the six files: no temporary leftovers from the atomic writes.
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()) == sorted(written)


def test_write_run_reports_rejects_duplicate_and_unsafe_bench(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="once"):
        write_run_reports(tmp_path, [mt_bench(), mt_bench()], {})
    bad = mt_bench()
    bad.bench = "../elsewhere"
    with pytest.raises(ValueError, match="folder"):
        write_run_reports(tmp_path, [bad], {})


def test_write_interrupted_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_leaderboard_csv(alpaca(), tmp_path / "lb.csv")
    before = path.read_bytes()

    def killed(fd: int) -> None:
        raise OSError("killed mid-write")

    monkeypatch.setattr("evals.report.os.fsync", killed)
    with pytest.raises(OSError, match="killed"):
        write_leaderboard_csv(arena_v01(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lb.csv"]


# --- console ---------------------------------------------------------------------------------


def test_summary_table() -> None:
    table = summary_table([mt_bench(), arena_v01()])
    assert [c.header for c in table.columns] == ["Bench", "Model", "Score", "CI", "judged", "failed",
                                                 "Leaderboard-comparable"]
    assert table.row_count == 6
    console = Console(width=120, record=True)
    console.print(table)
    text = console.export_text()
    assert "fused|model v2" in text and "[79.00, 83.50]" in text
    assert text.index("big") < text.index("small")
