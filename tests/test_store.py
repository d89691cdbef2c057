"""The run folder's store, in process: what is saved loads back exactly, what cannot be trusted
is never served, and one writer at a time."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from mnistlab.core.errors import StoreError
from mnistlab.core.files import atomic_write_bytes, sha256_file
from mnistlab.engine.store import DB_NAME, NOT_FINISHED, RunStore, join_result, split_result, to_json


@dataclass
class Sample:
    """A result with every kind of field a step stores."""

    name: str
    score: float
    counts: list[int]
    table: dict[str, float]
    pixels: np.ndarray
    labels: np.ndarray


@dataclass
class NoArrays:
    n: int


def _sample() -> Sample:
    return Sample("svc", 0.9375, [1, 2, 3], {"a": 0.5},
                  np.arange(12, dtype=np.float32).reshape(3, 4), np.array([3, 1, 2], np.int64))


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "run")
    yield s
    s.close()


def _save(store: RunStore, key: str, result) -> None:
    store.mark_running(key, "classic", key, {"fn": "f", "arguments": {}})
    store.save_step(key, result, wall_s=1.5, peak_rss_mb=100.0, rss_delta_mb=10.0)


def test_a_saved_result_loads_back_exactly(store):
    assert not store.is_done("k1") and store.stored_problem("k1") == NOT_FINISHED
    _save(store, "k1", _sample())
    assert store.is_done("k1") and store.stored_problem("k1") is None
    loaded = store.load_result("k1")
    expected = _sample()
    assert type(loaded) is Sample
    assert (loaded.name, loaded.score, loaded.counts, loaded.table) == \
        (expected.name, expected.score, expected.counts, expected.table)
    for field in ("pixels", "labels"):
        got, want = getattr(loaded, field), getattr(expected, field)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert (store.folder / "arrays" / "k1.npz").is_file()


def test_a_result_without_arrays_has_no_arrays_file(store):
    _save(store, "k2", NoArrays(7))
    assert store.load_result("k2") == NoArrays(7)
    assert not (store.folder / "arrays" / "k2.npz").exists()
    row = store.db.execute("SELECT arrays_file FROM steps WHERE key='k2'").fetchone()
    assert row == (None,)


def test_a_running_step_is_not_done_and_has_no_result(store):
    store.mark_running("k3", "classic", "model:x", {"fn": "f"})
    assert not store.is_done("k3")
    with pytest.raises(StoreError, match="step k3 has no stored result"):
        store.load_result("k3")


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "one flipped byte"])
def test_a_damaged_arrays_file_makes_the_step_not_done(store, damage, caplog):
    _save(store, "k4", _sample())
    path = store.folder / "arrays" / "k4.npz"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:  # inside an array's data: the zip's directory still reads, only its CRC would tell
        payload = bytearray(path.read_bytes())
        payload[len(payload) // 3] ^= 0x01
        path.write_bytes(bytes(payload))
        with pytest.raises(StoreError, match="arrays of step k4 changed since they were stored; "
                                             "run the same `mnistlab study` again to recompute "
                                             "them$"):
            store.load_result("k4")
    with caplog.at_level(logging.WARNING, logger="mnistlab.engine.store"):
        assert not store.is_done("k4")
    assert store.stored_problem("k4") == "has a missing or corrupt arrays file"
    assert (f"{store.folder}: step k4 has a missing or corrupt arrays file; recomputing it"
            in caplog.messages)


def test_a_run_folder_stored_before_arrays_digests_still_loads(tmp_path):
    """Its steps have no digest: the zip's own checks are what there is."""
    store = RunStore(tmp_path / "run")
    _save(store, "k7", _sample())
    with store.db:
        store.db.execute("ALTER TABLE steps DROP COLUMN arrays_sha256")
    store.close()
    store = RunStore(tmp_path / "run")
    try:
        assert store.stored_problem("k7") is None
        assert np.array_equal(store.load_result("k7").pixels, _sample().pixels)
    finally:
        store.close()


def test_a_new_step_is_no_news(store, caplog):
    with caplog.at_level(logging.WARNING, logger="mnistlab.engine.store"):
        assert not store.is_done("never-seen")
    assert caplog.text == ""


