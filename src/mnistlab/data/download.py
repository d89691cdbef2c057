"""Download dataset files from mirrors, verified by SHA-256 and written atomically.

Standard library only (``urllib``): the job is a few GETs, and a dependency would not make the
checks below any shorter. For each file the mirrors are tried in order; a transfer that fails,
is truncated or has the wrong SHA-256 is deleted and the next mirror tried.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from ..core.errors import DownloadError

CHUNK = 1 << 16
TIMEOUT_S = 30
PROGRESS_CONSOLE = None  # rich's console on stderr; tests give their own


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name on every mirror, the SHA-256 of the file as the mirrors
    serve it and, where published, of its decompressed content (what a repackaged copy keeps)."""

    name: str
    sha256: str
    content_sha256: str | None = None

    @property
    def digests(self) -> tuple[str, ...]:
        """Every digest that identifies a good copy."""
        return (self.sha256,) + ((self.content_sha256,) if self.content_sha256 else ())


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _transfer(url: str, target: Path, progress: Progress | None, label: str) -> str:
    """Stream ``url`` into ``target``, shown as ``label`` on the progress bar; return the
    SHA-256 of what arrived."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        task = progress.add_task(label, total=total) if progress else None
        received = 0
        with open(target, "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress is not None:
                    progress.update(task, completed=received)
        if total is not None and received != total:
            raise OSError(f"truncated transfer: {received} of {total} bytes")
    return digest.hexdigest()


def fetch_files(
    files: Sequence[RemoteFile],
    mirrors: Sequence[str],
    dest: str | Path,
    *,
    show_progress: bool = False,
) -> list[Path]:
    """Make every file of ``files`` present and verified in ``dest``.

    Parameters
    ----------
    files : sequence of RemoteFile
        Names and SHA-256 digests.
    mirrors : sequence of str
        Base URLs, tried in order; ``mirror + name`` is the file's URL.
    dest : path
        Cache folder. A file already there with the right digest is not downloaded again.
    show_progress : bool
        Draw a progress bar on stderr.

    Returns
    -------
    list of Path
        The verified files, in the order of ``files``.

    Raises
    ------
    DownloadError
        When a file failed on every mirror; the message lists each URL tried, why it failed, and
        where to put the file by hand.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    progress = (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
            console=PROGRESS_CONSOLE,
        )
        if show_progress
        else None
    )
    if progress is not None:
        progress.start()
    try:
        for remote in files:
            paths.append(_fetch_one(remote, mirrors, dest, progress))
    finally:
        if progress is not None:
            progress.stop()
    return paths


def _fetch_one(
    remote: RemoteFile, mirrors: Sequence[str], dest: Path, progress: Progress | None
) -> Path:
    final = dest / remote.name
    if final.exists() and _sha256(final) == remote.sha256:
        return final
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + remote.name
        fd, tmp_name = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part", dir=dest)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            digest = _transfer(url, tmp, progress, label=remote.name)
            if digest != remote.sha256:
                raise OSError(f"SHA-256 mismatch (got {digest[:12]}..., "
                              f"expected {remote.sha256[:12]}...)")
            os.replace(tmp, final)
            return final
        # Each failure is kept for the error, which lists them all if no mirror works.
        except urllib.error.HTTPError as exc:
            failures.append(f"{url} (HTTP {exc.code} {exc.reason})")
        except (OSError, ValueError) as exc:  # URLError is an OSError
            failures.append(f"{url} ({getattr(exc, 'reason', None) or exc})")
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(
        f"could not download {remote.name}: tried " + "; ".join(failures)
        + f". Place the file by hand at {final} (SHA-256 {remote.sha256})"
    )
