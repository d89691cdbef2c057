"""Shared fixtures: real small datasets written to disk, a real HTTP server, the mnistlab CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data.idx import write_idx

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test-10k"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's cache, and none reaches a public mirror."""
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path_factory.mktemp("cache")))
    for name in ("MNIST", "KMNIST", "FASHION_MNIST"):
        monkeypatch.setenv(f"MNISTLAB_MIRRORS_{name}", "http://127.0.0.1:9/")


def run_cli(*args: str, env: dict | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m mnistlab`` as a user would; returns the completed process."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=cwd)


def make_images(n: int, size: int = 28, n_classes: int = 10, seed: int = 0):
    """Images whose class is readable from a bright stripe, so models can learn them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
    rows = (y * size) // n_classes
    for i, r in enumerate(rows):
        x[i, r:r + max(1, size // n_classes)] = 250
    return x, y.astype(np.uint8)


def write_idx_folder(folder: Path, n_train: int = 200, n_test: int = 50, gz: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = make_images(n_train, seed=1)
    x_te, y_te = make_images(n_test, seed=2)
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", x_tr)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", y_tr)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", x_te)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", y_te)
    return folder


FAST_TOML = """
[unsupervised]
embedding = false
kmeans_k = [2, 10]
bic_k = [5, 10]

[classic]
models = ["gaussian-nb", "logistic"]
learning_curve_sizes = [100]
tree_depths = [1, 2, 5]
svc_pca_components = [10]
kernels = ["rbf"]
tree_pca_components = [2, 10]

[deep]
overfit_models = []
[deep.models.mlp-1]
epochs = 1
[deep.models.mlp-2]
enabled = false
[deep.models.cnn-seed]
enabled = false
[deep.models.cnn-fast]
enabled = false
"""


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """The README's quick study as a new user runs it (no --dataset, no --out), once through
    the CLI in an empty folder: MNIST is neither cached nor downloadable, so it falls back to
    mnist-5k. Its run folder; what the user saw on stderr is in the folder above it.

    MNISTLAB_TEST_QUICK_RUN names a run folder made the same way beforehand: bench/mutation.sh
    sets it so that each mutant's test run reads that folder instead of running the study."""
    preset = os.environ.get("MNISTLAB_TEST_QUICK_RUN")
    if preset:
        return Path(preset)
    cwd = tmp_path_factory.mktemp("quick")
    env = {"MNISTLAB_DATA": str(tmp_path_factory.mktemp("cache-quick")),
           "MNISTLAB_MIRRORS_MNIST": "http://127.0.0.1:9/"}  # nothing listens there
    result = run_cli("study", "--profile", "quick", "--quiet", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    out = cwd / "mnistlab-runs" / "mnist-5k-quick"
    (out.parent / "stderr.txt").write_text(result.stderr)
    return out


@pytest.fixture(scope="session")
def full_digits_run(tmp_path_factory):
    """The full profile (the defaults: every sweep point, every network in its own process) on
    scikit-learn's digits, run once through the CLI; its run folder. On the scikit-learn
    engine: the other shared runs take scikit-learn-intelex where it is installed."""
    out = tmp_path_factory.mktemp("full") / "run"
    result = run_cli("study", "--dataset", "digits", "--out", str(out), "--quiet",
                     "--engine", "sklearn")
    assert result.returncode == 0, result.stderr
    return out


FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_like_run(tmp_path_factory):
    """The quick study on 2,000 + 500 real Fashion-MNIST images given as a user's npz file (so
    nothing tells mnistlab they are not digits but the data), run once through the CLI."""
    if not (FASHION_DEBIAN / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    from mnistlab.data.datasets import load_idx_folder, stratified_subset

    data = load_idx_folder(FASHION_DEBIAN)
    folder = tmp_path_factory.mktemp("clothes")
    x_tr, y_tr = stratified_subset(data.x_train, data.y_train, 2000, 0)
    x_te, y_te = stratified_subset(data.x_test, data.y_test, 500, 0)
    np.savez(folder / "clothes.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    out = folder / "run"
    result = run_cli("study", "--dataset", f"npz:{folder / 'clothes.npz'}", "--profile", "quick",
                     "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def fast_config(tmp_path):
    """A TOML file that turns off the slowest steps, for tests about the runner itself."""
    path = tmp_path / "fast.toml"
    path.write_text(FAST_TOML)
    return path


@pytest.fixture(scope="session")
def fast_digits_run(tmp_path_factory):
    """The quick study of scikit-learn's digits with FAST_TOML, run once through the CLI; its
    run folder and the study's arguments. Tests that alter a run copy it first."""
    folder = tmp_path_factory.mktemp("fast-digits")
    config = folder / "fast.toml"
    config.write_text(FAST_TOML)
    out = folder / "run"
    args = ("study", "--dataset", "digits", "--profile", "quick", "--quiet", "--config",
            str(config))
    result = run_cli(*args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, args


@pytest.fixture
def idx_folder(tmp_path):
    return write_idx_folder(tmp_path / "idx")


class FileServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1; ``truncate`` paths send half their body."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.no_length: set[str] = set()  # sent without a Content-Length header
        self.on_request = lambda: None  # called before each body is sent
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.hits.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if self.path not in server.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                server.on_request()
                self.wfile.write(body[: len(body) // 2] if self.path in server.truncate else body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    with FileServer() as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(quick_run):
    """A real `mnistlab serve` of the quick run, on 127.0.0.1: its URL. Stopped at the end,
    and it must not have printed a traceback."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(quick_run),
                                "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/models", timeout=2):
                break
        except OSError:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the server did not start in 120 s"
            time.sleep(0.3)
    yield url
    process.terminate()
    out, err = process.communicate(timeout=30)
    assert "Traceback" not in err, err
