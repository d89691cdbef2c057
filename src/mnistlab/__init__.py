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
# mnistlab.deep does not pay for scikit-learn, matplotlib and Jinja2 at start-up.
_EXPORTS = {
    "StudyConfig": "config", "build_config": "config", "config_toml": "config",
    "load_config": "config", "CATALOG": "datasets", "Dataset": "datasets",
    "load_dataset": "datasets", "ConfigError": "errors", "DatasetError": "errors",
    "DownloadError": "errors", "MnistlabError": "errors", "StoreError": "errors",
    "build_report": "render", "load_study": "render", "StudyResults": "render",
    "run_study": "runner", "plan_study": "runner", "call_step": "step",
    "load_model": "saved", "open_models": "saved", "TrainedModel": "saved",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
