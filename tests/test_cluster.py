"""Steps on a real Dask cluster on 127.0.0.1: the same results as in-process, a worker killed
with SIGKILL in the middle of a study, the scheduler going away, networks trained in their own
process on a daemonic worker."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FAST_TOML, run_cli

pytest.importorskip("distributed")
pytestmark = [pytest.mark.slow, pytest.mark.cli]

BIN = Path(sys.executable).parent
COSTS = ("_s", "peak", "rss", "seconds", "pid", "threads", "size_mb", "per_10k", "_mb",
         "worker")


def _without_costs(value):
    if isinstance(value, dict):
        return {k: _without_costs(v) for k, v in value.items()
                if not any(c in k for c in COSTS)}
    if isinstance(value, list):
        return [_without_costs(v) for v in value]
    return value


def _steps(folder: Path) -> dict:
    with sqlite3.connect(folder / "study.sqlite") as db:
        return {name: (key, status, json.loads(metrics or "null")) for name, key, status, metrics
                in db.execute("SELECT section || '.' || name, key, status, metrics FROM steps")}


@pytest.fixture
def one_thread_config(tmp_path):
    """The fast study with one thread per network: float reductions then add in the same
    order in both runs (with 2 threads instead of 1, k-means inertia and network losses
    differ in the last digits, and training carries that on)."""
    path = tmp_path / "one-thread.toml"
    path.write_text(FAST_TOML.replace("[deep]\n", "[deep]\nthreads = 1\n", 1))
    return path


def test_workers_give_the_same_keys_and_metrics_as_in_process(tmp_path, one_thread_config):
    args = ("study", "--dataset", "digits", "--profile", "quick", "--quiet", "--config",
            str(one_thread_config))
    here = run_cli(*args, "--out", str(tmp_path / "here"), env={"OMP_NUM_THREADS": "1"})
    assert here.returncode == 0, here.stderr
    there = run_cli(*args, "--out", str(tmp_path / "there"), "--workers", "2")
    assert there.returncode == 0, there.stderr
    assert "Traceback" not in there.stderr and "INFO" not in there.stderr
    a, b = _steps(tmp_path / "here"), _steps(tmp_path / "there")
    assert {n: s[0] for n, s in a.items()} == {n: s[0] for n, s in b.items()}  # the same keys
    assert all(s[1] == "done" for s in b.values())
    for name in a:
        assert _without_costs(a[name][2]) == _without_costs(b[name][2]), name
    # the weights came back from the worker to the run folder, and load
    assert list((tmp_path / "there" / "models").glob("mlp-1-*.safetensors"))
    board = json.loads((tmp_path / "there" / "leaderboard.json").read_text())
    assert {r["model"] for r in board["models"]} == {"gaussian-nb", "logistic", "mlp-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _done_count(folder: Path) -> int:
    try:
        with sqlite3.connect(folder / "study.sqlite", timeout=5) as db:
            return db.execute("SELECT count(*) FROM steps WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers, started with Dask's own commands."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "True"}
    scheduler = subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--no-dashboard"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([BIN / "dask", "worker", address, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(2)]
    processes = [scheduler, *workers]
    try:
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, scheduler, workers
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def test_a_worker_killed_mid_study_costs_nothing_finished(cluster, tmp_path, fast_config):
    address, _, workers = cluster
    out = tmp_path / "run"
    study = subprocess.Popen([sys.executable, "-m", "mnistlab", "study", "--dataset", "digits",
                              "--profile", "quick", "--quiet", "--out", str(out), "--config",
                              str(fast_config), "--cluster", address],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _done_count(out) >= 4 or study.poll() is not None, 180, "4 steps")
    assert study.poll() is None, study.communicate()
    workers[0].send_signal(signal.SIGKILL)  # both workers are busy: steps are queued
    stdout, stderr = study.communicate(timeout=600)
    assert study.returncode == 0, stderr
    assert "Traceback" not in stderr
    steps = _steps(out)
    assert steps and all(status == "done" for _, status, _ in steps.values())
    rerun = run_cli("study", "--dataset", "digits", "--profile", "quick", "--quiet", "--out",
                    str(out), "--config", str(fast_config))
    assert rerun.returncode == 0 and " 0 step(s) computed" in rerun.stdout, rerun.stderr


def test_the_scheduler_going_away_is_one_line_and_the_study_resumes(cluster, tmp_path,
                                                                     fast_config):
    address, scheduler, _ = cluster
    out = tmp_path / "run"
    args = ["study", "--dataset", "digits", "--profile", "quick", "--quiet", "--out", str(out),
            "--config", str(fast_config)]
    study = subprocess.Popen([sys.executable, "-m", "mnistlab", *args, "--cluster", address],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _done_count(out) >= 3 or study.poll() is not None, 180, "3 steps")
    scheduler.send_signal(signal.SIGKILL)
    _, stderr = study.communicate(timeout=300)
    assert study.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "run the same command again to resume" in lines[0], stderr
    finished = _done_count(out)
    assert finished >= 3
    resumed = run_cli(*args)  # in-process this time: nothing finished is computed again
    assert resumed.returncode == 0, resumed.stderr
    total = len(_steps(out))
    assert f"{total - finished} step(s) computed, {finished} already done" in resumed.stdout


def test_an_unreachable_cluster_or_both_executors_is_one_line(tmp_path):
    port = _free_port()
    result = run_cli("study", "--dataset", "digits", "--profile", "quick", "--quiet", "--out",
                     str(tmp_path / "run"), "--cluster", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Dask scheduler answers there" in lines[0], result.stderr
    # told at once: Dask's client would retry the refused connection for 10 s first
    assert f"(nothing listens on 127.0.0.1:{port})" in lines[0]
    both = run_cli("study", "--dataset", "digits", "--workers", "2", "--cluster", "tcp://x:1")
    assert both.returncode == 2 and "--workers and --cluster: choose one" in both.stderr


def test_without_dask_the_options_say_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['distributed'] = None; sys.argv = ['mnistlab', 'study', "
            f"'--dataset', 'digits', '--quiet', '--out', {str(tmp_path / 'run')!r}, "
            "'--workers', '2']; from mnistlab.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --cluster/--workers need Dask: pip install "
                                     "'mnistlab[dask]' (dask and distributed)")


def _trained_pid_in_daemon(queue):
    from mnistlab.models.deep_process import run_in_child

    queue.put((os.getpid(), run_in_child(os.getpid)))


@dataclass
class ThreadCounts:
    blas_and_openmp: list[int]
    torch: int
    numba: int
    malloc_trim: str | None  # the variable the processes a step starts inherit


def _thread_counts(data) -> ThreadCounts:
    import numba  # imported inside the step, as the sections import umap
    import torch
    from threadpoolctl import threadpool_info

    return ThreadCounts(sorted({p["num_threads"] for p in threadpool_info()}),
                        torch.get_num_threads(), numba.get_num_threads(),
                        os.environ.get("MALLOC_TRIM_THRESHOLD_"))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_step_on_a_worker_gets_its_share_of_the_cores(workers, monkeypatch):
    """BLAS, OpenMP, torch and numba in a step use the host's cores over the steps its workers
    run at once: no oversubscription (numba unlimited made an embedding on one worker slow a
    network training on the other 2.1x), no idle core. And Dask's malloc setting, which made a
    network train 2x slower, is not passed on (the workers inherit it here from this process,
    as `dask worker` sets it)."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    import cloudpickle

    from mnistlab.engine.cluster import compute_on_worker, dask_client, host_threads
    from mnistlab.engine.step import Step

    share = max(1, len(os.sched_getaffinity(0)) // workers)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the probe step is defined here
    try:
        with dask_client(workers=workers) as client:
            out = client.submit(compute_on_worker, Step("probe", _thread_counts, {}), None, {},
                                None, host_threads(client), pure=False).result(timeout=120)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert out["result"] == ThreadCounts([share], share, share, None)


def test_a_daemonic_worker_still_trains_in_a_child_process():
    """Dask's workers are daemonic processes, which multiprocessing refuses children."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    daemon = context.Process(target=_trained_pid_in_daemon, args=(queue,), daemon=True)
    daemon.start()
    parent, child = queue.get(timeout=120)
    daemon.join(timeout=60)
    assert daemon.exitcode == 0 and child not in (parent, os.getpid())


def test_seeds_make_one_study_each_and_a_summary_of_them(tmp_path, fast_config):
    out = tmp_path / "runs"
    result = run_cli("study", "--dataset", "digits", "--seeds", "0,1", "--profile", "quick",
                     "--quiet", "--config", str(fast_config), "--out", str(out), "--workers",
                     "2")
    assert result.returncode == 0, result.stderr
    folders = [out / "digits-quick-seed0", out / "digits-quick-seed1"]
    boards = [json.loads((f / "leaderboard.json").read_text()) for f in folders]
    assert [b["seed"] for b in boards] == [0, 1]
    summary = json.loads((out / "summary.json").read_text())
    (digits,) = summary["datasets"]
    assert digits["seeds"] == [0, 1] and len(digits["models"]) == 3
    for row in digits["models"]:
        accs = [next(r["test_acc"] for r in b["models"] if r["model"] == row["model"])
                for b in boards]
        assert row["test_acc"] == accs
        assert row["test_acc_mean"] == pytest.approx(sum(accs) / 2)
        assert row["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    html = (out / "summary.html").read_text()
    assert 'href="digits-quick-seed1/report.html"' in html
    bad = run_cli("study", "--dataset", "digits", "--seeds", "0,x", "--out", str(out))
    assert bad.returncode == 2 and "--seeds 0,x: give integers" in bad.stderr
