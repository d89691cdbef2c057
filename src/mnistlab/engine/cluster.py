"""Running a study's steps as Dask tasks: on a cluster (``--cluster tcp://HOST:8786``) or on a
local one of single-threaded workers (``--workers N``).

The study is already a graph of cached steps, each naming the steps whose results it needs;
here every step whose inputs are done is submitted at once, and the driver stores each result
as it comes back. Only the driver writes the run folder: a worker computes, then returns the
result, its wall time, its own peak memory and the bytes of the files the step wrote (trained
models). The dataset goes to the workers once (scattered), never once per task.

Dask is an optional extra (``pip install 'mnistlab[dask]'``), imported only when asked for.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import MnistlabError, StepFailed
from ..core.files import atomic_write_bytes
from ..core.machine import usable_cores
from .measure import Measured, given_cores
from .plan import Progress, StepRecord, StudyGraph, per_argument
from .store import NOT_FINISHED

INSTALL = "pip install 'mnistlab[dask]' (dask and distributed)"


class ClusterError(MnistlabError):
    """The cluster cannot be reached, went away, or Dask is not installed."""


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster/--workers need Dask: {INSTALL}") from None
    return distributed


@contextmanager
def dask_client(address: str | None = None, workers: int = 0, dashboard: bool = False):
    """A client of the cluster at ``address``, or of a local cluster of ``workers``
    single-threaded worker processes on 127.0.0.1 (closed on exit)."""
    distributed = _import_distributed()
    import logging

    # Dask's own INFO lines (and the tracebacks it logs while closing connections on
    # shutdown) are not the user's business; failures reach us through the futures.
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):  # its modules set their own levels
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if address:
        try:
            _check_listening(address)
            client = distributed.Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"--cluster {address}: no Dask scheduler answers there "
                               f"({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    # a worker process runs one step at a time; each step limits BLAS, OpenMP, torch and numba
    # to its share of the cores, so N workers use N cores without oversubscription
    import dask

    # Dask starts workers with MALLOC_TRIM_THRESHOLD_ (see _keep_freed_memory) and one BLAS
    # thread; OpenBLAS can never use more than it started with, so a worker that has a whole
    # machine could not use it. Ours start with the defaults; each step sets its own threads.
    spawn_environ = "distributed.nanny.pre-spawn-environ."
    with dask.config.set({spawn_environ + name: None for name in (
            "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS")}):
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=":8787" if dashboard else None, silence_logs=logging.CRITICAL)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _file_fields(result: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(result)
            if f.name.endswith("_file") and isinstance(getattr(result, f.name), str)]


def host_threads(client) -> dict[str, int]:
    """Per host: how many steps its workers run at once (the sum of their threads)."""
    shares: dict[str, int] = {}
    for worker in client.scheduler_info()["workers"].values():
        shares[worker["host"]] = shares.get(worker["host"], 0) + int(worker["nthreads"])
    return shares


def threads_per_step(address: str, shares: dict[str, int]) -> int:
    """A step's share of its host's cores: the cores over the steps the host's workers run at
    once (two one-thread workers on 2 cores: 1 each; one on 8 cores: 8). A worker that
    joined after the study started gets 1."""
    from urllib.parse import urlsplit

    share = shares.get(urlsplit(address).hostname or "")
    return max(1, usable_cores() // share) if share else 1


def _keep_freed_memory() -> None:
    """Undo the malloc tuning ``dask worker`` starts its workers with.

    Dask sets MALLOC_TRIM_THRESHOLD_=65536 so that freed memory goes back to the system at
    once; glibc then also stops raising its mmap threshold, and numpy and torch map and unmap
    pages at every large allocation: an epoch of the seed CNN took 34.5 s on such a worker
    (and 38.3 s in a plain process with the variable) instead of 16.9 s. The processes a step
    starts (network training) get glibc's defaults; this worker gets the thresholds glibc's
    own dynamic tuning reaches (mallopt: no library exposes it).
    """
    if os.environ.pop("MALLOC_TRIM_THRESHOLD_", None) is None:
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 32 * 2**20)  # DEFAULT_MMAP_THRESHOLD_MAX on 64 bits
        libc.mallopt(m_trim_threshold, 64 * 2**20)  # twice it, as the dynamic tuning sets
    except (OSError, AttributeError):  # not glibc: the variable meant nothing there
        pass


def input_files(folder: Path, inputs: dict) -> dict[str, bytes]:
    """The files the results a step receives name (``<x>_file`` fields, relative to the run
    folder), by relative path: a step that reads a model another step saved gets its file on
    a worker that shares no disk with the run folder."""
    files = {}
    for value in inputs.values():
        for result in value.values() if isinstance(value, dict) else [value]:
            if dataclasses.is_dataclass(result):
                for name in _file_fields(result):
                    relative = getattr(result, name)
                    files[relative] = (folder / relative).read_bytes()
    return files


def compute_on_worker(step, data, inputs: dict, files_key: str | None,
                      shares: dict[str, int] | None = None,
                      given_files: dict[str, bytes] | None = None) -> dict:
    """Run on a Dask worker: one step with its share of the host's cores (``shares``: see
    :func:`host_threads`; without it, one thread), in a scratch folder for the files it
    writes, where ``given_files`` (see :func:`input_files`) are put first; returns the result,
    its cost and the bytes of the files it wrote."""
    from distributed import get_worker
    from threadpoolctl import threadpool_limits

    worker = get_worker()
    threads = threads_per_step(worker.address, shares) if shares else 1
    _keep_freed_memory()
    os.environ["LOKY_MAX_CPU_COUNT"] = str(threads)  # scikit-learn's n_jobs=-1: this many
    # read by torch if first imported now, and by the process a network trains in
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    # numba (UMAP, pynndescent) reads this when first imported; without it, an embedding on one
    # worker ran two threads and slowed a network training on the other worker 2.1x
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="mnistlab-step-") as scratch:
        if files_key is not None:
            inputs = {**inputs, "files_dir": Path(scratch) / "models", "files_key": files_key}
        for relative, payload in (given_files or {}).items():
            path = Path(scratch) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        import joblib

        with (threadpool_limits(threads), joblib.parallel_config(backend="threading"),
              given_cores(threads)):
            _set_torch_threads(threads)
            with Measured() as cost:
                result = step(data, **inputs)
        for name in _file_fields(result):
            relative = getattr(result, name)
            if relative not in (given_files or {}):
                files[relative] = (Path(scratch) / relative).read_bytes()
    return {"result": result, "wall_s": cost.wall_s, "peak_mb": cost.peak_mb,
            "delta_mb": cost.delta_mb, "files": files, "worker": get_worker().address}


def _set_torch_threads(threads: int) -> None:
    """torch's and numba's threads, where a step already imported them (else the environment
    variables set above apply when they are imported)."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    numba = sys.modules.get("numba")
    if numba is not None:  # it cannot go above the threads it was imported with
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _check_listening(address: str) -> None:
    """Raises OSError at once when nothing listens at a TCP ``address``: Dask's client retries
    a refused connection until its timeout (10 s of waiting for a mistyped port). A scheduler
    that is there logs the probe at INFO ("closed before handshake"). Other schemes (tls,
    ucx...) are left to the client."""
    from distributed.comm import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":
        return
    host, port = parse_host_port(location)
    try:
        socket.create_connection((host, port), timeout=10).close()
    except ConnectionRefusedError:
        raise OSError(f"nothing listens on {host}:{port}") from None


