"""The download path against a real HTTP server on 127.0.0.1."""

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_MNIST, make_images, run_cli
from mnistlab.core.errors import DatasetError, DownloadError
from mnistlab.data.datasets import IDX_NAMES, load_dataset
from mnistlab.data.download import RemoteFile, fetch_files
from mnistlab.data.idx import write_idx


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
    got = hashlib.sha256(_payload(seed=9)).hexdigest()
    assert str(info.value) == (
        f"could not download a.gz: tried {mirrors[0]}a.gz (SHA-256 mismatch (got {got[:12]}..., "
        f"expected {_remote('a.gz', body).sha256[:12]}...)); {mirrors[1]}a.gz (HTTP 404 Not "
        f"Found); http://127.0.0.1:9/a.gz ([Errno 111] Connection refused). Place the file by "
        f"hand at {tmp_path / 'a.gz'} (SHA-256 {_remote('a.gz', body).sha256})")
    assert list(tmp_path.iterdir()) == []  # the bad transfer was deleted


def test_a_named_dataset_downloads_through_its_mirrors(http_server, monkeypatch, tmp_path):
    """kmnist's real machinery, its checksums swapped for those of files we serve."""
    import mnistlab.data.datasets as ds

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


@pytest.mark.cli
def test_cli_download_failure_is_one_line_with_exit_2():
    result = run_cli("data", "info", "mnist")
    assert result.returncode == 2
    assert result.stderr.startswith("error: could not download train-images-idx3-ubyte.gz: tried "
                                    "http://127.0.0.1:9/train-images-idx3-ubyte.gz")
    assert "Place the file by hand" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------- local copies are verified by their content

def _serve_kmnist(http_server, monkeypatch, tmp_path, content_digests=True):
    """kmnist's real machinery, its digests swapped for those of small files we serve; returns
    the served arrays by stem."""
    import mnistlab.data.datasets as ds

    files, arrays = [], {}
    for key, stem in IDX_NAMES.items():
        x, y = make_images(40 if "train" in key else 20, seed=len(files))
        arrays[stem] = x if key.startswith("x") else y
        path = tmp_path / "served" / f"{stem}.gz"
        path.parent.mkdir(exist_ok=True)
        write_idx(path, arrays[stem])
        http_server.files[f"/kmnist/{stem}.gz"] = path.read_bytes()
        content = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
        files.append(RemoteFile(f"{stem}.gz", hashlib.sha256(path.read_bytes()).hexdigest(),
                                content if content_digests else None))
    system_copy = tmp_path / "system-copy"
    monkeypatch.setitem(ds.REMOTE, "kmnist", ds.RemoteSpec(
        tuple(files), (), ds.REMOTE["kmnist"].class_names, (system_copy,)))
    monkeypatch.setenv("MNISTLAB_MIRRORS_KMNIST", f"{http_server.url}/kmnist/")
    return arrays


def _alter_one_pixel(path, level=6):
    """Rewrite a gzipped IDX file with one pixel changed (a valid file, the wrong content)."""
    from mnistlab.data.idx import read_idx

    x = read_idx(path)
    x.flat[123] ^= 1
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:16] + x.tobytes(), level))


def test_a_corrupted_cached_file_is_detected_and_downloaded_again(http_server, monkeypatch,
                                                                    tmp_path):
    import mnistlab.data.datasets as ds

    served = _serve_kmnist(http_server, monkeypatch, tmp_path)
    load_dataset("kmnist")
    cached = ds.data_home() / "kmnist" / "train-images-idx3-ubyte.gz"
    _alter_one_pixel(cached)
    monkeypatch.setenv("MNISTLAB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz: neither the file nor "
                                            "its decompressed content has the published"):
        load_dataset("kmnist")
    monkeypatch.delenv("MNISTLAB_OFFLINE")
    hits = len(http_server.hits)
    data = load_dataset("kmnist")
    assert http_server.hits[hits:] == ["/kmnist/train-images-idx3-ubyte.gz"]  # only that file
    assert np.array_equal(data.x_train, served["train-images-idx3-ubyte"])


