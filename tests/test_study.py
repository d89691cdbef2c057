"""The study runner end to end: caching, partial recomputation, report rebuild, kill -9 resume."""

import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import types
import warnings

import numpy as np
import pytest

from conftest import FAST_TOML, make_images, run_cli
from mnistlab import build_config, build_report, load_dataset, run_study
from mnistlab.core.machine import usable_cores
from mnistlab.engine.store import RunStore
from mnistlab.sections import SECTIONS


def _finished(folder):
    """Done steps by name; none while the study has created its database but not its tables."""
    with sqlite3.connect(folder / "study.sqlite") as db:
        try:
            return dict(db.execute("SELECT name, finished FROM steps WHERE status='done'"))
        except sqlite3.OperationalError:  # no such table yet
            return {}


FAST = tomllib.loads(FAST_TOML)


def test_rerun_recomputes_nothing_and_a_changed_parameter_only_its_steps(tmp_path):
    data = load_dataset("digits")
    out = tmp_path / "run"
    first = run_study(data, build_config("quick", FAST), out, profile="quick")
    assert first.records and not any(r.cached for r in first.records)
    again = run_study(data, build_config("quick", FAST), out, profile="quick")
    assert all(r.cached for r in again.records)
    build_report(out)
    figures = out / "figures"
    drawn = {f.name: f.stat().st_mtime_ns for f in figures.glob("*.png")}
    build_report(out)  # nothing changed: every section's blocks come from the cache
    assert {f.name: f.stat().st_mtime_ns for f in figures.glob("*.png")} == drawn
    changed = build_config("quick", {**FAST, "explore": {"n_samples": 4}})
    partial = run_study(data, changed, out, profile="quick")
    assert [r.name for r in partial.computed] == ["gallery"]
    build_report(out)  # only the explore section is redrawn
    redrawn = {f.name for f in figures.glob("*.png") if f.stat().st_mtime_ns != drawn[f.name]}
    assert "explore-samples.png" in redrawn and all(n.startswith("explore-") for n in redrawn)
    # The PCA target feeds every clustering step: they are recomputed, the explore steps not.
    changed = build_config("quick", {**FAST, "unsupervised": {**FAST["unsupervised"],
                                                              "variance_target": 0.8}})
    partial = run_study(data, changed, out, profile="quick")
    assert {r.section for r in partial.computed} == {"unsupervised"}
    assert {r.name for r in partial.computed} >= {"pca", "kmeans_sweep", "gmm", "birch"}
    report = build_report(out)
    assert report.is_file() and (out / "figures" / "explore-samples.png").is_file()