class DaskExecutor:
    """Runs the steps of every study given to it as Dask tasks on ``client``'s cluster: one
    graph, each step submitted as soon as the steps it needs are done, each result stored by
    this process as it comes back. Each dataset is scattered once."""

    def __init__(self, client):
        self.client = client

    def run(self, graphs: list[StudyGraph], progress: Progress) -> list[dict[str, StepRecord]]:
        total = sum(len(graph.planned) for graph in graphs)
        studies = f" of {len(graphs)} studies" if len(graphs) > 1 else ""
        progress.section(f"{total} steps{studies} on the Dask cluster", total)
        return _run_graphs(self.client, graphs, progress)


def _run_graphs(client, graphs: list[StudyGraph], progress: Progress
                ) -> list[dict[str, StepRecord]]:
    from distributed import as_completed

    records: list[dict[str, StepRecord]] = [{} for _ in graphs]
    pending = []
    for index, graph in enumerate(graphs):
        for item in graph.planned:
            problem = graph.store.stored_problem(item.key)
            if problem is None:
                records[index][item.key] = StepRecord(item.section, item.step.name, item.key,
                                                      True, 0.0)
                progress.advance()
            else:
                pending.append((index, item, problem))
        graph.notify(records[index])
    if not pending:
        return records
    scattered = _scatter(client, [graph.data for graph in graphs])
    shares = host_threads(client)
    running: dict[Any, tuple] = {}
    finished = as_completed()

    def submit_ready() -> None:
        for entry in list(pending):
            index, item, problem = entry
            store, data = graphs[index].store, graphs[index].data
            if not all(k in records[index] for k in item.needed):
                continue
            pending.remove(entry)
            inputs = per_argument(item.needed_keys, store.load_result)
            store.mark_running(item.key, item.section, item.step.name,
                               {"fn": item.step.qualname, "arguments": item.step.arguments})
            given = input_files(store.folder, inputs) if item.step.files else {}
            future = client.submit(compute_on_worker, item.step, scattered[data.fingerprint],
                                   inputs, item.key if item.step.files else None, shares,
                                   given, pure=False,
                                   key=f"{item.where}-{index}-{item.key}")
            running[future] = (index, item)
            finished.add(future)
            if problem != NOT_FINISHED:
                progress.step(f"{item.step.name} (recomputing: it {problem})")

    submit_ready()
    for future in finished:
        index, item = running.pop(future)
        out = _outcome(client, future, item)
        _store(graphs[index].store, item, out)
        records[index][item.key] = StepRecord(item.section, item.step.name, item.key, False,
                                              out["wall_s"])
        progress.step(item.step.name)
        progress.advance()
        graphs[index].notify(records[index])
        submit_ready()
    if pending:  # cannot happen with a well-formed plan: every need is an earlier step
        raise RuntimeError(f"steps never became ready: {[e[1].step.name for e in pending]}")
    return records


