"""The SQLite file under both of fusekit's stores (the fusedata run store, the evals store).

A store is one SQLite database in a folder, opened in WAL mode with ``synchronous=NORMAL``: a committed
batch survives a killed process, and a reader never blocks the writer. Each kind of store marks its file
with its own ``PRAGMA application_id`` and its schema version in ``PRAGMA user_version``, so opening a
file that is not a store, a store of the other kind, or a store written by a newer fusekit stops with one
clear :class:`FusekitError` before anything is read or written. A store written before these marks
existed (application id 0) is recognised by a table only its kind has, then upgraded in place.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import FusekitError
from .records import canonical_json

_META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

# application id -> the kind's name, filled in as the store classes are defined
_KINDS: dict[int, str] = {}

_S = TypeVar("_S", bound="SQLiteStore")


class _Connection(sqlite3.Connection):
    """A connection whose corruption errors are bad input, not bugs.

    SQLite reports a damaged or foreign file as a plain ``DatabaseError`` ("file is not a database",
    "database disk image is malformed"), often only at the first query that reaches the bad page.
    Its subclasses (IntegrityError, ProgrammingError...) are fusekit's own mistakes and pass through.
    """

    #: how errors name the file, e.g. "runs/x/run.sqlite: not readable as a fusedata run store"
    label: str = "store"

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as e:
            raise _as_user_error(e, self.label) from None

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.DatabaseError as e:
            raise _as_user_error(e, self.label) from None


def _as_user_error(e: sqlite3.DatabaseError, label: str) -> Exception:
    if type(e) is sqlite3.DatabaseError:
        return FusekitError(f"{label} ({e})")
    return e


class SQLiteStore:
    """One store file in ``folder``: connection, pragmas, meta table and schema version.

    A subclass names its file, its ``KIND`` as a phrase with its article ("a fusedata run store") and its
    ``APPLICATION_ID``; it gives its ``SCHEMA`` (``CREATE TABLE IF NOT EXISTS`` statements with no ``;``
    inside them: they are run one by one), its ``VERSION``, the ``MARKER_TABLE`` that identifies an
    unmarked store of its kind, and ``_migrate`` from older versions.
    """

    FILENAME: ClassVar[str]
    KIND: ClassVar[str]
    APPLICATION_ID: ClassVar[int]
    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]
    MARKER_TABLE: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _KINDS[cls.APPLICATION_ID] = cls.KIND

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / self.FILENAME
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, factory=_Connection)
        except (OSError, sqlite3.Error) as e:
            raise FusekitError(f"cannot open {self.path}: {e}") from None
        self.db.label = f"{self.path}: not readable as {self.KIND}"
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise FusekitError(f"cannot open {self.path} as {self.KIND}: {e}") from None
        except BaseException:
            self.db.close()
            raise

    def _open(self) -> None:
        # Read the marks first: a foreign file fails here, before the WAL pragma would write to it.
        current = self._checked_version() == self.VERSION
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is crash-safe in WAL mode: a committed batch survives a killed process.
        self.db.execute("PRAGMA synchronous=NORMAL")
        if current:
            return
        # Create or upgrade under the write lock, re-reading the version: another process may have
        # done it while this one waited.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self._checked_version()
            if version < self.VERSION and self._tables():
                self._migrate(version)
            for statement in (_META_SCHEMA, *self.SCHEMA.split(";")):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA application_id = {int(self.APPLICATION_ID)}")
            self.db.execute(f"PRAGMA user_version = {int(self.VERSION)}")
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def _tables(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _checked_version(self) -> int:
        """The file's schema version, after checking that it is a store of this kind this code can read."""
        app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if app_id not in (0, self.APPLICATION_ID):
            other = _KINDS.get(app_id)
            what = other or f"another program's SQLite file (application id {app_id:#x})"
            raise FusekitError(f"{self.path} is {what}, not {self.KIND}")
        if app_id == 0:
            tables = self._tables()
            if tables and self.MARKER_TABLE not in tables:
                raise FusekitError(f"{self.path} is not {self.KIND} (its tables: {', '.join(sorted(tables))})")
        if version > self.VERSION:
            raise FusekitError(f"{self.path} is {self.KIND} of schema version {version}, newer than this "
                               f"fusekit reads ({self.VERSION}): upgrade fusekit to open it")
        return version

    def _migrate(self, version: int) -> None:
        """Bring tables written at schema ``version`` to the current one (inside the open transaction)."""

    def close(self) -> None:
        self.db.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ---------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, canonical_json(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default
