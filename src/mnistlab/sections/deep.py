"""Part 4 of the seed: deep learning with PyTorch (two MLPs, the seed's CNN and our fast CNN).

Each model trains in its own process (spawned, so it starts from a clean interpreter): its
peak memory is its own, not the report's or another model's, which is what the seed tried to
measure by hand with mprof. The trained weights are written to ``RUN/models/NAME.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..datasets import Dataset, stratified_subset
from ..step import Step

NAME = "deep"
TITLE = "4. Deep learning: MLP and CNN"

ModelName = Literal["mlp-1", "mlp-2", "cnn-seed", "cnn-fast"]


class ModelSpec(BaseModel):
    """How one network is trained (the TorchClassifier parameters)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "onecycle"] = "constant"
    validation_fraction: float = Field(0.2, ge=0, lt=1)
    early_stopping: bool = False
    patience: int = Field(3, ge=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    arch_params: dict = Field(default_factory=dict)
    max_train_seconds: float = Field(0, ge=0, description="0 = no limit")
    bf16: bool | Literal["auto"] = Field(False, description="bfloat16 autocast; auto = where "
                                         "the hardware has it")

    def estimator_params(self) -> dict:
        params = self.model_dump(exclude={"enabled"})
        params["max_train_seconds"] = self.max_train_seconds or None
        params["arch_params"] = self.arch_params or None
        return params


DEFAULT_MODELS = {
    "mlp-1": ModelSpec(validation_fraction=0.2),
    "mlp-2": ModelSpec(validation_fraction=0.2),
    "cnn-seed": ModelSpec(validation_fraction=0.1),
    # Chosen on Fashion-MNIST's validation split, 2 CPU cores: [24, 48, 96] reached 0.927 test in
    # 49 s (7 epochs), [32, 64, 128] 0.930 in 37 s (5 epochs), both with bf16 autocast.
    "cnn-fast": ModelSpec(epochs=5, batch_size=256, lr=4e-3, optimizer="adamw",
                          weight_decay=5e-4, schedule="onecycle", validation_fraction=0.1,
                          label_smoothing=0.1, arch_params={"channels": [32, 64, 128]},
                          bf16="auto"),
}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_train: int = Field(0, ge=0, description="training images used (0 = all)")
    threads: int = Field(0, ge=0, description="CPU threads per training process (0 = all "
                         "cores)")
    isolate: bool = Field(True, description="train each network in its own process, so that "
                          "its peak memory is its own (about 3 s of start-up each)")
    overfit_images: int = Field(10, ge=1, description="training images of the overfitting "
                                "demonstration")
    overfit_models: list[ModelName] = Field(["mlp-1", "cnn-seed"],
                                            description="models of the overfitting demonstration")
    overfit_max_epochs: int = Field(300, ge=1, description="epochs at most until 100 % "
                                    "training accuracy")
    n_examples: int = Field(10, ge=1, le=50, description="test images shown with predictions")
    models: dict[str, ModelSpec] = Field(
        default_factory=lambda: {k: v.model_copy() for k, v in DEFAULT_MODELS.items()},
        description="training of each network: [deep.models.NAME] sets its parameters")

    @field_validator("models")
    @classmethod
    def _known(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in models:
            if name not in DEFAULT_MODELS:
                raise ValueError(f"unknown model {name!r} (use {', '.join(DEFAULT_MODELS)})")
        return models

    @model_validator(mode="after")
    def _check_architectures(self) -> Params:
        from ..deep import build_module

        for name, spec in self.models.items():
            try:
                build_module(name, (28, 28), 10, spec.arch_params)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"models.{name}.arch_params: {exc}") from None
        return self

    def enabled(self) -> dict[str, ModelSpec]:
        return {k: v for k, v in self.models.items() if v.enabled}


QUICK = {"max_train": 2000,
         "models": {"mlp-1": {"epochs": 4}, "mlp-2": {"epochs": 4}, "cnn-seed": {"epochs": 3},
                    "cnn-fast": {"epochs": 3}},
         "overfit_max_epochs": 150, "isolate": False}


# ------------------------------------------------------------------ results

@dataclass
class Architectures:
    input_shapes: dict[str, list]
    output_sizes: dict[str, int]
    layers: dict[str, list[dict]]
    params: dict[str, int]


@dataclass
class TrainResult:
    name: str
    spec: dict
    n_train: int
    history: dict[str, list[float]]
    test_loss: float
    test_acc: float
    train_s: float
    epochs_run: int
    infer_s_per_10k: float
    n_params: int
    peak_mb: float
    baseline_mb: float
    threads: int
    isolated: bool
    weights_file: str
    confusion: np.ndarray
    example_images: np.ndarray
    example_pred: np.ndarray
    example_true: np.ndarray
    error_images: np.ndarray
    error_pred: np.ndarray
    error_true: np.ndarray
    error_confidence: np.ndarray


@dataclass
class OverfitResult:
    name: str
    n_images: int
    epochs: int
    train_acc: float
    test_acc: float
    test_loss: float
    history_train_acc: list[float]


def _call(isolate: bool, fn, *args):
    """``fn(*args)`` in a fresh process when isolating, else here (quick profile)."""
    if isolate:
        from ..deep import run_in_child

        return run_in_child(fn, *args)
    import torch

    threads = torch.get_num_threads()
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def _train_data(data: Dataset, p: Params, seed: int):
    return stratified_subset(data.x_train, data.y_train, p.max_train or None, seed)


def architectures(data: Dataset, p: Params) -> Architectures:
    from ..deep import build_module, count_parameters, layer_table

    shapes, outputs, layers, params = {}, {}, {}, {}
    for name, spec in p.enabled().items():
        module = build_module(name, data.image_shape, data.n_classes, spec.arch_params)
        layers[name] = layer_table(module, data.image_shape)
        shapes[name] = ([None, int(np.prod(data.image_shape))] if name.startswith("mlp")
                        else [None, 1, *data.image_shape])
        outputs[name] = data.n_classes
        params[name] = count_parameters(module)
    return Architectures(shapes, outputs, layers, params)


def train_model(data: Dataset, p: Params, seed: int, name: str, models_dir: Path) -> TrainResult:
    spec = p.models[name]
    x, y = _train_data(data, p, seed)
    models_dir.mkdir(parents=True, exist_ok=True)
    weights = models_dir / f"{name}.safetensors"
    from ..deep import fit_evaluate

    out = _call(p.isolate, fit_evaluate, name, {**spec.estimator_params(), "seed": seed}, x, y,
                data.x_test, data.y_test, p.threads, str(weights))
    from sklearn.metrics import confusion_matrix

    pred, conf = out["pred"], out["confidence"]
    wrong = np.flatnonzero(pred != data.y_test)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:p.n_examples]
    first = np.arange(min(p.n_examples, len(pred)))
    return TrainResult(
        name=name, spec=spec.model_dump(), n_train=len(y), history=out["history"],
        test_loss=out["test_loss"], test_acc=float(np.mean(pred == data.y_test)),
        train_s=out["train_s"], epochs_run=len(out["history"]["train_loss"]),
        infer_s_per_10k=out["infer_s_per_10k"], n_params=out["n_params"],
        peak_mb=out["peak_mb"], baseline_mb=out["baseline_mb"], threads=out["threads"],
        isolated=p.isolate,
        weights_file=str(weights.relative_to(models_dir.parent)),
        confusion=confusion_matrix(data.y_test, pred, labels=range(data.n_classes)),
        example_images=data.x_test[first], example_pred=pred[first].astype(np.int64),
        example_true=data.y_test[first], error_images=data.x_test[wrong],
        error_pred=pred[wrong].astype(np.int64), error_true=data.y_test[wrong],
        error_confidence=conf[wrong].astype(np.float32))


