"""mnistlab: the complete machine-learning study of an MNIST-like dataset, measured.

Examples
--------
>>> from mnistlab import load_dataset, load_config, run_study, build_report
>>> data = load_dataset("digits")
>>> outcome = run_study(data, load_config(None, profile="quick"), "runs/digits")  # doctest: +SKIP
>>> build_report("runs/digits")  # doctest: +SKIP
"""

__version__ = "0.1.0"

# Public names are imported on first use (PEP 562): a training subprocess that only needs
# mnistlab.models.deep does not pay for scikit-learn, matplotlib and Jinja2 at start-up.
_EXPORTS = {
    "MnistlabError": "core.errors", "ConfigError": "core.errors", "DatasetError": "core.errors",
    "DownloadError": "core.errors", "StoreError": "core.errors",
    "ModelLoadError": "core.errors",
    "CATALOG": "data.datasets", "Dataset": "data.datasets", "load_dataset": "data.datasets",
    "call_step": "engine.step",
    "StudyConfig": "study.config", "build_config": "study.config",
    "config_toml": "study.config", "load_config": "study.config",
    "run_study": "study.runner", "run_studies": "study.runner", "plan_study": "study.runner",
    "load_study": "study.results", "StudyResults": "study.results",
    "load_model": "study.catalog", "open_models": "study.catalog",
    "TrainedModel": "study.catalog", "model_entries": "study.catalog",
    "build_report": "report", "draw_figures": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
