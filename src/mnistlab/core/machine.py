"""Facts about the machine this process runs on, and its manners towards the study."""

from __future__ import annotations

import os
import platform

from .. import __version__

# Recorded with every study, beside mnistlab's own version.
LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "skops", "umap-learn")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_card() -> dict:
    """The machine and libraries of this process, recorded with each study."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    libraries = {"mnistlab": __version__}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            continue
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
            "python": platform.python_version(), "platform": platform.platform(),
            "libraries": libraries}


def yield_to_the_study() -> None:
    """This process computes only on cycles the study's own process leaves idle (the
    embedding's, the figures' drawing): at equal priority, the embedding slowed a histogram
    gradient boosting beside it 3.7x (OpenMP's threads wait on each other, and one of them
    waited on this process)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux: the next best thing
        os.nice(19)
