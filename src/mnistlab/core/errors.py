"""Errors a user can cause. Each carries a one-line message that says what to do.

The CLI prints ``error: <message>`` and exits with status 2 for any of them; the library raises
them at the boundary (file parsing, config loading, downloads) so no traceback from deep inside
numpy ever reaches a user.
"""


class MnistlabError(Exception):
    """Base class of every error caused by input (files, options, network)."""


class DatasetError(MnistlabError):
    """A dataset name is unknown, or its files are missing, corrupt or inconsistent."""


class DownloadError(DatasetError):
    """Every mirror failed for a dataset file."""


class ConfigError(MnistlabError):
    """A configuration key or value is invalid."""


class StoreError(MnistlabError):
    """A run folder is missing or not a mnistlab run folder."""


class StepFailed(RuntimeError):
    """A study step raised an unexpected error (a bug, not a user's mistake).

    ``where`` names the step (``classic.model:svc-rbf``); the original exception is the cause.
    """

    def __init__(self, where: str, cause: BaseException):
        super().__init__(f"{where}: {type(cause).__name__}: {cause}")
        self.where = where


class ModelLoadError(StoreError):
    """A saved model is missing, altered, unknown, or cannot be loaded by these libraries."""