def test_report_rebuilds_from_stored_results_without_recomputing(quick_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    before = _finished(out)
    (out / "report.html").unlink()
    result = run_cli("report", str(out))
    assert result.returncode == 0, result.stderr
    html = (out / "report.html").read_text()
    assert "Quick profile" in html and "1.3 Are the training and test sets balanced?" in html
    assert _finished(out) == before


def _flip_a_byte(path, where=0.5):
    payload = bytearray(path.read_bytes())
    payload[int(len(payload) * where)] ^= 0x01
    path.write_bytes(bytes(payload))


def test_one_flipped_byte_in_a_steps_arrays_recomputes_that_step(quick_run, tmp_path):
    """Before the store kept each arrays file's digest, the rerun said "0 computed", the
    section's drawing failed on "Bad CRC-32" and the command exited 0."""
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    with sqlite3.connect(out / "study.sqlite") as db:
        (arrays,) = db.execute("SELECT arrays_file FROM steps WHERE name='gallery'").fetchone()
    _flip_a_byte(out / "arrays" / arrays, where=0.3)
    result = run_cli("study", "--dataset", "mnist-5k", "--profile", "quick", "--quiet",
                     "--out", str(out), env={"MNISTLAB_DATA": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert " 1 step(s) computed" in result.stdout and "CRC" not in result.stderr
    assert "failed" not in result.stderr
    store = RunStore(out, create=False)
    try:
        assert store.stored_problem(arrays.removesuffix(".npz")) is None
    finally:
        store.close()


def test_a_damaged_drawn_section_is_drawn_again_not_put_in_the_report(quick_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    (drawn,) = (out / "figures").glob(".explore-*.json")
    kept = drawn.read_bytes()
    _flip_a_byte(drawn, where=0.6)  # inside a figure's base64 PNG
    build_report(out)
    assert drawn.read_bytes() == kept  # drawn again, from the stored results
    assert kept.split(b"\n", 1)[1].decode().count("data:image/png") >= 3


def test_a_quiet_study_prints_no_library_warning(quick_run):
    """Its one line is the note that mnist-5k stands in for MNIST (tested above)."""
    stderr = (quick_run.parent / "stderr.txt").read_text()
    assert "Warning" not in stderr and len(stderr.strip().splitlines()) == 1


def test_a_busy_machine_makes_no_figure_warn(quick_run, tmp_path, monkeypatch):
    """matplotlib warns when a legend left at its default place took over a second to place;
    a busy CI machine once made it so. Here every reading of its clock is 2 s after the last."""
    import matplotlib.legend

    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    for drawn in (out / "figures").glob(".*.json"):
        drawn.unlink()  # every section is drawn again
    clock = itertools.count(step=2.0)
    monkeypatch.setattr(matplotlib.legend, "time", types.SimpleNamespace(
        perf_counter=lambda: next(clock)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_report(out)
    assert next(clock) > 20  # legends were placed under the slow clock
    assert [str(w.message) for w in caught if "legend" in str(w.message)] == []


def test_the_cost_table_says_which_step_computed_in_a_process_of_its_own(quick_run):
    html = (quick_run / "report.html").read_text()
    assert "<td>embedding (own process)</td>" in html and "(own process)</td>" in html
    assert html.count("(own process)</td>") == 1 and "its peak is that process" in html


def _copy_without_figures(quick_run, tmp_path):
    """A copy of the shared run folder with no figure drawn: (folder, its study, step rows)."""
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    shutil.rmtree(out / "figures")
    store = RunStore(out, create=False)
    try:
        study = store.last_study()
        return out, study, store.step_rows(study["step_keys"])
    finally:
        store.close()


def test_sections_drawn_before_the_report_are_not_drawn_again(quick_run, tmp_path):
    from mnistlab.report import draw_sections

    out, study, rows = _copy_without_figures(quick_run, tmp_path)
    draw_sections(out, study["id"], {"classic": [r["key"] for r in rows
                                                 if r["section"] == "classic"]})
    drawn = {f.name: f.stat().st_mtime_ns for f in (out / "figures").glob("*.png")}
    assert "classic-confusion.png" in drawn and all(n.startswith("classic-") for n in drawn)
    build_report(out)
    after = {f.name: f.stat().st_mtime_ns for f in (out / "figures").glob("*.png")}
    assert {n: after[n] for n in drawn} == drawn  # found drawn, not drawn again
    assert "deep-curves.png" in after and "embedding-scatter.png" in after


def test_sections_drawn_in_the_background_are_drawn_by_another_process(quick_run, tmp_path,
                                                                        monkeypatch):
    """What the study hands over is drawn in a process of its own (here, drawing would fail),
    and the report built next finds every section drawn."""
    import mnistlab.report as render
    from mnistlab.report import BackgroundDrawing

    out, study, rows = _copy_without_figures(quick_run, tmp_path)

    def not_here(*args):
        raise AssertionError("drawn in the study's process")

    monkeypatch.setattr(render, "_draw", not_here)
    with BackgroundDrawing(out) as drawing:
        for section in [s.NAME for s in SECTIONS]:
            drawing(study["id"], {section: [r["key"] for r in rows if r["section"] == section]})
        for future, _, _ in drawing._queued:  # none left for finish() to draw here
            future.result(timeout=120)
        drawing.finish()
    assert build_report(out).is_file()  # with _draw failing: every section found drawn
    assert {"explore-samples.png", "classic-confusion.png", "deep-curves.png",
            "embedding-scatter.png"} <= {f.name for f in (out / "figures").glob("*.png")}


@pytest.mark.skipif(usable_cores() < 2, reason="one core: one drawing process")
def test_sections_that_end_together_are_drawn_side_by_side(quick_run, tmp_path):
    """The embedding and the networks often end together: one process drew their sections
    one after the other, after the study's last step."""
    from mnistlab.report import BackgroundDrawing

    out, study, rows = _copy_without_figures(quick_run, tmp_path)
    with BackgroundDrawing(out) as drawing:
        drawing(study["id"], {section: [r["key"] for r in rows if r["section"] == section]
                              for section in ("unsupervised", "deep")})
        drawing.finish()
    written = {f.name: f.stat().st_mtime_ns for f in (out / "figures").glob("*.png")}
    unsupervised = [t for name, t in written.items() if not name.startswith("deep-")]
    deep = [t for name, t in written.items() if name.startswith("deep-")]
    assert len(unsupervised) >= 5 and len(deep) == 4
    assert min(deep) < max(unsupervised) and min(unsupervised) < max(deep)  # overlapping


def test_a_drawing_process_that_cannot_start_leaves_the_drawing_to_the_report(
        tmp_path, monkeypatch, caplog):
    from concurrent.futures.process import BrokenProcessPool

    import mnistlab.report as render

    class Broken:
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, *args):
            raise BrokenProcessPool("a child process terminated abruptly")

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(render, "ProcessPoolExecutor", Broken)
    with render.BackgroundDrawing(tmp_path) as drawing:
        drawing(1, {"classic": ["key"]})  # the study goes on
        drawing.finish()
    assert "drawing classic in the background failed: a child process terminated" in caplog.text


def test_report_of_results_stored_by_another_version_fails_in_one_line(quick_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    with sqlite3.connect(out / "study.sqlite") as db:  # as if an older EmbeddingResult
        key, metrics = db.execute("SELECT key, metrics FROM steps WHERE name='embedding'").fetchone()
        db.execute("UPDATE steps SET metrics=? WHERE key=?",
                   (metrics.replace('"deskewed"', '"was_never_a_field"'), key))
    result = run_cli("report", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "stored by another version of mnistlab" in result.stderr and key in result.stderr


def test_default_dataset_falls_back_to_mnist_5k_in_one_line_and_names_the_folder(quick_run):
    """No --dataset and no --out: one line says mnist-5k stands in for MNIST, and the run folder
    is named after the dataset used and the profile."""
    lines = (quick_run.parent / "stderr.txt").read_text().strip().splitlines()
    assert len(lines) == 1 and "using the bundled mnist-5k" in lines[0]
    assert quick_run.name == "mnist-5k-quick"
    assert "mnist-5k" in (quick_run / "report.html").read_text()


def test_kill_9_mid_study_then_rerun_finishes_without_recomputing(tmp_path, fast_config):
    # The quick study of 6,000 images takes many seconds, so the kill lands mid-study.
    x_tr, y_tr = make_images(5000, seed=5)
    x_te, y_te = make_images(1000, seed=6)
    np.savez(tmp_path / "big.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "mnistlab", "study", "--dataset", f"npz:{tmp_path / 'big.npz'}",
            "--out", str(out), "--quiet", "--profile", "quick", "--config", str(fast_config)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    done = {}
    while time.time() < deadline and proc.poll() is None:
        if (out / "study.sqlite").exists():
            try:
                done = _finished(out)
            except sqlite3.OperationalError:
                done = {}
            if done:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the study ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _finished(out)
    assert done and "train:mlp-1" not in done
    assert not (out / "report.html").exists()
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = _finished(out)
    assert {k: after[k] for k in done} == done  # finished steps kept, not recomputed
    assert "train:mlp-1" in after and (out / "report.html").is_file()
    store = RunStore(out, create=False)
    study = store.last_study()
    for key in study["step_keys"]:
        store.load_result(key)  # every stored file is complete
    store.close()
    leftovers = [p for p in (out / "arrays").iterdir() if not p.name.endswith(".npz")]
    assert leftovers == []


def test_a_result_stored_by_another_version_is_recomputed_by_the_advised_rerun(
        tmp_path, fast_digits_run):
    out = tmp_path / "run"
    shutil.copytree(fast_digits_run[0], out)
    args = (*fast_digits_run[1], "--out", str(out))
    with sqlite3.connect(out / "study.sqlite") as db:  # as if an older TreeDepth
        key, metrics = db.execute("SELECT key, metrics FROM steps WHERE name='tree_depth'"
                                  ).fetchone()
        db.execute("UPDATE steps SET metrics=? WHERE key=?",
                   (metrics.replace('"best_depth"', '"was_never_a_field"'), key))
    failed = run_cli("report", str(out))
    assert failed.returncode == 2 and "run the same `mnistlab study` again" in failed.stderr
    rerun = run_cli(*args)  # what the message advises
    assert rerun.returncode == 0, rerun.stderr
    assert "1 step(s) computed" in rerun.stdout
    assert run_cli("report", str(out)).returncode == 0


def test_a_missing_arrays_file_or_weights_file_is_recomputed(tmp_path, fast_digits_run):
    out = tmp_path / "run"
    shutil.copytree(fast_digits_run[0], out)
    args = (*fast_digits_run[1], "--out", str(out))
    with sqlite3.connect(out / "study.sqlite") as db:
        gallery = db.execute("SELECT arrays_file FROM steps WHERE name='gallery'").fetchone()[0]
        pca = db.execute("SELECT arrays_file FROM steps WHERE name='pca'").fetchone()[0]
    (out / "arrays" / gallery).unlink()
    (out / "arrays" / pca).write_bytes(b"PK\x03\x04 truncated")
    (weights,) = (out / "models").glob("mlp-1-*.safetensors")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # one weight altered
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "3 step(s) computed" in rerun.stdout and "Traceback" not in rerun.stderr
    from mnistlab.models.deep import TorchClassifier

    TorchClassifier.load(weights)  # rewritten whole


def test_hostile_class_and_dataset_names_are_escaped_in_the_report(tmp_path, fast_config):
    from PIL import Image

    root = tmp_path / "<b>data&set"
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 10)):
        for i, cls in enumerate(("<i>zero", "a&b")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for k in range(n):  # noise, and a bright band whose place gives the class
                pixels = rng.integers(0, 80, (12, 12)).astype(np.uint8)
                pixels[6 * i:6 * i + 3] += 150
                Image.fromarray(pixels).save(folder / f"{k}.png")
    out = tmp_path / "run"
    result = run_cli("study", "--dataset", f"folder:{root}", "--profile", "quick", "--quiet",
                     "--out", str(out), "--config", str(fast_config))
    assert result.returncode == 0, result.stderr
    html = (out / "report.html").read_text()
    assert "<i>zero" not in html and "<b>data" not in html and "a&b" not in html
    assert "&lt;i&gt;zero" in html and "a&amp;b" in html


def test_a_second_study_on_the_same_folder_is_refused_in_one_line(tmp_path, fast_config):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "mnistlab", "study", "--dataset", "digits", "--profile",
            "quick", "--quiet", "--out", str(out), "--config", str(fast_config)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((out / "study.sqlite").is_file() and _finished(out)):  # it has begun
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "another mnistlab study is running" in lines[0]
    assert f"pid {first.pid}" in lines[0]
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    with sqlite3.connect(out / "study.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and " 0 step(s) computed" in again.stdout, again.stderr


def test_a_corrupt_or_truncated_database_is_one_line(quick_run, tmp_path):
    for how in ("garbage", "truncated"):
        out = tmp_path / how
        shutil.copytree(quick_run, out)
        for extra in out.glob("study.sqlite-*"):  # the WAL would let sqlite repair it
            extra.unlink()
        db = out / "study.sqlite"
        data = db.read_bytes()
        db.write_bytes(b"not a database\n" * 64 if how == "garbage" else data[:len(data) // 3])
        for args in (("report", str(out)),
                     ("study", "--dataset", "digits", "--profile", "quick", "--quiet", "--out",
                      str(out))):
            result = run_cli(*args)
            assert result.returncode == 2, (how, args, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "not a readable mnistlab database" in lines[0], lines


def test_report_headings_are_numbered_once_each(quick_run):
    import re

    html = (quick_run / "report.html").read_text()
    numbers = re.findall(r"<h3>(\d+\.\d+(?:-\d+\.\d+)?) ", html)
    assert len(numbers) > 10 and len(numbers) == len(set(numbers)), numbers


def test_a_rerun_with_nothing_to_compute_imports_neither_torch_nor_scikit_learn(quick_run,
                                                                                 tmp_path):
    """What keeps such a rerun under 2 s: about a second each, and nothing there needs them."""
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    env = {"MNISTLAB_DATA": str(tmp_path / "cache"), "PYTHONPROFILEIMPORTTIME": "1"}
    args = ("study", "--dataset", "mnist-5k", "--profile", "quick", "--quiet", "--out", str(out))
    for attempt in ("first (the split is made and kept)", "second"):
        result = run_cli(*args, env=env)
        assert result.returncode == 0 and " 0 step(s) computed" in result.stdout, attempt
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "mnistlab.study.runner" in imported
    assert not {"torch", "sklearn", "scipy.stats"} & imported


def test_a_rerun_with_the_progress_display_counts_the_steps_found_done(quick_run, tmp_path):
    """The embedding, computed apart, is found done before its section's bar exists."""
    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    result = run_cli("study", "--dataset", "mnist-5k", "--profile", "quick", "--out", str(out),
                     env={"MNISTLAB_DATA": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert " 0 step(s) computed" in result.stdout
    assert "failed" not in result.stderr, result.stderr  # a drawing found done is no failure
