"""The download path against a real HTTP server on 127.0.0.1."""

import gzip
import hashlib

import numpy as np
import pytest

from conftest import make_images, run_cli
from mnistlab.datasets import IDX_NAMES, load_dataset
from mnistlab.download import RemoteFile, fetch_files
from mnistlab.errors import DownloadError
from mnistlab.idx import write_idx


def _payload(seed: int = 0) -> bytes:
    return gzip.compress(bytes(range(256)) * 40 + bytes([seed]))


def _remote(name: str, body: bytes) -> RemoteFile:
    return RemoteFile(name, hashlib.sha256(body).hexdigest())


def test_success_writes_the_verified_file_and_then_uses_the_cache(http_server, tmp_path):
    body = _payload()
    http_server.files["/m1/a.gz"] = body
    mirrors = [http_server.url + "/m1/"]
    (path,) = fetch_files([_remote("a.gz", body)], mirrors, tmp_path)
    assert path.read_bytes() == body
    fetch_files([_remote("a.gz", body)], mirrors, tmp_path)
    assert http_server.hits == ["/m1/a.gz"]  # second call: verified cache, no request
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]  # no temporary file left


def test_checksum_mismatch_falls_back_to_the_second_mirror(http_server, tmp_path):
    good = _payload()
    http_server.files["/m1/a.gz"] = _payload(seed=1)  # wrong content
    http_server.files["/m2/a.gz"] = good
    (path,) = fetch_files([_remote("a.gz", good)],
                          [http_server.url + "/m1", http_server.url + "/m2"], tmp_path)
    assert path.read_bytes() == good
    assert http_server.hits == ["/m1/a.gz", "/m2/a.gz"]


def test_truncated_transfer_is_deleted_and_the_next_mirror_tried(http_server, tmp_path):
    good = _payload()
    http_server.files["/m1/a.gz"] = good
    http_server.truncate.add("/m1/a.gz")
    http_server.files["/m2/a.gz"] = good
    (path,) = fetch_files([_remote("a.gz", good)],
                          [http_server.url + "/m1/", http_server.url + "/m2/"], tmp_path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz"]


def test_all_mirrors_down_lists_every_url_and_the_manual_route(http_server, tmp_path):
    body = _payload()
    http_server.files["/m1/a.gz"] = _payload(seed=9)
    mirrors = [http_server.url + "/m1/", http_server.url + "/gone/", "http://127.0.0.1:9/"]
    with pytest.raises(DownloadError) as info:
        fetch_files([_remote("a.gz", body)], mirrors, tmp_path)
    message = str(info.value)
    for mirror in mirrors:
        assert mirror.rstrip("/") + "/a.gz" in message
    assert "SHA-256 mismatch" in message and "404" in message
    assert f"Place the file by hand at {tmp_path / 'a.gz'}" in message
    assert list(tmp_path.iterdir()) == []  # the bad transfer was deleted


def test_a_named_dataset_downloads_through_its_mirrors(http_server, monkeypatch, tmp_path):
    """kmnist's real machinery, its checksums swapped for those of files we serve."""
    import mnistlab.datasets as ds

    files = []
    for key, stem in IDX_NAMES.items():
        x, y = make_images(40 if "train" in key else 20, seed=len(files))
        path = tmp_path / f"{stem}.gz"
        write_idx(path, x if key.startswith("x") else y)
        http_server.files[f"/kmnist/{stem}.gz"] = path.read_bytes()
        files.append(_remote(f"{stem}.gz", path.read_bytes()))
    spec = ds.REMOTE["kmnist"]
    monkeypatch.setitem(ds.REMOTE, "kmnist", ds.RemoteSpec(tuple(files), spec.mirrors,
                                                           spec.class_names))
    monkeypatch.setenv("MNISTLAB_MIRRORS_KMNIST", f"http://127.0.0.1:9/ {http_server.url}/kmnist/")
    data = load_dataset("kmnist")
    assert data.x_train.shape == (40, 28, 28) and data.class_names[1] == "ki"
    assert (ds.data_home() / "kmnist" / "train-images-idx3-ubyte.gz").is_file()
    hits = len(http_server.hits)
    load_dataset("kmnist")
    assert len(http_server.hits) == hits  # cached


def test_cli_download_failure_is_one_line_with_exit_2():
    result = run_cli("data", "info", "mnist")
    assert result.returncode == 2
    assert result.stderr.startswith("error: could not download train-images-idx3-ubyte.gz: tried "
                                    "http://127.0.0.1:9/train-images-idx3-ubyte.gz")
    assert "Place the file by hand" in result.stderr and "Traceback" not in result.stderr


def test_real_mnist_checksums_are_pinned():
    from mnistlab.datasets import REMOTE

    mnist = REMOTE["mnist"]
    assert len(mnist.mirrors) >= 2
    assert all(len(f.sha256) == 64 for f in mnist.files)
    assert np.unique([f.name for f in mnist.files]).size == 4
