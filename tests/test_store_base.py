"""The store base under both stores: what a file must be to open, schema versions, old stores upgraded."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.records import Answer
from evals.store import EvalStore
from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply, JudgeRequest
from fusedata.records import Response, Score
from fusedata.store import RunStore


def _text_file(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("prompt_id,model\np1,m\n" * 50)
    return path


@pytest.mark.parametrize("store_cls", [RunStore, EvalStore])
def test_text_file_is_a_clear_error_and_is_left_alone(tmp_path, store_cls):
    path = _text_file(tmp_path, store_cls.FILENAME)
    before = path.read_bytes()
    with pytest.raises(FusekitError, match=r"not readable as .*file is not a database"):
        store_cls(tmp_path)
    assert path.read_bytes() == before  # nothing written into a file that is not ours


def test_store_of_the_other_kind_is_named(tmp_path):
    with EvalStore(tmp_path / "evals") as s:
        s.set_meta("k", 1)
    with RunStore(tmp_path / "run") as s:
        s.set_meta("k", 1)
    (tmp_path / "swap").mkdir()
    shutil.copy(tmp_path / "evals" / "evals.sqlite", tmp_path / "swap" / "run.sqlite")
    shutil.copy(tmp_path / "run" / "run.sqlite", tmp_path / "swap" / "evals.sqlite")
    with pytest.raises(FusekitError, match=r"run\.sqlite is an evals store, not a fusedata run store"):
        RunStore(tmp_path / "swap")
    with pytest.raises(FusekitError, match=r"evals\.sqlite is a fusedata run store, not an evals store"):
        EvalStore(tmp_path / "swap")


def test_foreign_sqlite_files_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    with sqlite3.connect(tmp_path / "a" / "run.sqlite") as c:
        c.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(FusekitError, match=r"is not a fusedata run store \(its tables: photos\)"):
        RunStore(tmp_path / "a")
    (tmp_path / "b").mkdir()
    with sqlite3.connect(tmp_path / "b" / "run.sqlite") as c:
        c.execute("PRAGMA application_id = 1234")
    with pytest.raises(FusekitError, match=r"another program's SQLite file \(application id 0x4d2\)"):
        RunStore(tmp_path / "b")


def test_newer_schema_is_refused(tmp_path):
    with RunStore(tmp_path) as s:
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == RunStore.VERSION == 1
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with sqlite3.connect(tmp_path / "run.sqlite") as c:
        c.execute("PRAGMA user_version = 2")
    with pytest.raises(FusekitError, match=r"schema version 2, newer than this fusekit reads \(1\)"):
        RunStore(tmp_path)


def test_damage_found_at_a_later_query_is_a_clear_error(tmp_path):
    with RunStore(tmp_path) as s:
        s.put_responses([Response(f"p{i}", "m", "h", 0, "x" * 2000, "stop", 1, 1) for i in range(200)])
    path = tmp_path / "run.sqlite"
    # Keep the header and the schema pages, overwrite the table pages with garbage.
    data = bytearray(path.read_bytes())
    data[5 * 4096:] = b"\xff" * (len(data) - 5 * 4096)
    path.write_bytes(bytes(data))
    with RunStore(tmp_path) as s, pytest.raises(FusekitError, match=r"not readable as a fusedata run store"):
        s.responses()


def _old_run_store(folder: Path) -> None:
    """A run store as fusekit wrote it before the settings hash was renamed (schema 0, unmarked)."""
    folder.mkdir()
    with sqlite3.connect(folder / "run.sqlite") as c:
        c.executescript("""
            CREATE TABLE prompts (id TEXT PRIMARY KEY, domain TEXT NOT NULL, source TEXT NOT NULL,
              messages TEXT NOT NULL, gold TEXT, tests TEXT, meta TEXT NOT NULL);
            CREATE TABLE responses (prompt_id TEXT NOT NULL, model TEXT NOT NULL, params_hash TEXT NOT NULL,
              sample_idx INTEGER NOT NULL, text TEXT, finish_reason TEXT, n_input_tokens INTEGER NOT NULL,
              n_output_tokens INTEGER NOT NULL, error TEXT, seconds REAL NOT NULL,
              attempts INTEGER NOT NULL DEFAULT 1, updated REAL NOT NULL,
              PRIMARY KEY (prompt_id, model, params_hash, sample_idx));
            CREATE TABLE scores (prompt_id TEXT NOT NULL, model TEXT NOT NULL, params_hash TEXT NOT NULL,
              sample_idx INTEGER NOT NULL, scorer TEXT NOT NULL, value REAL, label TEXT, detail TEXT NOT NULL,
              error TEXT, updated REAL NOT NULL, PRIMARY KEY (prompt_id, model, params_hash, sample_idx, scorer));
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO responses VALUES ('p1', 'm', 'h', 0, 'four', 'stop', 5, 1, NULL, 0.5, 1, 0);
            INSERT INTO responses VALUES ('p1', 'm', 'h', 1, NULL, NULL, 0, 0, 'HTTP 503', 0.1, 2, 0);
            INSERT INTO scores VALUES ('p1', 'm', 'h', 0, 'math', 1.0, 'correct', '{}', NULL, 0);
            INSERT INTO meta VALUES ('recipe', '{"name":"old"}');
        """)


def test_old_run_store_is_migrated_and_resumes(tmp_path):
    folder = tmp_path / "old"
    _old_run_store(folder)
    with RunStore(folder) as s:
        assert s.get_meta("recipe") == {"name": "old"}
        assert s.done_keys("m", "h") == {("p1", 0)}
        (failed, attempts), = s.failures()
        assert failed.sample_idx == 1 and failed.error == "HTTP 503" and attempts == 2
        assert s.scored_keys("math") == {("p1", "m", "h", 0)}
        # The rerun retries the failure; the old success stays as it was.
        s.put_responses([Response("p1", "m", "h", 1, "retried", "stop", 5, 2),
                         Response("p1", "m", "h", 0, "must not replace", "stop", 5, 3)])
        assert {r.sample_idx: r.text for r in s.responses()} == {0: "four", 1: "retried"}
        s.put_scores([Score("p1", "m", "h", 1, "math", 0.0, "wrong")])
        assert s.scored_keys("math") == {("p1", "m", "h", 0), ("p1", "m", "h", 1)}
    with sqlite3.connect(folder / "run.sqlite") as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 1
        assert c.execute("PRAGMA application_id").fetchone()[0] == RunStore.APPLICATION_ID
        assert "params_hash" not in {r[1] for r in c.execute("PRAGMA table_info(responses)")}
        assert c.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 2
    with RunStore(folder) as s:  # a second open finds the current schema and changes nothing
        assert len(s.responses()) == 2


def test_unmarked_evals_store_is_marked_and_kept(tmp_path):
    req = JudgeRequest([{"role": "user", "content": "rate"}], "single-v1", "fusekit-1", 0.0, 64)
    with EvalStore(tmp_path) as s:
        s.put_answers([Answer("mt-bench", "81", "m", "h", 1, "an answer")])
        s.put_calls("j", [(req, JudgeReply("Rating: [[8]]"))])
    with sqlite3.connect(tmp_path / "evals.sqlite") as c:  # as written before the marks existed
        c.execute("PRAGMA application_id = 0")
        c.execute("PRAGMA user_version = 0")
    with EvalStore(tmp_path) as s:
        assert s.answers("mt-bench", "m", "h")[("81", 1)].text == "an answer"
        assert s.done_keys([req.key("j")]) == {req.key("j")}
        assert s.db.execute("PRAGMA application_id").fetchone()[0] == EvalStore.APPLICATION_ID


def test_key_queries_cover_more_keys_than_one_chunk(tmp_path):
    reqs = [JudgeRequest([{"role": "user", "content": f"q{i}"}], "p", "v1", 0.0, 8) for i in range(1203)]
    with EvalStore(tmp_path) as s:
        s.put_calls("j", [(r, JudgeReply("ok") if i % 2 else JudgeReply(None, error="HTTP 500"))
                          for i, r in enumerate(reqs)])
        keys = [r.key("j") for r in reqs]
        assert len(s.done_keys(keys)) == 601
        assert len(s.replies(keys)) == 1203
        assert s.prompt_versions(keys) == {"p": "v1"}


@pytest.mark.parametrize("command", ["score", "pairs", "inspect"])
def test_fusedata_commands_on_a_corrupt_store_exit_2_with_one_line(tmp_path, command):
    from fusedata.cli import app

    _text_file(tmp_path, "run.sqlite")
    res = CliRunner().invoke(app, [command, str(tmp_path)], env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not readable as a fusedata run store" in lines[0], res.output


def test_evals_score_on_a_corrupt_store_exits_2_with_one_line(tmp_path):
    from evals.cli import app

    _text_file(tmp_path, "evals.sqlite")
    res = CliRunner().invoke(app, ["score", str(tmp_path)], env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not readable as an evals store" in lines[0], res.output
