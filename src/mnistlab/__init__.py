"""mnistlab: the complete machine-learning study of an MNIST-like dataset, measured.

Examples
--------
>>> from mnistlab import load_dataset, load_config, run_study, build_report
>>> data = load_dataset("digits")
>>> outcome = run_study(data, load_config(None, profile="quick"), "runs/digits")  # doctest: +SKIP
>>> build_report("runs/digits")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import StudyConfig, build_config, config_toml, load_config  # noqa: E402
from .datasets import CATALOG, Dataset, load_dataset  # noqa: E402
from .errors import ConfigError, DatasetError, DownloadError, MnistlabError, StoreError  # noqa: E402
from .render import build_report  # noqa: E402
from .runner import run_study  # noqa: E402

__all__ = [
    "CATALOG", "ConfigError", "Dataset", "DatasetError", "DownloadError", "MnistlabError",
    "StoreError", "StudyConfig", "build_config", "build_report", "config_toml", "load_config",
    "load_dataset", "run_study",
]