@pytest.mark.cli
def test_a_corrupted_copy_offline_is_one_line_from_the_cli(http_server, monkeypatch, tmp_path):
    import mnistlab.data.datasets as ds

    _serve_kmnist(http_server, monkeypatch, tmp_path)
    load_dataset("kmnist")
    _alter_one_pixel(ds.data_home() / "kmnist" / "train-images-idx3-ubyte.gz")
    result = run_cli("data", "info", "kmnist", env={"MNISTLAB_OFFLINE": "1"})
    assert result.returncode == 2 and "corrupted or altered copy" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_recompressed_copy_is_accepted_by_its_content_and_an_altered_one_skipped(
        http_server, monkeypatch, tmp_path):
    """A repackager's copy (other gzip bytes, same content) is good; an altered system copy
    is skipped for a verified download."""
    served = _serve_kmnist(http_server, monkeypatch, tmp_path)
    system_copy = tmp_path / "system-copy"
    system_copy.mkdir()
    for stem in served:
        (system_copy / f"{stem}.gz").write_bytes(gzip.compress(
            gzip.decompress(http_server.files[f"/kmnist/{stem}.gz"]), compresslevel=1))
    data = load_dataset("kmnist")
    assert http_server.hits == [] and data.source == str(system_copy)
    _alter_one_pixel(system_copy / "t10k-images-idx3-ubyte.gz", level=1)
    data = load_dataset("kmnist")
    assert len(http_server.hits) == 4 and data.source != str(system_copy)
    assert np.array_equal(data.x_test, served["t10k-images-idx3-ubyte"])


def test_without_a_published_content_digest_the_file_digest_decides(http_server, monkeypatch,
                                                                       tmp_path):
    served = _serve_kmnist(http_server, monkeypatch, tmp_path, content_digests=False)
    system_copy = tmp_path / "system-copy"
    system_copy.mkdir()
    for stem in served:
        (system_copy / f"{stem}.gz").write_bytes(http_server.files[f"/kmnist/{stem}.gz"])
    assert load_dataset("kmnist").source == str(system_copy)
    recompressed = system_copy / "train-labels-idx1-ubyte.gz"
    recompressed.write_bytes(gzip.compress(gzip.decompress(recompressed.read_bytes()), 1))
    assert load_dataset("kmnist").source != str(system_copy)  # cannot be told from an altered one




@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist-test-10k absent")
def test_the_pinned_mnist_content_digests_are_those_of_the_official_test_set():
    from mnistlab.data.datasets import REMOTE
    from mnistlab.data.idx import read_idx

    files = {f.name: f for f in REMOTE["mnist"].files}
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        path = SHARED_MNIST / name
        # This copy was recompressed: only the content digest can recognise it.
        assert hashlib.sha256(path.read_bytes()).hexdigest() != files[name].sha256
        read_idx(path, sha256=[files[name].content_sha256])
        with pytest.raises(DatasetError, match="corrupted or altered"):
            read_idx(path, sha256=[files[name].sha256])


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
                    .exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_recognised_by_its_content_digests():
    from mnistlab.data.datasets import FASHION_DEBIAN_DIR, REMOTE

    for f in REMOTE["fashion-mnist"].files:
        raw = (FASHION_DEBIAN_DIR / f.name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() != f.sha256  # repackaged by Debian
        assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == f.content_sha256
    assert load_dataset("fashion-mnist").source == str(FASHION_DEBIAN_DIR)


# ------------------------------------------------- transfers: hangs, truncation, placement

def test_a_mirror_that_never_answers_times_out_and_the_next_is_tried(http_server, tmp_path,
                                                                      monkeypatch):
    import socket

    import mnistlab.data.download as download

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never sends a byte
    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)
    body = _payload()
    http_server.files["/m2/a.gz"] = body
    try:
        (path,) = fetch_files([_remote("a.gz", body)],
                              [f"http://127.0.0.1:{silent.getsockname()[1]}/",
                               http_server.url + "/m2/"], tmp_path)
    finally:
        silent.close()
    assert path.read_bytes() == body


