"""The eval store: one SQLite database per run directory holding questions, answers, judge calls
and judgments, so that a killed run continues where it stopped and ``evals score`` needs nothing else.

- ``answers`` are keyed by (bench, question, model, settings hash, turn): a re-run reuses them.
- ``calls`` are keyed by the judge request's hash (judge model, messages, sampling settings,
  prompt name and version): a re-run sends only the keys that are missing or failed.
- ``judgments`` link a (bench, judge, model, question, turn, game, mode) to the call deciding it.

A failure is a row with ``error`` set and no text; the next run retries it and a success replaces
it, while a success is never overwritten by a later failure. Each batch is one transaction in WAL
mode, so a ``kill -9`` loses at most the work in flight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from fusedata.judge import JudgeReply, JudgeRequest
from fusedata.records import canonical_json
from fusedata.sqlite_store import SQLiteStore

from .records import Answer, Judgment, Question

DB_NAME = "evals.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
  bench TEXT NOT NULL, id TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bench, id)
);
CREATE TABLE IF NOT EXISTS models (
  bench TEXT NOT NULL, model TEXT NOT NULL, settings_hash TEXT NOT NULL, settings TEXT NOT NULL,
  updated REAL NOT NULL, PRIMARY KEY (bench, model)
);
CREATE TABLE IF NOT EXISTS answers (
  bench TEXT NOT NULL, question_id TEXT NOT NULL, model TEXT NOT NULL, settings_hash TEXT NOT NULL,
  turn INTEGER NOT NULL, text TEXT, error TEXT, n_output_tokens INTEGER NOT NULL, seconds REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 1, updated REAL NOT NULL,
  PRIMARY KEY (bench, question_id, model, settings_hash, turn)
);
CREATE TABLE IF NOT EXISTS calls (
  key TEXT PRIMARY KEY, judge TEXT NOT NULL, request TEXT NOT NULL, text TEXT, top_logprobs TEXT,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, error TEXT, seconds REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 1, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
  bench TEXT NOT NULL, judge TEXT NOT NULL, model TEXT NOT NULL, question_id TEXT NOT NULL,
  turn INTEGER NOT NULL, game INTEGER NOT NULL, mode TEXT NOT NULL, key TEXT NOT NULL,
  baseline TEXT, swapped INTEGER NOT NULL,
  PRIMARY KEY (bench, judge, model, question_id, turn, game, mode)
);
"""

# SQLite's default cap on bound parameters is 999 in older builds; 500 keys per query stays under it.
_KEYS_PER_QUERY = 500


