"""The results of a listening test in SQLite: listeners, trials, ratings, time spent, plays, presentation order.

One transaction per submitted trial, so a crash, a power cut or a quit loses at most the trial on screen, and
a listener who comes back with the same name resumes at the first trial not yet submitted. The database also
keeps a copy of the test's manifest, so `stemgui listening-test report DB` needs nothing else.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from stemgui.errors import StemGUIError
from stemgui.listening.manifest import Manifest, manifest_from_dict

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS listeners (
    name TEXT PRIMARY KEY,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    listener TEXT NOT NULL REFERENCES listeners(name),
    trial TEXT NOT NULL,
    position INTEGER NOT NULL,        -- 0-based place of this trial in the listener's order
    condition_order TEXT NOT NULL,    -- JSON list of condition ids behind the buttons A, B, C...
    reference_plays INTEGER NOT NULL,
    seconds REAL NOT NULL,            -- time from the trial appearing to its submission
    submitted REAL NOT NULL,          -- unix time
    PRIMARY KEY (listener, trial)
);
CREATE TABLE IF NOT EXISTS ratings (
    listener TEXT NOT NULL,
    trial TEXT NOT NULL,
    condition TEXT NOT NULL,
    label TEXT NOT NULL,              -- the blind letter the listener saw
    rating REAL NOT NULL,
    plays INTEGER NOT NULL,           -- times the condition was switched to while playing
    seconds_heard REAL NOT NULL,
    PRIMARY KEY (listener, trial, condition),
    FOREIGN KEY (listener, trial) REFERENCES trials(listener, trial)
);
"""


@dataclass
class TrialResult:
    """Everything one submitted trial records."""

    listener: str
    trial: str
    position: int
    order: list[str]
    ratings: dict[str, float]
    labels: dict[str, str]
    plays: dict[str, int] = field(default_factory=dict)
    heard: dict[str, float] = field(default_factory=dict)
    reference_plays: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Rating:
    listener: str
    trial: str
    condition: str
    label: str
    rating: float
    plays: int
    seconds_heard: float


class ResultStore:
    """An open results database. `manifest` is stored on first open and must match on later ones."""

    def __init__(self, path: str | Path, manifest: Manifest | None = None):
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None)  # explicit BEGIN/COMMIT below
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StemGUIError(f"{self.path}: cannot open the results database ({exc})") from None
        stored = self._meta("manifest")
        if manifest is not None:
            if stored is None:
                self._set_meta("manifest", json.dumps(manifest.data, sort_keys=True))
            else:
                ids = [t["id"] for t in json.loads(stored)["trials"]]
                if ids != [t.id for t in manifest.trials] or json.loads(stored)["name"] != manifest.name:
                    raise StemGUIError(f"{self.path}: holds results of another test than '{manifest.name}'")
        elif stored is None:
            raise StemGUIError(f"{self.path}: not a listening-test results database (no manifest in it)")
        self.manifest = manifest or manifest_from_dict(json.loads(self._meta("manifest")), self.path.parent)

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, exc, tb):
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            return False

    def _transaction(self) -> "_Tx":
        return ResultStore._Tx(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- listeners and progress ------------------------------------------------------------------------
    def add_listener(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise StemGUIError("a listener needs a name")
        with self._transaction():
            self.conn.execute("INSERT OR IGNORE INTO listeners (name, started) VALUES (?, ?)", (name, time.time()))

    def listeners(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM listeners ORDER BY started, name")]

    def submitted(self, listener: str) -> dict[str, int]:
        """Trial id -> its position, for every trial `listener` has submitted."""
        rows = self.conn.execute("SELECT trial, position FROM trials WHERE listener = ?", (listener.strip(),))
        return {trial: position for trial, position in rows}

    # ---- results ---------------------------------------------------------------------------------------
    def submit(self, result: TrialResult) -> None:
        """Record one trial and all its ratings in a single transaction (all or nothing)."""
        listener = result.listener.strip()
        try:
            trial = self.manifest.trial(result.trial)
        except KeyError:
            raise StemGUIError(f"{self.path}: trial '{result.trial}' is not part of this test") from None
        expected = {c.id for c in trial.conditions}
        if set(result.ratings) != expected:
            raise StemGUIError(f"{self.path}: trial '{result.trial}' needs a rating for each of its "
                               f"{len(expected)} conditions, got {len(result.ratings)}")
        try:
            with self._transaction():
                self.conn.execute("INSERT OR IGNORE INTO listeners (name, started) VALUES (?, ?)",
                                  (listener, time.time()))
                self.conn.execute(
                    "INSERT INTO trials (listener, trial, position, condition_order, reference_plays, seconds, "
                    "submitted) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (listener, result.trial, int(result.position), json.dumps(list(result.order)),
                     int(result.reference_plays), float(result.seconds), time.time()))
                self.conn.executemany(
                    "INSERT INTO ratings (listener, trial, condition, label, rating, plays, seconds_heard) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(listener, result.trial, cid, result.labels.get(cid, ""), float(value),
                      int(result.plays.get(cid, 0)), float(result.heard.get(cid, 0.0)))
                     for cid, value in result.ratings.items()])
        except sqlite3.IntegrityError:
            raise StemGUIError(f"{self.path}: {listener} has already submitted trial '{result.trial}'") from None
        except sqlite3.Error as exc:
            raise StemGUIError(f"{self.path}: the trial could not be saved ({exc})") from None

    def ratings(self) -> list[Rating]:
        rows = self.conn.execute("SELECT listener, trial, condition, label, rating, plays, seconds_heard "
                                 "FROM ratings ORDER BY listener, trial, condition")
        return [Rating(*row) for row in rows]

    def trial_rows(self) -> list[dict]:
        rows = self.conn.execute("SELECT listener, trial, position, condition_order, reference_plays, seconds, "
                                 "submitted FROM trials ORDER BY listener, position")
        keys = ("listener", "trial", "position", "order", "reference_plays", "seconds", "submitted")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item["order"] = json.loads(item["order"])
            out.append(item)
        return out


def open_results(path: str | Path) -> ResultStore:
    """An existing results database (for reports); StemGUIError naming it if it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise StemGUIError(f"{path}: no such results database")
    return ResultStore(path)