def test_a_truncated_transfer_is_named_as_such(http_server, tmp_path):
    body = _payload()
    http_server.files["/m1/a.gz"] = body
    http_server.truncate.add("/m1/a.gz")
    with pytest.raises(DownloadError, match=rf"truncated transfer: {len(body) // 2} of "
                                            rf"{len(body)} bytes"):
        fetch_files([_remote("a.gz", body)], [http_server.url + "/m1/"], tmp_path)


def test_a_transfer_without_content_length_is_judged_by_its_digest(http_server, tmp_path):
    body = _payload()
    http_server.files["/m1/a.gz"] = body
    http_server.no_length.add("/m1/a.gz")
    (path,) = fetch_files([_remote("a.gz", body)], [http_server.url + "/m1/"],
                          tmp_path / "new" / "nested")  # created, parents too
    assert path.read_bytes() == body


def test_a_file_is_written_beside_its_target_then_renamed(http_server, tmp_path):
    """The partial download lives in the cache folder itself (same filesystem, so the final
    rename is atomic) and is gone afterwards."""
    body = _payload()
    http_server.files["/m1/a.gz"] = body
    seen = []
    http_server.on_request = lambda: seen.append(sorted(p.name for p in tmp_path.iterdir()))
    fetch_files([_remote("a.gz", body)], [http_server.url + "/m1/"], tmp_path)
    assert len(seen) == 1 and len(seen[0]) == 1
    assert seen[0][0].startswith(".a.gz.") and seen[0][0].endswith(".part")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz"]


def test_the_progress_bar_names_each_file(http_server, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import mnistlab.data.download as download

    body = _payload()
    http_server.files["/m1/a.gz"] = body
    screen = io.StringIO()
    monkeypatch.setattr(download, "PROGRESS_CONSOLE",
                        Console(file=screen, force_terminal=True, width=100))
    fetch_files([_remote("a.gz", body)], [http_server.url + "/m1/"], tmp_path / "quiet")
    assert screen.getvalue() == ""  # no bar unless asked for
    fetch_files([_remote("a.gz", body)], [http_server.url + "/m1/"], tmp_path,
                show_progress=True)
    drawn = screen.getvalue()
    assert "\x1b[2Ka.gz " in drawn and "m1" not in drawn  # the file's name, not its URL
    assert f"{len(body)}/{len(body)} bytes" in drawn  # what arrived, of the announced total


def test_a_bad_cached_copy_falls_back_to_a_good_system_copy_without_downloading(
        http_server, monkeypatch, tmp_path):
    import mnistlab.data.datasets as ds

    served = _serve_kmnist(http_server, monkeypatch, tmp_path)
    load_dataset("kmnist")  # fills the cache
    system_copy = tmp_path / "system-copy"
    system_copy.mkdir()
    for stem in served:
        (system_copy / f"{stem}.gz").write_bytes(http_server.files[f"/kmnist/{stem}.gz"])
    _alter_one_pixel(ds.data_home() / "kmnist" / "t10k-images-idx3-ubyte.gz")
    hits = len(http_server.hits)
    data = load_dataset("kmnist")
    assert len(http_server.hits) == hits and data.source == str(system_copy)
    assert (data.name, data.class_names[:2], data.digits) == ("kmnist", ["o", "ki"], False)


def test_a_local_copy_of_mnist_is_known_to_be_digits(http_server, monkeypatch, tmp_path):
    import mnistlab.data.datasets as ds

    _serve_kmnist(http_server, monkeypatch, tmp_path)
    monkeypatch.setitem(ds.REMOTE, "mnist", ds.RemoteSpec(
        ds.REMOTE["kmnist"].files, (), tuple(ds.DIGIT_NAMES), (tmp_path / "served",)))
    data = load_dataset("mnist")
    assert (data.name, data.digits, data.source) == ("mnist", True, str(tmp_path / "served"))
    assert data.class_names == [str(d) for d in range(10)]


def test_the_cache_defaults_to_the_users_cache_folder(monkeypatch, tmp_path):
    import mnistlab.data.datasets as ds

    monkeypatch.delenv("MNISTLAB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ds.data_home() == tmp_path / ".cache" / "mnistlab"
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "elsewhere"))
    assert ds.data_home() == tmp_path / "elsewhere"


