"""The run store: one SQLite database per output folder that survives a crash.

Every response is written as soon as its batch finishes, in one transaction per
batch (WAL journal, so a ``kill -9`` loses at most the batch in flight and never
leaves half a batch). Keys are primary keys, so a re-run can never duplicate a
record. A failure is a row with ``error`` set; the next run retries it, and a
success replaces it — a success is never overwritten.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from .records import Prompt, Response, Score, canonical_json, from_row, to_row
from .sqlite_store import SQLiteStore

DB_NAME = "run.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
  id TEXT PRIMARY KEY, domain TEXT NOT NULL, source TEXT NOT NULL, messages TEXT NOT NULL,
  gold TEXT, tests TEXT, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
  prompt_id TEXT NOT NULL, model TEXT NOT NULL, settings_hash TEXT NOT NULL, sample_idx INTEGER NOT NULL,
  text TEXT, finish_reason TEXT, n_input_tokens INTEGER NOT NULL, n_output_tokens INTEGER NOT NULL,
  error TEXT, seconds REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, updated REAL NOT NULL,
  PRIMARY KEY (prompt_id, model, settings_hash, sample_idx)
);
CREATE TABLE IF NOT EXISTS scores (
  prompt_id TEXT NOT NULL, model TEXT NOT NULL, settings_hash TEXT NOT NULL, sample_idx INTEGER NOT NULL,
  scorer TEXT NOT NULL, value REAL, label TEXT, detail TEXT NOT NULL, error TEXT, updated REAL NOT NULL,
  PRIMARY KEY (prompt_id, model, settings_hash, sample_idx, scorer)
);
"""

_RESPONSE_COLUMNS = ("prompt_id, model, settings_hash, sample_idx, text, finish_reason, n_input_tokens,"
                     " n_output_tokens, error, seconds")
_SCORE_COLUMNS = ("prompt_id", "model", "settings_hash", "sample_idx", "scorer", "value", "label", "detail", "error")