class EvalStore(SQLiteStore):
    """Questions, answers, judge calls and judgments of one eval run directory.

    Schema versions: 0 (unmarked) and 1 have the same tables; 1 marks the file as an evals store.
    """

    FILENAME = DB_NAME
    KIND = "an evals store"
    APPLICATION_ID = 0x6576616C  # "eval"
    SCHEMA = _SCHEMA
    VERSION = 1
    MARKER_TABLE = "calls"

    def _rows_for_keys(self, sql: str, keys: Iterable[str]) -> Iterator[tuple]:
        """Rows of ``sql`` for all ``keys``, ``{marks}`` in ``sql`` standing for one chunk's placeholders."""
        keys = list(keys)
        for i in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[i:i + _KEYS_PER_QUERY]
            yield from self.db.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)

    # -- questions and models ---------------------------------------------------------------
    def put_questions(self, questions: Iterable[Question]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO questions VALUES (?, ?, ?)",
                [(q.bench, q.id, canonical_json(asdict(q))) for q in questions],
            )

    def questions(self, bench: str) -> list[Question]:
        rows = self.db.execute("SELECT record FROM questions WHERE bench = ? ORDER BY rowid", (bench,))
        return [Question(**json.loads(r[0])) for r in rows]

    def set_model(self, bench: str, model: str, settings_hash: str, settings: dict[str, Any]) -> None:
        """Register which settings the label ``model`` stands for on ``bench`` (the latest run wins)."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?)",
                (bench, model, settings_hash, canonical_json(settings), time.time()),
            )

    def models(self, bench: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """model label → (settings hash, settings), in the order the models were first registered."""
        rows = self.db.execute(
            "SELECT model, settings_hash, settings FROM models WHERE bench = ? ORDER BY rowid", (bench,))
        return {m: (h, json.loads(s)) for m, h, s in rows}

    def benches(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT bench FROM models ORDER BY rowid")]

    # -- answers ----------------------------------------------------------------------------
    def put_answers(self, answers: Iterable[Answer]) -> None:
        now = time.time()
        with self.db:
            for a in answers:
                self.db.execute(
                    """INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
                    ON CONFLICT (bench, question_id, model, settings_hash, turn) DO UPDATE SET
                      text = excluded.text, error = excluded.error, n_output_tokens = excluded.n_output_tokens,
                      seconds = excluded.seconds, attempts = answers.attempts + 1, updated = excluded.updated
                    WHERE answers.error IS NOT NULL""",
                    (a.bench, a.question_id, a.model, a.settings_hash, a.turn, a.text, a.error,
                     a.n_output_tokens, a.seconds, now),
                )

    def answers(self, bench: str, model: str, settings_hash: str) -> dict[tuple[str, int], Answer]:
        """(question id, turn) → answer (failures included)."""
        rows = self.db.execute(
            """SELECT question_id, turn, text, error, n_output_tokens, seconds FROM answers
            WHERE bench = ? AND model = ? AND settings_hash = ?""",
            (bench, model, settings_hash),
        )
        return {
            (q, t): Answer(bench, q, model, settings_hash, t, text, err, n, s)
            for q, t, text, err, n, s in rows
        }

    # -- judge calls and judgments ----------------------------------------------------------
    def put_judgments(self, judgments: Iterable[Judgment]) -> None:
        """Link items to their calls; a re-run with new answers or a new prompt re-points the link."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(j.bench, j.judge, j.model, j.question_id, j.turn, j.game, j.mode, j.key, j.baseline, int(j.swapped))
                 for j in judgments],
            )

    def judgments(self, bench: str, judge: str | None = None) -> list[Judgment]:
        sql = ("SELECT bench, judge, model, question_id, turn, game, mode, key, baseline, swapped FROM judgments"
               " WHERE bench = ?")
        args: tuple = (bench,)
        if judge is not None:
            sql += " AND judge = ?"
            args += (judge,)
        return [Judgment(*r[:9], swapped=bool(r[9])) for r in self.db.execute(sql + " ORDER BY rowid", args)]

    def judges(self, bench: str) -> list[str]:
        rows = self.db.execute("SELECT DISTINCT judge FROM judgments WHERE bench = ? ORDER BY rowid", (bench,))
        return [r[0] for r in rows]

    def done_keys(self, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` that already hold a successful reply."""
        rows = self._rows_for_keys("SELECT key FROM calls WHERE error IS NULL AND key IN ({marks})", keys)
        return {r[0] for r in rows}

    def put_calls(self, judge: str, items: Iterable[tuple[JudgeRequest, JudgeReply]]) -> None:
        now = time.time()
        with self.db:
            for req, rep in items:
                self.db.execute(
                    """INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
                    ON CONFLICT (key) DO UPDATE SET
                      text = excluded.text, top_logprobs = excluded.top_logprobs,
                      prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
                      error = excluded.error, seconds = excluded.seconds, attempts = calls.attempts + 1,
                      updated = excluded.updated
                    WHERE calls.error IS NOT NULL""",
                    (req.key(judge), judge, canonical_json(asdict(req)), rep.text,
                     None if rep.top_logprobs is None else canonical_json(rep.top_logprobs),
                     rep.prompt_tokens, rep.completion_tokens, rep.error, rep.seconds, now),
                )

    def replies(self, keys: Iterable[str]) -> dict[str, tuple[JudgeReply, int]]:
        """key → (reply, attempts) for the keys that have a call row (success or failure)."""
        rows = self._rows_for_keys(
            """SELECT key, text, top_logprobs, prompt_tokens, completion_tokens, error, seconds, attempts
            FROM calls WHERE key IN ({marks})""", keys)
        return {key: (JudgeReply(text, None if lp is None else json.loads(lp), pt, ct, err, secs), att)
                for key, text, lp, pt, ct, err, secs, att in rows}

    def requests(self, keys: Iterable[str]) -> dict[str, tuple[dict[str, Any], float]]:
        """key → (the request as sent, when its reply was stored) for the keys that have a call row."""
        rows = self._rows_for_keys("SELECT key, request, updated FROM calls WHERE key IN ({marks})", keys)
        return {key: (json.loads(request), float(updated)) for key, request, updated in rows}

    def answer_times(self, bench: str, model: str, settings_hash: str) -> dict[tuple[str, int], float]:
        """(question id, turn) → when that answer was stored."""
        rows = self.db.execute("SELECT question_id, turn, updated FROM answers WHERE bench = ? AND model = ? "
                               "AND settings_hash = ?", (bench, model, settings_hash))
        return {(q, t): float(u) for q, t, u in rows}

    def prompt_versions(self, keys: Iterable[str]) -> dict[str, str]:
        """prompt name → version over the calls with these keys (what a report must name)."""
        rows = self._rows_for_keys(
            """SELECT DISTINCT json_extract(request, '$.prompt'), json_extract(request, '$.prompt_version')
            FROM calls WHERE key IN ({marks})""", keys)
        return dict(rows)
