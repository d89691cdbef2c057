"""Each bench script's part of bench/RESULTS.md, rewritten (not appended) by its last run.

``with recorded("bench/deep.py"):`` around a script's ``main()`` copies what it prints; when
``main()`` returns, the script's part of RESULTS.md (between its two markers) is replaced by
that output with the date, the machine and the commit it measured. A run that fails or is
interrupted leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = """# Measured by bench/

Each part below is rewritten by its script's last complete run (`python bench/NAME.py`), with
the date, the machine and the commit it measured. Speeds compare within one run on one machine
only: this project's machines differ, and one machine's speed moves within the hour.
"""


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" with uncommitted changes" if dirty else "")


def _machine() -> str:
    from mnistlab.core.machine import machine_card

    card = machine_card()
    libraries = card["libraries"]
    return (f"{card['cpu']}, {card['usable_cores']} usable cores, Python {card['python']}, "
            f"torch {libraries.get('torch', '-')}, scikit-learn {libraries.get('scikit-learn', '-')}")


def rewrite(script: str, output: str, command: str | None = None) -> None:
    """Replace ``script``'s part of RESULTS.md with ``output``."""
    begin, end = f"<!-- begin {script} -->", f"<!-- end {script} -->"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    part = "\n".join([
        begin, f"## {script}", "",
        f"`{command or 'python ' + script}` on {when}, commit {_commit()}.",
        f"Machine: {_machine()}.", "", "```", output.rstrip(), "```", end])
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + part + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + part + "\n"
    RESULTS.write_text(text)


@contextlib.contextmanager
def recorded(script: str, part: str | None = None) -> Iterator[None]:
    """Print as usual, and on success rewrite ``script``'s part of RESULTS.md with it (its part
    for ``part``, such as one dataset, where a script has one per run)."""
    copy = io.StringIO()
    stdout = sys.stdout
    sys.stdout = _Tee(stdout, copy)
    try:
        yield
    finally:
        sys.stdout = stdout
    rewrite(f"{script} {part}" if part else script, copy.getvalue(),
            " ".join(["python", script, *sys.argv[1:]]))