class RunStore(SQLiteStore):
    """Append-only, keyed storage of prompts, responses and scores for one run folder.

    Schema versions: 0 (unmarked) keyed responses and scores by ``params_hash``; 1 calls it ``settings_hash``.
    """

    FILENAME = DB_NAME
    KIND = "a fusedata run store"
    APPLICATION_ID = 0x66757365  # "fuse"
    SCHEMA = _SCHEMA
    VERSION = 1
    MARKER_TABLE = "responses"

    def _migrate(self, version: int) -> None:
        # Version 0 named the settings hash params_hash; RENAME COLUMN keeps the rows and the primary keys,
        # so a run started before the rename resumes where it stopped.
        for table in ("responses", "scores"):
            columns = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if "params_hash" in columns:
                self.db.execute(f"ALTER TABLE {table} RENAME COLUMN params_hash TO settings_hash")

    # -- prompts ------------------------------------------------------------------------
    def put_prompts(self, prompts: Iterable[Prompt]) -> None:
        rows = []
        for p in prompts:
            r = to_row(p)
            rows.append((r["id"], r["domain"], r["source"], canonical_json(r["messages"]), r["gold"], r["tests"],
                         r["meta"]))
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO prompts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def prompts(self, domain: str | None = None) -> list[Prompt]:
        q, args = "SELECT id, domain, source, messages, gold, tests, meta FROM prompts", ()
        if domain:
            q, args = q + " WHERE domain = ?", (domain,)
        out = []
        for id_, dom, src, msgs, gold, tests, meta in self.db.execute(q + " ORDER BY rowid", args):
            out.append(Prompt(id_, dom, src, json.loads(msgs), gold, tests, json.loads(meta)))
        return out

    # -- responses ----------------------------------------------------------------------
    def put_responses(self, responses: Iterable[Response]) -> None:
        """Write one batch in one transaction. Successes are final; failures count attempts."""
        now = time.time()
        rows = [
            (r.prompt_id, r.model, r.settings_hash, r.sample_idx, r.text, r.finish_reason,
             r.n_input_tokens, r.n_output_tokens, r.error, r.seconds, now)
            for r in responses
        ]
        with self.db:
            self.db.executemany(
                """INSERT INTO responses (prompt_id, model, settings_hash, sample_idx, text, finish_reason,
                       n_input_tokens, n_output_tokens, error, seconds, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (prompt_id, model, settings_hash, sample_idx) DO UPDATE SET
                       text = excluded.text, finish_reason = excluded.finish_reason,
                       n_input_tokens = excluded.n_input_tokens, n_output_tokens = excluded.n_output_tokens,
                       error = excluded.error, seconds = excluded.seconds,
                       attempts = responses.attempts + 1, updated = excluded.updated
                   WHERE responses.error IS NOT NULL""",
                rows,
            )

    def done_keys(self, model: str, settings_hash: str) -> set[tuple[str, int]]:
        """(prompt_id, sample_idx) already answered successfully by this model with these params."""
        cur = self.db.execute(
            "SELECT prompt_id, sample_idx FROM responses WHERE model = ? AND settings_hash = ? AND error IS NULL",
            (model, settings_hash),
        )
        return {(p, i) for p, i in cur}

    def responses(self, *, model: str | None = None, ok_only: bool = False) -> list[Response]:
        q = f"SELECT {_RESPONSE_COLUMNS} FROM responses"
        conds, args = [], []
        if model:
            conds.append("model = ?")
            args.append(model)
        if ok_only:
            conds.append("error IS NULL")
        if conds:
            q += " WHERE " + " AND ".join(conds)
        return [Response(*row) for row in self.db.execute(q + " ORDER BY rowid", args)]

    def failures(self) -> list[tuple[Response, int]]:
        """Failed responses with their attempt counts."""
        rows = self.db.execute(
            f"SELECT {_RESPONSE_COLUMNS}, attempts FROM responses WHERE error IS NOT NULL ORDER BY rowid"
        ).fetchall()
        return [(Response(*r[:10]), r[10]) for r in rows]

    def response_stats(self) -> dict[str, dict[str, float]]:
        """Per model: responses, failures, input and output tokens, generation seconds."""
        out: dict[str, dict[str, float]] = {}
        for model, ok, fail, tin, tout, secs in self.db.execute(
            """SELECT model, SUM(error IS NULL), SUM(error IS NOT NULL), SUM(n_input_tokens),
                      SUM(n_output_tokens), SUM(seconds) FROM responses GROUP BY model ORDER BY model"""
        ):
            out[model] = {"responses": ok, "failures": fail, "input_tokens": tin, "output_tokens": tout,
                          "seconds": secs}
        return out

    # -- scores -------------------------------------------------------------------------
    def put_scores(self, scores: Iterable[Score]) -> None:
        now = time.time()
        rows = []
        for s in scores:
            r = to_row(s)
            rows.append((r["prompt_id"], r["model"], r["settings_hash"], r["sample_idx"], r["scorer"],
                         r["value"], r["label"], r["detail"], r["error"], now))
        with self.db:
            self.db.executemany(
                """INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (prompt_id, model, settings_hash, sample_idx, scorer) DO UPDATE SET
                       value = excluded.value, label = excluded.label, detail = excluded.detail,
                       error = excluded.error, updated = excluded.updated
                   WHERE scores.error IS NOT NULL""",
                rows,
            )

    def scores(self, scorer: str | None = None) -> list[Score]:
        q = f"SELECT {', '.join(_SCORE_COLUMNS)} FROM scores"
        args: tuple = ()
        if scorer:
            q, args = q + " WHERE scorer = ?", (scorer,)
        return [from_row(Score, dict(zip(_SCORE_COLUMNS, row))) for row in self.db.execute(q + " ORDER BY rowid", args)]

    def scored_keys(self, scorer: str) -> set[tuple[str, str, str, int]]:
        cur = self.db.execute(
            "SELECT prompt_id, model, settings_hash, sample_idx FROM scores WHERE scorer = ? AND error IS NULL",
            (scorer,),
        )
        return {tuple(r) for r in cur}
