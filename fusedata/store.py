"""The run store: one SQLite database per output folder that survives a crash.

Every response is written as soon as its batch finishes, in one transaction per
batch (WAL journal, so a ``kill -9`` loses at most the batch in flight and never
leaves half a batch). Keys are primary keys, so a re-run can never duplicate a
record. A failure is a row with ``error`` set; the next run retries it, and a
success replaces it — a success is never overwritten.

The readers come in two kinds. ``prompts()``, ``responses()``, ``scores()`` return whole tables and
suit small runs and tests. The stages read through the paged ones, so that what they hold at once is
one page, never the run: :meth:`RunStore.prompt_groups` (a page of prompts with their responses and
scores, in prompt order) and :meth:`RunStore.unscored` (responses in key order, by keyset pagination).
Each page is fetched whole before it is used, so a stage may write (scores) between pages.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .records import Prompt, Response, Score, canonical_json, from_row, to_row
from .sqlite_store import SQLiteStore, _as_user_error

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
_PROMPT_COLUMNS = "id, domain, source, messages, gold, tests, meta"


def _prefixed(alias: str, columns: str | Iterable[str]) -> str:
    names = columns.split(", ") if isinstance(columns, str) else columns
    return ", ".join(f"{alias}.{c}" for c in names)


def _prompt(row: tuple) -> Prompt:
    id_, dom, src, msgs, gold, tests, meta = row
    return Prompt(id_, dom, src, json.loads(msgs), gold, tests, json.loads(meta))


def _score(row: tuple) -> Score:
    return from_row(Score, dict(zip(_SCORE_COLUMNS, row)))


@dataclass(frozen=True)
class PromptGroup:
    """One prompt with its responses (``(rowid, response)`` in store order) and the scores of those."""

    prompt: Prompt
    responses: list[tuple[int, Response]]
    scores: list[Score]


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
    #: at most this many prompts, and about this many responses, per page of :meth:`prompt_groups`;
    #: rows per page of the other paged readers
    PROMPT_PAGE = 128
    RESPONSE_PAGE = 4096
    ROW_PAGE = 1024

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
        for row in self.db.execute(q + " ORDER BY rowid", args):
            out.append(_prompt(row))
        return out

    def iter_prompts(self) -> Iterator[Prompt]:
        """Every prompt in store order (as :meth:`prompts`), a page at a time."""
        last = 0
        while page := self._fetch(f"SELECT rowid, {_PROMPT_COLUMNS} FROM prompts WHERE rowid > ? ORDER BY rowid "
                                  "LIMIT ?", (last, self.PROMPT_PAGE)):
            yield from (_prompt(row[1:]) for row in page)
            last = page[-1][0]

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

    def prompt_groups(self, *, ok_only: bool = False, model: str | None = None,
                      not_model: str | None = None, scorers: Iterable[str] | None = None) -> Iterator[PromptGroup]:
        """Every prompt in store order with its responses (filtered as :meth:`responses` filters; ``not_model``
        leaves one model out) and their scores (of ``scorers`` only, when given), a page of prompts at a time.
        Responses whose prompt is not stored are not here: :meth:`orphan_responses` counts them."""
        cond, args = self._response_filter("r", ok_only, model, not_model)
        scond, sargs = self._response_filter("s", False, model, not_model)
        if scorers is not None:
            names = sorted(set(scorers))
            scond += f" AND s.scorer IN ({', '.join('?' * len(names))})"
            sargs += names
        last, size = 0, self.PROMPT_PAGE
        while page := self._fetch(f"SELECT rowid, {_PROMPT_COLUMNS} FROM prompts WHERE rowid > ? ORDER BY rowid "
                                  "LIMIT ?", (last, size)):
            bounds = [last, page[-1][0]]
            # CROSS JOIN keeps the prompts outside: the page's rowid range, then each prompt's responses by index.
            responses: dict[str, list[tuple[int, Response]]] = defaultdict(list)
            for row in self._fetch(f"SELECT r.rowid, {_prefixed('r', _RESPONSE_COLUMNS)} FROM prompts p CROSS JOIN "
                                   f"responses r ON r.prompt_id = p.id WHERE p.rowid > ? AND p.rowid <= ?{cond} "
                                   "ORDER BY r.rowid", bounds + args):
                responses[row[1]].append((row[0], Response(*row[1:])))
            scores: dict[str, list[Score]] = defaultdict(list)
            for row in self._fetch(f"SELECT {_prefixed('s', _SCORE_COLUMNS)} FROM prompts p CROSS JOIN scores s "
                                   f"ON s.prompt_id = p.id WHERE p.rowid > ? AND p.rowid <= ?{scond} "
                                   "ORDER BY s.rowid", bounds + sargs):
                scores[row[0]].append(_score(row))
            for row in page:
                yield PromptGroup(_prompt(row[1:]), responses.get(row[1], []), scores.get(row[1], []))
            last = bounds[1]
            # Many samples per prompt: fewer prompts on the next page, so that it stays about RESPONSE_PAGE.
            n = sum(len(v) for v in responses.values())
            size = max(1, min(self.PROMPT_PAGE, self.RESPONSE_PAGE * len(page) // max(1, n)))

    def orphan_responses(self, *, ok_only: bool = False, model: str | None = None,
                         not_model: str | None = None) -> tuple[int, int | None]:
        """(how many, smallest rowid) of the responses, filtered as in :meth:`prompt_groups`, whose prompt is
        not stored."""
        cond, args = self._response_filter("r", ok_only, model, not_model)
        n, first = self._fetch("SELECT COUNT(*), MIN(r.rowid) FROM responses r WHERE NOT EXISTS "
                               f"(SELECT 1 FROM prompts p WHERE p.id = r.prompt_id){cond}", args)[0]
        return n, first

    def unscored(self, scorer: str, domains: Iterable[str]) -> Iterator[tuple[Response, Prompt]]:
        """Successful responses to prompts of ``domains`` that ``scorer`` has not scored successfully, with
        their prompt, in key order (prompt_id, model, settings_hash, sample_idx), a page at a time.

        Keyset pagination: each page starts after the last key of the one before, so scores written
        between pages (always for keys already read) neither hide nor repeat anything.
        """
        names = sorted(set(domains))
        if not names:
            return
        where, args = self._unscored_where(scorer, names)
        select = (f"SELECT {_prefixed('r', _RESPONSE_COLUMNS)}, {_prefixed('p', _PROMPT_COLUMNS)} FROM responses r "
                  f"CROSS JOIN prompts p ON p.id = r.prompt_id WHERE {where}")
        order = " ORDER BY r.prompt_id, r.model, r.settings_hash, r.sample_idx LIMIT ?"
        after = " AND (r.prompt_id, r.model, r.settings_hash, r.sample_idx) > (?, ?, ?, ?)"
        prompt: Prompt | None = None
        page = self._fetch(select + order, args + [self.ROW_PAGE])
        while page:
            for row in page:
                r = Response(*row[:10])
                if prompt is None or prompt.id != r.prompt_id:  # rows come grouped by prompt: parse each once
                    prompt = _prompt(row[10:])
                yield r, prompt
            page = self._fetch(select + after + order, args + list(page[-1][:4]) + [self.ROW_PAGE])

    def count_unscored(self, scorer: str, domains: Iterable[str]) -> int:
        """How many responses :meth:`unscored` yields."""
        names = sorted(set(domains))
        if not names:
            return 0
        where, args = self._unscored_where(scorer, names)
        return self._fetch(f"SELECT COUNT(*) FROM responses r CROSS JOIN prompts p ON p.id = r.prompt_id "
                           f"WHERE {where}", args)[0][0]

    @staticmethod
    def _unscored_where(scorer: str, domains: list[str]) -> tuple[str, list[Any]]:
        return (f"r.error IS NULL AND p.domain IN ({', '.join('?' * len(domains))}) AND NOT EXISTS "
                "(SELECT 1 FROM scores s WHERE s.prompt_id = r.prompt_id AND s.model = r.model AND "
                "s.settings_hash = r.settings_hash AND s.sample_idx = r.sample_idx AND s.scorer = ? "
                "AND s.error IS NULL)", [*domains, scorer])

    @staticmethod
    def _response_filter(alias: str, ok_only: bool, model: str | None,
                         not_model: str | None) -> tuple[str, list[Any]]:
        """`` AND ...`` conditions on the responses (or scores) table ``alias``, and their arguments."""
        cond, args = "", []
        if ok_only:
            cond += f" AND {alias}.error IS NULL"
        if model is not None:
            cond, args = cond + f" AND {alias}.model = ?", args + [model]
        if not_model is not None:
            cond, args = cond + f" AND {alias}.model != ?", args + [not_model]
        return cond, args

    def _fetch(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        """All rows of one query. Damage found while stepping (not only at the first row) is bad input too."""
        try:
            return self.db.execute(sql, tuple(args)).fetchall()
        except sqlite3.DatabaseError as e:
            raise _as_user_error(e, self.db.label) from None

    def failures(self) -> list[tuple[Response, int]]:
        """Failed responses with their attempt counts."""
        rows = self.db.execute(
            f"SELECT {_RESPONSE_COLUMNS}, attempts FROM responses WHERE error IS NOT NULL ORDER BY rowid"
        ).fetchall()
        return [(Response(*r[:10]), r[10]) for r in rows]

    def failure_counts(self) -> dict[str, int]:
        """Failed responses per model, by model name."""
        return dict(self._fetch("SELECT model, COUNT(*) FROM responses WHERE error IS NOT NULL GROUP BY model "
                                "ORDER BY model"))

    def response_counts(self) -> dict[str, int]:
        """Successful responses per domain of their prompt (responses to unstored prompts left out)."""
        return dict(self._fetch("SELECT p.domain, COUNT(*) FROM responses r CROSS JOIN prompts p ON p.id = r.prompt_id "
                                "WHERE r.error IS NULL GROUP BY p.domain ORDER BY p.domain"))

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

    def scorer_names(self) -> list[str]:
        """Every scorer with a score in the store (successful or not), sorted."""
        return [r[0] for r in self._fetch("SELECT DISTINCT scorer FROM scores ORDER BY scorer")]

    def iter_score_values(self, *, ok_only: bool = False) -> Iterator[tuple[str, str, float | None, str | None]]:
        """(prompt domain, scorer, value, label) of every score of a stored prompt, in store order, a page at a
        time (``ok_only``: only scores without an error)."""
        cond = " AND s.error IS NULL" if ok_only else ""
        last = 0
        while page := self._fetch("SELECT s.rowid, p.domain, s.scorer, s.value, s.label FROM scores s CROSS JOIN "
                                  f"prompts p ON p.id = s.prompt_id WHERE s.rowid > ?{cond} ORDER BY s.rowid LIMIT ?",
                                  (last, self.ROW_PAGE)):
            yield from (row[1:] for row in page)
            last = page[-1][0]

    def scored_keys(self, scorer: str) -> set[tuple[str, str, str, int]]:
        cur = self.db.execute(
            "SELECT prompt_id, model, settings_hash, sample_idx FROM scores WHERE scorer = ? AND error IS NULL",
            (scorer,),
        )
        return {tuple(r) for r in cur}