def test_mirrors_can_be_replaced_per_dataset(monkeypatch):
    import mnistlab.data.datasets as ds

    monkeypatch.setenv("MNISTLAB_MIRRORS_FASHION_MNIST", "http://a/ http://b/")
    assert ds.REMOTE["fashion-mnist"].mirror_list("fashion-mnist") == ["http://a/", "http://b/"]
    monkeypatch.delenv("MNISTLAB_MIRRORS_KMNIST")
    assert ds.REMOTE["kmnist"].mirror_list("kmnist") == list(ds.REMOTE["kmnist"].mirrors)
    assert ds.offline() is False
    monkeypatch.setenv("MNISTLAB_OFFLINE", "0")
    assert ds.offline() is False
    monkeypatch.setenv("MNISTLAB_OFFLINE", "1")
    assert ds.offline() is True


def test_the_catalog_knows_which_datasets_are_here(http_server, monkeypatch, tmp_path):
    from mnistlab.data.datasets import CATALOG

    available = {info.name: info.available for info in CATALOG}
    _serve_kmnist(http_server, monkeypatch, tmp_path)
    assert not available["kmnist"]()
    load_dataset("kmnist")  # now cached
    assert available["kmnist"]() and available["digits"]() and available["mnist-5k"]()


def test_offline_without_a_copy_is_one_error_saying_so(monkeypatch):
    import mnistlab.data.datasets as ds

    monkeypatch.setenv("MNISTLAB_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        load_dataset("kmnist")
    assert str(info.value) == (f"kmnist is not in {ds.data_home() / 'kmnist'} and "
                               "MNISTLAB_OFFLINE is set, so it was not downloaded")


def test_a_downloaded_mnist_is_named_digits_and_shows_its_progress(http_server, monkeypatch,
                                                                    tmp_path, caplog):
    import io
    import logging

    from rich.console import Console

    import mnistlab.data.datasets as ds
    import mnistlab.data.download as download

    _serve_kmnist(http_server, monkeypatch, tmp_path)
    monkeypatch.setitem(ds.REMOTE, "mnist", ds.RemoteSpec(
        ds.REMOTE["kmnist"].files, (), tuple(ds.DIGIT_NAMES)))
    monkeypatch.setenv("MNISTLAB_MIRRORS_MNIST", f"{http_server.url}/kmnist/")
    screen = io.StringIO()
    monkeypatch.setattr(download, "PROGRESS_CONSOLE",
                        Console(file=screen, force_terminal=True, width=100))
    data = load_dataset("mnist", show_progress=True)
    assert (data.name, data.digits, data.class_names[0]) == ("mnist", True, "0")
    assert "train-images-idx3-ubyte.gz" in screen.getvalue()
    # A damaged cached file: said once, in one warning, and downloaded again.
    _alter_one_pixel(ds.data_home() / "mnist" / "t10k-images-idx3-ubyte.gz")
    with caplog.at_level(logging.WARNING, logger="mnistlab.data.datasets"):
        load_dataset("mnist")
    (warning,) = [m for m in caplog.messages if "not using that copy" in m]
    assert warning.endswith("; not using that copy")
    assert warning.startswith(str(ds.data_home() / "mnist" / "t10k-images-idx3-ubyte.gz")
                              + ": neither the file nor")


def test_a_transfer_of_many_chunks_arrives_whole(http_server, tmp_path):
    import mnistlab.data.download as download

    body = bytes(range(256)) * (3 * download.CHUNK // 256) + b"tail"
    http_server.files["/m1/big.gz"] = body
    (path,) = fetch_files([_remote("big.gz", body)], [http_server.url + "/m1/"], tmp_path)
    assert path.read_bytes() == body