def _scatter(client, datasets: list) -> dict[str, Any]:
    """Each distinct dataset to every worker, once (not once per task)."""
    scattered: dict[str, Any] = {}
    try:
        for data in datasets:
            if data.fingerprint not in scattered:
                scattered[data.fingerprint] = client.scatter(data, broadcast=True, hash=False)
    except OSError as exc:
        raise ClusterError(f"the Dask cluster went away ({exc})") from None
    return scattered


def _outcome(client, future, item) -> dict:
    """The worker's answer, or the one-line error a local run would give."""
    try:
        return future.result()
    except MnistlabError:
        raise
    except Exception as exc:
        if client.status not in ("running", "connecting"):
            raise ClusterError("the Dask scheduler went away; finished steps are saved: run "
                               "the same command again to resume") from None
        if type(exc).__name__ in ("CancelledError", "FutureCancelledError", "CommClosedError"):
            raise ClusterError(f"the Dask cluster lost {item.section}.{item.step.name} "
                               f"({type(exc).__name__}); finished steps are saved: run the "
                               "same command again to resume") from None
        raise StepFailed(f"{item.section}.{item.step.name}", exc) from exc


def _store(store, item, out: dict) -> None:
    """The files the step wrote on its worker, then its result: written here only."""
    for relative, payload in out["files"].items():
        target = store.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, payload)
    store.save_step(item.key, out["result"], wall_s=out["wall_s"], peak_rss_mb=out["peak_mb"],
                    rss_delta_mb=out["delta_mb"])
