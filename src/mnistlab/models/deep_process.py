"""Training a network of the deep section in a fresh process, so that its peak memory is its
own (what the seed measured by hand with mprof). A module of its own, apart from the sections
package, so that a child process imports only torch and the estimator.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..engine.measure import Measured
from .deep import TorchClassifier


def run_in_child(fn, *args):
    """Call ``fn(*args)`` in a freshly spawned Python process and return its result.

    The section trains each network this way, so that each one's peak memory is its own.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import current_process

    if current_process().daemon:  # a Dask worker: multiprocessing refuses it children
        return _run_in_subprocess(fn, *args)
    with ProcessPoolExecutor(max_workers=1, mp_context=_training_context()) as pool:
        return pool.submit(fn, *args).result()


def _training_context():
    """How a training process starts: forked from a server process that imported torch and
    this module once, where the platform has one (0.2 s a network instead of 2.8 s for a
    fresh interpreter that imports them again and tears them down; Fashion-MNIST's section
    starts six). The fork happens before any torch thread exists, so each child sets its own."""
    from multiprocessing import get_all_start_methods, get_context

    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _run_in_subprocess(fn, *args):
    """``fn(*args)`` in a plain new Python process (``python -m mnistlab.models.deep_process``),
    the call and its answer passed through files: what multiprocessing does with its pipes,
    between two processes of this program, in a form a daemonic process may start."""
    with tempfile.TemporaryDirectory(prefix="mnistlab-child-") as scratch:
        call, answer = Path(scratch) / "call.pickle", Path(scratch) / "answer.pickle"
        call.write_bytes(pickle.dumps((fn, args)))
        child = subprocess.run([sys.executable, "-m", "mnistlab.models.deep_process", str(call),
                                str(answer)], capture_output=True, text=True)
        if child.returncode != 0 or not answer.is_file():
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the training process exited with status {child.returncode}: "
                               f"{last}")
        succeeded, value = pickle.loads(answer.read_bytes())
    if not succeeded:
        raise value
    return value


def fit_evaluate(arch: str, params: dict, x_train, y_train, x_test, y_test, threads: int,
                 weights_path: str | None, own_process: bool = False) -> dict:
    """Train, evaluate on the test images, save; report the peak RSS (the process's own
    high-water mark when it runs in a process of its own, else sampled)."""
    if threads:
        torch.set_num_threads(threads)
    with Measured(interval_s=None if own_process else 0.01) as cost:
        clf = TorchClassifier(arch, **params).fit(x_train, y_train)
        started = time.perf_counter()
        proba = clf.predict_proba(x_test)
        infer_s = time.perf_counter() - started
    pred = clf.classes_[proba.argmax(1)]
    index = np.searchsorted(clf.classes_, y_test)
    test_loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_test)), index], 1e-12,
                                              None))))
    if weights_path:
        clf.save(weights_path)
    return {"history": clf.history_, "pred": pred, "confidence": proba.max(1),
            "test_loss": test_loss, "train_s": clf.train_seconds_,
            "infer_s_per_10k": infer_s * 10_000 / len(x_test), "n_params": clf.n_params_,
            "peak_mb": cost.peak_mb, "baseline_mb": cost.start_mb,
            "threads": torch.get_num_threads(), "pid": os.getpid()}


def overfit_evaluate(arch: str, params: dict, x, y, x_test, y_test, threads: int) -> dict:
    """Train on a few images until all are right; then score the test images."""
    if threads:
        torch.set_num_threads(threads)
    clf = TorchClassifier(arch, **params).fit(x, y)
    return {"epochs": len(clf.history_["train_loss"]),
            "history": clf.history_["train_acc_eval"],
            "test_acc": float(np.mean(clf.predict(x_test) == y_test)),
            "test_loss": clf.log_loss(x_test, y_test)}


if __name__ == "__main__":  # the child of _run_in_subprocess
    call_file, answer_file = sys.argv[1:3]
    function, arguments = pickle.loads(Path(call_file).read_bytes())
    try:
        outcome = (True, function(*arguments))
    except Exception as exc:  # handed to the parent, which raises it
        outcome = (False, exc)
    Path(answer_file).write_bytes(pickle.dumps(outcome))