@pytest.mark.parametrize("edit", ["extra field", "missing field", "missing array"])
def test_a_result_of_another_version_is_not_served(store, edit):
    _save(store, "k5", _sample())
    metrics = json.loads(store.db.execute("SELECT metrics FROM steps WHERE key='k5'")
                         .fetchone()[0])
    if edit == "extra field":
        metrics["added_later"] = 1
    elif edit == "missing field":
        del metrics["score"]
    else:  # an older version's own arrays file, whole (its digest is the file's)
        np.savez(store.folder / "arrays" / "k5.npz", pixels=np.zeros(2))
        with store.db:
            store.db.execute("UPDATE steps SET arrays_sha256=? WHERE key='k5'",
                             (sha256_file(store.folder / "arrays" / "k5.npz"),))
    with store.db:
        store.db.execute("UPDATE steps SET metrics=? WHERE key='k5'", (json.dumps(metrics),))
    assert store.stored_problem("k5") == "was stored by another version of mnistlab"
    assert not store.is_done("k5")
    if edit != "missing array":
        with pytest.raises(StoreError, match="was stored by another version of mnistlab"):
            store.load_result("k5")


def test_a_result_whose_class_is_gone_is_not_served(store):
    _save(store, "k6", NoArrays(1))
    with store.db:
        store.db.execute("UPDATE steps SET result_type='mnistlab.gone:Nothing' WHERE key='k6'")
    assert store.stored_problem("k6") == "was stored by another version of mnistlab"
    with store.db:
        store.db.execute("UPDATE steps SET result_type='test_store:Missing' WHERE key='k6'")
    assert store.stored_problem("k6") == "was stored by another version of mnistlab"


def test_split_and_join_are_inverse_and_reject_what_is_not_a_dataclass():
    type_path, fields, arrays = split_result(_sample())
    assert type_path == f"{Sample.__module__}:Sample"
    assert set(fields) == {"name", "score", "counts", "table"}
    assert set(arrays) == {"pixels", "labels"}
    again = join_result(type_path, fields, arrays)
    assert again.name == "svc" and np.array_equal(again.labels, [3, 1, 2])
    with pytest.raises(TypeError, match="a step must return a dataclass, got dict"):
        split_result({"a": 1})


class Options(BaseModel):
    depth: int = 3


def test_to_json_is_canonical_and_refuses_what_it_cannot_store(tmp_path):
    payload = {"b": np.float32(0.5), "a": np.arange(3), "p": tmp_path, "m": Options(),
               "i": np.int64(7)}
    assert to_json(payload) == to_json(dict(reversed(list(payload.items()))))  # key order
    assert json.loads(to_json(payload)) == {"a": [0, 1, 2], "b": 0.5, "i": 7, "m": {"depth": 3},
                                            "p": str(tmp_path)}
    assert to_json({"x": 1, "y": 2}).index('"x"') < to_json({"y": 2, "x": 1}).index('"y"')
    with pytest.raises(TypeError, match="cannot store object as JSON"):
        to_json({"x": object()})


def test_one_writer_at_a_time_naming_the_holder(tmp_path):
    first = RunStore(tmp_path / "run")
    with pytest.raises(StoreError, match=f"another mnistlab study is running in this run folder "
                                         f"\\(pid {os.getpid()}\\)"):
        RunStore(tmp_path / "run")
    reader = RunStore(tmp_path / "run", create=False)  # a reader needs no lock
    reader.close()
    first.close()
    second = RunStore(tmp_path / "run")  # released on close
    assert (tmp_path / "run" / ".mnistlab.lock").read_text() == str(os.getpid())
    second.close()


