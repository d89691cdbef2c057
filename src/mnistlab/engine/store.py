"""The run folder: a SQLite database of steps plus one ``.npz`` of arrays per step.

A step's key hashes the dataset fingerprint, the step's name and parameters and the keys of the
steps it reads, so a rerun finds every unchanged step done and recomputes only what a changed
parameter reaches. Arrays are written to a temporary file and renamed before the row is marked
``done`` in the same transaction-safe order, so ``kill -9`` at any moment leaves either a finished
step or none.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib
import io
import json
import logging
import os
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import StoreError
from ..core.files import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

DB_NAME = "study.sqlite"
LOCK_NAME = ".mnistlab.lock"
NOT_FINISHED = "is not finished"
SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    key TEXT PRIMARY KEY,
    section TEXT NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    result_type TEXT,
    started REAL,
    finished REAL,
    wall_s REAL,
    peak_rss_mb REAL,
    rss_delta_mb REAL,
    metrics TEXT,
    arrays_file TEXT,
    arrays_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    dataset TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    profile TEXT NOT NULL,
    config TEXT NOT NULL,
    step_keys TEXT NOT NULL DEFAULT '[]',
    context TEXT NOT NULL DEFAULT '{}'
);
"""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):  # a pydantic model among a step's arguments
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def split_result(result: Any) -> tuple[str, dict, dict[str, np.ndarray]]:
    """A result dataclass -> (type path, JSON fields, array fields)."""
    if not dataclasses.is_dataclass(result):
        raise TypeError(f"a step must return a dataclass, got {type(result).__name__}")
    cls = type(result)
    fields, arrays = {}, {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        else:
            fields[f.name] = value
    return f"{cls.__module__}:{cls.__qualname__}", fields, arrays


# Modules that held result types before mnistlab's layered packages: a run folder stored then
# still loads (its step keys are the same).
MOVED_MODULES = {"mnistlab.step": "mnistlab.engine.step"}


def _result_class(type_path: str) -> type:
    module, _, qualname = type_path.partition(":")
    return getattr(importlib.import_module(MOVED_MODULES.get(module, module)), qualname)


def join_result(type_path: str, fields: dict, arrays: dict[str, np.ndarray]) -> Any:
    return _result_class(type_path)(**fields, **arrays)


def _fits_current_class(type_path: str, stored_fields: set[str]) -> bool:
    """Whether a stored result has exactly the fields of its class in this version."""
    try:
        cls = _result_class(type_path)
    except (ImportError, AttributeError):
        return False
    return dataclasses.is_dataclass(cls) and stored_fields == {
        f.name for f in dataclasses.fields(cls)}


def _lock_run_folder(folder: Path) -> int:
    """An exclusive lock on ``folder`` for as long as the returned descriptor is open; a second
    study on the same folder fails at once, in one line (it would race on the files)."""
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"{folder}: another mnistlab study is running in this run folder "
                         f"(pid {holder}); wait for it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class RunStore:
    """Steps and studies of one run folder.

    Parameters
    ----------
    folder : path
        Created if missing (unless ``create=False``).
    """

    def __init__(self, folder: str | Path, *, create: bool = True):
        self.folder = Path(folder)
        self._lock_fd: int | None = None
        db = self.folder / DB_NAME
        if not create and not db.is_file():
            raise StoreError(f"{self.folder}: not a mnistlab run folder (no {DB_NAME}); run "
                             "`mnistlab study --out DIR` first")
        if create:  # the writer: one study at a time per run folder
            try:
                (self.folder / "arrays").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.folder}: cannot create the run folder "
                                 f"({exc.strerror or exc})") from None
            self._lock_fd = _lock_run_folder(self.folder)
            for stale in (self.folder / "arrays").glob(".*"):  # temp files of a killed run
                stale.unlink(missing_ok=True)
        try:
            self.db = sqlite3.connect(db, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(studies)")}
            if "context" not in columns:  # a run folder of mnistlab 0.1 before the typed context
                with self.db:
                    self.db.execute("ALTER TABLE studies ADD COLUMN context TEXT NOT NULL "
                                    "DEFAULT '{}'")
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(steps)")}
            if "arrays_sha256" not in columns:  # stored before arrays files had digests
                with self.db:
                    self.db.execute("ALTER TABLE steps ADD COLUMN arrays_sha256 TEXT")
        except sqlite3.DatabaseError as exc:
            self._unlock()
            raise StoreError(f"{db}: not a readable mnistlab database ({exc}); move the run "
                             "folder away (its results are lost) or choose another --out") from None

    def close(self) -> None:
        self.db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------- steps
    def is_done(self, key: str) -> bool:
        """Finished, and what is stored still makes a result of the current code: otherwise
        (arrays file missing or corrupt, result class changed since) the step is recomputed."""
        problem = self.stored_problem(key)
        if problem and problem != NOT_FINISHED:  # a new step is no news
            log.warning("%s: step %s %s; recomputing it", self.folder, key, problem)
        return problem is None

    def stored_problem(self, key: str) -> str | None:
        """Why the stored result of ``key`` cannot be loaded by this version, or None."""
        row = self.db.execute("SELECT status, arrays_file, result_type, metrics, arrays_sha256 "
                              "FROM steps WHERE key=?", (key,)).fetchone()
        if row is None or row[0] != "done":
            return NOT_FINISHED
        array_names: list[str] = []
        if row[1] is not None:
            path = self.folder / "arrays" / row[1]
            try:
                # the digest catches what the zip's own checks let through until the arrays
                # are read (one flipped byte in a compressed array: "Bad CRC-32" at load)
                if row[4] is not None and sha256_file(path) != row[4]:
                    return "has a missing or corrupt arrays file"
                with zipfile.ZipFile(path) as npz:
                    array_names = [n.removesuffix(".npy") for n in npz.namelist()]
            except (OSError, zipfile.BadZipFile):
                return "has a missing or corrupt arrays file"
        fields = json.loads(row[3])
        if not _fits_current_class(row[2], set(fields) | set(array_names)):
            return "was stored by another version of mnistlab"
        return self._file_problem(fields)

    def _file_problem(self, fields: dict) -> str | None:
        """A result names the files it wrote in the run folder as ``<x>_file`` fields, each
        with its SHA-256 in ``<x>_sha256``: a missing or altered one makes the step stale."""
        for name, relative in fields.items():
            digest = fields.get(name.removesuffix("_file") + "_sha256")
            if not name.endswith("_file") or digest is None:
                continue
            try:
                if sha256_file(self.folder / relative) == digest:
                    continue
            except OSError:
                pass
            return f"has a missing or corrupt file {relative}"
        return None

    def mark_running(self, key: str, section: str, name: str, params: dict) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO steps (key, section, name, params, status, started) "
                "VALUES (?, ?, ?, ?, 'running', ?)",
                (key, section, name, to_json(params), time.time()),
            )

    def save_step(self, key: str, result: Any, *, wall_s: float, peak_rss_mb: float,
                  rss_delta_mb: float, finished: float | None = None) -> None:
        """``finished``: when the computation ended (default now; a step computed beside
        another may be saved a while after it ended)."""
        type_path, fields, arrays = split_result(result)
        arrays_file = arrays_sha256 = None
        if arrays:
            arrays_file = f"{key}.npz"
            buffer = _npz_bytes(arrays)
            arrays_sha256 = hashlib.sha256(buffer).hexdigest()
            atomic_write_bytes(self.folder / "arrays" / arrays_file, buffer)
        with self.db:
            self.db.execute(
                "UPDATE steps SET status='done', result_type=?, finished=?, wall_s=?, "
                "peak_rss_mb=?, rss_delta_mb=?, metrics=?, arrays_file=?, arrays_sha256=? "
                "WHERE key=?",
                (type_path, finished or time.time(), wall_s, peak_rss_mb, rss_delta_mb,
                 to_json(fields), arrays_file, arrays_sha256, key),
            )

    def load_result(self, key: str) -> Any:
        row = self.db.execute(
            "SELECT result_type, metrics, arrays_file, arrays_sha256 FROM steps WHERE key=? "
            "AND status='done'", (key,),
        ).fetchone()
        if row is None:
            raise StoreError(f"{self.folder}: step {key} has no stored result")
        arrays = {}
        if row[2]:
            payload = (self.folder / "arrays" / row[2]).read_bytes()
            if row[3] is not None and hashlib.sha256(payload).hexdigest() != row[3]:
                raise StoreError(f"{self.folder}: the arrays of step {key} changed since they "
                                 "were stored; run the same `mnistlab study` again to "
                                 "recompute them")
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        try:
            return join_result(row[0], json.loads(row[1]), arrays)
        except (TypeError, AttributeError) as err:  # the result's class changed since
            raise StoreError(f"{self.folder}: step {key} was stored by another version of "
                             f"mnistlab ({err}); run the same `mnistlab study` again to "
                             f"recompute it") from None

    def step_rows(self, keys: list[str]) -> list[dict]:
        """Timing rows of ``keys`` in that order (for the report's cost table); ``beside``
        names the other steps of ``keys`` that were computing at the same time, and
        ``own_process`` says the step computed in a process of its own."""
        rows, spans = [], {}
        for key in keys:
            row = self.db.execute(
                "SELECT section, name, wall_s, peak_rss_mb, rss_delta_mb, status, params, "
                "finished FROM steps WHERE key=?", (key,)).fetchone()
            if row:
                params = json.loads(row[6]) if row[6].startswith("{") else {}
                rows.append(dict(zip(("section", "name", "wall_s", "peak_rss_mb",
                                      "rss_delta_mb", "status"), row), key=key,
                                 fn=params.get("fn", ""),
                                 own_process=params.get("own_process", False),
                                 engine=params.get("arguments", {}).get("engine")))
                if row[7] is not None and row[2] is not None:
                    # Computing from finish - wall time to finish ("started" is when it was
                    # handed out, which on a cluster may be long before a worker takes it).
                    spans[key] = (row[7] - row[2], row[7])
        for row in rows:
            start, end = spans.get(row["key"], (0.0, 0.0))
            row["beside"] = [other["name"] for other in rows if other is not row
                             and other["key"] in spans and spans[other["key"]][0] < end
                             and start < spans[other["key"]][1]]
        return rows

    # ------------------------------------------------------------- studies
    def begin_study(self, dataset: str, fingerprint: str, profile: str, config: str,
                    context: dict | None = None) -> int:
        with self.db:
            cur = self.db.execute(
                "INSERT INTO studies (started, status, dataset, fingerprint, profile, config, "
                "context) VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (time.time(), dataset, fingerprint, profile, config, to_json(context or {})))
        return int(cur.lastrowid)

    def record_study_steps(self, study_id: int, keys: list[str], status: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE studies SET step_keys=?, status=?, finished=? WHERE id=?",
                (json.dumps(keys), status, time.time(), study_id))

    def last_study(self) -> dict:
        """The last finished study: its row as a dict."""
        row = self._study_row("status='done' ORDER BY id DESC LIMIT 1", ())
        if row is None:
            raise StoreError(f"{self.folder}: no finished study in this run folder; run "
                             "`mnistlab study` to finish it")
        return row

    def study(self, study_id: int) -> dict:
        """The study ``study_id``, finished or still running (its ``step_keys`` then empty)."""
        row = self._study_row("id=?", (study_id,))
        if row is None:
            raise StoreError(f"{self.folder}: no study {study_id} in this run folder")
        return row

    def _study_row(self, where: str, args: tuple) -> dict | None:
        try:
            row = self.db.execute(
                "SELECT id, started, finished, status, dataset, fingerprint, profile, config, "
                f"step_keys, context FROM studies WHERE {where}", args).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.folder / DB_NAME}: not a readable mnistlab database "
                             f"({exc}); rerun the study into another --out") from None
        if row is None:
            return None
        names = ("id", "started", "finished", "status", "dataset", "fingerprint", "profile",
                 "config", "step_keys", "context")
        study = dict(zip(names, row))
        study["step_keys"] = json.loads(study["step_keys"] or "[]")
        study["context"] = json.loads(study["context"])
        return study


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