def overfit(data: Dataset, p: Params, seed: int, name: str) -> OverfitResult:
    x, y = stratified_subset(data.x_train, data.y_train, p.overfit_images, seed)
    spec = {**p.models.get(name, DEFAULT_MODELS[name]).estimator_params(), "seed": seed,
            "validation_fraction": 0.0, "early_stopping": False, "schedule": "constant",
            "max_train_seconds": None, "epochs": p.overfit_max_epochs,
            "stop_at_train_accuracy": 1.0}
    from ..deep import overfit_evaluate

    out = _call(p.isolate, overfit_evaluate, name, spec, x, y, data.x_test, data.y_test,
                p.threads)
    return OverfitResult(name, len(y), out["epochs"], out["history"][-1], out["test_acc"],
                         out["test_loss"], out["history"])


def plan(data: Dataset, params: Params, seed: int) -> list[Step]:
    if data.image_shape[0] < 4 or data.image_shape[1] < 4:
        from ..errors import ConfigError

        raise ConfigError(f"deep: images of {data.image_shape} are too small for the CNNs")
    base = {"max_train": params.max_train, "seed": seed, "threads": params.threads,
            "isolate": params.isolate}
    steps = [Step("architectures", {"models": {k: v.model_dump() for k, v in
                                               params.enabled().items()}},
                  lambda _: architectures(data, params))]
    for name, spec in params.enabled().items():
        steps.append(Step(f"train:{name}", {**base, "spec": spec.model_dump(),
                                            "n_examples": params.n_examples},
                          lambda _, files, n=name: train_model(data, params, seed, n,
                                                               files / "models"),
                          files=True))
    for name in params.overfit_models:
        spec = params.models.get(name, DEFAULT_MODELS[name])
        steps.append(Step(f"overfit:{name}", {"seed": seed, "threads": params.threads,
                                              "n": params.overfit_images,
                                              "max_epochs": params.overfit_max_epochs,
                                              "spec": spec.model_dump()},
                          lambda _, n=name: overfit(data, params, seed, n)))
    return steps