def test_a_reader_needs_an_existing_run_folder(tmp_path):
    with pytest.raises(StoreError, match="not a mnistlab run folder"):
        RunStore(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_a_corrupt_database_is_one_error_and_releases_the_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable mnistlab database"):
        RunStore(folder)
    (folder / DB_NAME).unlink()
    RunStore(folder).close()  # the failed open did not keep the lock


def test_temporary_files_of_a_killed_run_are_removed_on_open(tmp_path):
    RunStore(tmp_path / "run").close()
    stale = tmp_path / "run" / "arrays" / ".k.npz.abc123"
    stale.write_bytes(b"half")
    kept = tmp_path / "run" / "arrays" / "k.npz"
    kept.write_bytes(b"x")
    RunStore(tmp_path / "run").close()
    assert not stale.exists() and kept.exists()


def test_studies_are_recorded_and_the_last_finished_one_is_read(store):
    with pytest.raises(StoreError) as info:
        store.last_study()
    assert str(info.value) == (f"{store.folder}: no finished study in this run folder; run "
                               "`mnistlab study` to finish it")
    first = store.begin_study("digits", "fp1", "quick", "seed = 0\n", {"seed": 0})
    store.record_study_steps(first, ["a", "b"], "done")
    second = store.begin_study("digits", "fp2", "full", "seed = 1\n", {"seed": 1})
    assert second == first + 1
    study = store.last_study()  # the second has not finished
    assert (study["id"], study["fingerprint"], study["step_keys"], study["context"]) == \
        (first, "fp1", ["a", "b"], {"seed": 0})
    store.record_study_steps(second, ["c"], "done")
    study = store.last_study()
    assert (study["id"], study["profile"], study["config"], study["status"]) == \
        (second, "full", "seed = 1\n", "done")
    assert study["dataset"] == "digits"
    assert study["finished"] >= study["started"]


def test_a_running_study_is_read_by_its_id(store):
    """What the CLI draws a finished section from while the study still runs."""
    running = store.begin_study("digits", "fp1", "quick", "seed = 0\n", {"seed": 0})
    study = store.study(running)
    assert (study["id"], study["status"], study["step_keys"], study["fingerprint"]) == \
        (running, "running", [], "fp1")
    with pytest.raises(StoreError, match=f"no study {running + 1} in this run folder"):
        store.study(running + 1)


def test_step_rows_follow_the_keys_given(store):
    _save(store, "b", NoArrays(1))
    store.mark_running("a", "explore", "summary", {"fn": "mnistlab.x.f", "arguments": {}})
    store.mark_running("c", "classic", "model:svc-rbf", {
        "fn": "mnistlab.x.g", "own_process": True, "arguments": {"engine": "sklearnex"}})
    rows = store.step_rows(["a", "missing", "b", "c"])
    assert [r["key"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["fn"] == "mnistlab.x.f" and rows[0]["status"] == "running"
    # the cost table names the engine that fitted a model and a step of its own process
    assert (rows[0]["engine"], rows[0]["own_process"]) == (None, False)
    assert (rows[2]["engine"], rows[2]["own_process"]) == ("sklearnex", True)
    assert (rows[1]["wall_s"], rows[1]["peak_rss_mb"], rows[1]["rss_delta_mb"]) == \
        (1.5, 100.0, 10.0)
    assert rows[1]["section"] == "classic" and rows[1]["name"] == "b"


def test_a_run_folder_from_before_the_typed_context_is_upgraded(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript("""CREATE TABLE studies (id INTEGER PRIMARY KEY AUTOINCREMENT,
        started REAL NOT NULL, finished REAL, status TEXT NOT NULL, dataset TEXT NOT NULL,
        fingerprint TEXT NOT NULL, profile TEXT NOT NULL, config TEXT NOT NULL,
        step_keys TEXT NOT NULL DEFAULT '[]');
        INSERT INTO studies (started, finished, status, dataset, fingerprint, profile, config,
        step_keys) VALUES (1.0, 2.0, 'done', 'mnist', 'fp', 'full', '', '["k"]');""")
    db.commit()
    db.close()
    store = RunStore(folder, create=False)
    try:
        assert store.last_study()["context"] == {} and store.last_study()["step_keys"] == ["k"]
    finally:
        store.close()


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "dir", b"x")  # cannot replace a folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "f.bin"]  # no temp file left


def test_the_same_folder_path_as_a_string(tmp_path):
    store = RunStore(str(tmp_path / "run"))
    assert store.folder == Path(tmp_path / "run")
    store.close()


@dataclass
class Trained:
    accuracy: float
    weights_file: str
    weights_sha256: str


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_missing_or_altered_weights_file_makes_the_step_not_done(store, damage):
    from mnistlab.core.files import sha256_file

    weights = store.folder / "models" / "net-abc.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"\x01" * 1000)
    _save(store, "k7", Trained(0.9, "models/net-abc.safetensors", sha256_file(weights)))
    assert store.stored_problem("k7") is None
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(b"\x01" * 999 + b"\x02")
    assert store.stored_problem("k7") == \
        "has a missing or corrupt file models/net-abc.safetensors"
    assert not store.is_done("k7")


def test_a_file_field_without_its_digest_is_not_checked(store):
    @dataclass
    class Named:
        source_file: str

    Named.__module__, Named.__qualname__ = __name__, "NamedSource"
    globals()["NamedSource"] = Named
    _save(store, "k8", Named("nowhere/at/all.txt"))
    assert store.stored_problem("k8") is None


def test_step_rows_name_no_function_where_none_was_recorded(store):
    with store.db:
        store.db.execute("INSERT INTO steps (key, section, name, params, status) VALUES "
                         "('old', 'explore', 'summary', '\"a string from 0.1\"', 'done'), "
                         "('nofn', 'explore', 'gallery', '{\"arguments\": {}}', 'done')")
    assert [r["fn"] for r in store.step_rows(["old", "nofn"])] == ["", ""]


def test_an_unreadable_studies_table_is_one_error_naming_the_database(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    with sqlite3.connect(folder / DB_NAME) as db:
        db.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, started REAL)")
    store = RunStore(folder, create=False)
    try:
        with pytest.raises(StoreError) as info:
            store.last_study()
    finally:
        store.close()
    message = str(info.value)
    assert message.startswith(f"{folder / DB_NAME}: not a readable mnistlab database (")
    assert message.endswith("); rerun the study into another --out")
