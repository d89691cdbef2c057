"""Part 4 of the seed: deep learning with PyTorch (two MLPs, the seed's CNN and our fast CNN).

Each model trains in its own process (forked from a server process that holds only torch and
the estimator, or spawned where there is none): its peak memory is its own, not the report's or
another model's, which is what the seed tried to measure by hand with mprof. The trained
weights are written to ``RUN/models/NAME-KEY.safetensors``, named by the key of the step that
trained them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..core.errors import ConfigError
from ..core.files import sha256_file
from ..core.machine import usable_cores
from ..data.datasets import Dataset
from ..data.prepare import stratified_subset
from ..engine.measure import cores_given
from ..engine.step import Step, bind
from ..models.architectures import NETWORKS, image_shape_problem
from ..models.training import (
    AUGMENTATION_NAMES,
    Augmentation,
    TrainingParams,
    augment_shift_problem,
)

NAME = "deep"
TITLE = "4. Deep learning: MLP and CNN"

ModelName = Literal[tuple(NETWORKS)]  # type: ignore[valid-type]  (pydantic validates the names)


def _auto_means(field_name: str) -> str:
    """What "auto" means for one field, from the registry of networks: the schema's words."""
    return "; ".join(
        f"{name}: {network.auto[field_name][0]} on the named digit datasets of 28x28 "
        f"images or larger, else {network.auto[field_name][1]}"
        for name, network in NETWORKS.items() if field_name in network.auto)


class ModelSpec(TrainingParams):
    """How one network is trained: the TorchClassifier parameters (validated by the estimator's
    own rules), in a form TOML can write (no None). "auto" entries are decided for the data by
    :meth:`for_data`, from the network's entry in :data:`mnistlab.models.architectures.NETWORKS`."""

    enabled: bool = True
    epochs: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        10, description="passes over the training images; auto = " + _auto_means("epochs"))
    arch_params: dict | Literal["auto"] = Field(
        default_factory=dict, description="the network's own parameters (cnn-fast: channels, "
        "dropout); auto = " + _auto_means("arch_params"))
    max_train_seconds: float = Field(0, ge=0, description="0 = no limit")
    bf16: bool | Literal["auto"] = Field(False, description="bfloat16 autocast; auto = where "
                                         "the hardware has it")
    augment_shift: Annotated[int, Field(ge=0, le=8)] | Literal["auto"] = Field(
        0, description="train on images moved by up to this many pixels, at random; auto = "
        + _auto_means("augment_shift"))
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        128, description="images per gradient step; auto = " + _auto_means("batch_size"))
    augment: list[Augmentation] | Literal["auto"] = Field(
        default_factory=list, description="training augmentations, each drawn per image: "
        f"{', '.join(AUGMENTATION_NAMES)} (models.augment says what each does; section 5 "
        "measures what they change); auto = " + _auto_means("augment"))

    def for_data(self, data: Dataset, name: str) -> ModelSpec:
        """This spec of network ``name`` with its "auto" entries decided for ``data``."""
        mnist_sized_digits = data.digits and min(data.image_shape) >= 28
        update = {field_name: copy.deepcopy(  # not the registry's lists
            NETWORKS[name].decide_auto(field_name, mnist_sized_digits))
            for field_name in self.auto_fields()}
        return self.model_copy(update=update) if update else self

    def auto_fields(self) -> list[str]:
        """The settings still "auto" that :meth:`for_data` decides (bf16's "auto" is the
        hardware's, decided by the estimator when it trains)."""
        return [name for name in type(self).model_fields
                if name != "bf16" and getattr(self, name) == "auto"]

    def estimator_params(self) -> dict:
        undecided = self.auto_fields()
        if undecided:
            raise ValueError(f"{', '.join(undecided)} 'auto': decide it for the data first "
                             "(for_data)")
        params = self.model_dump(exclude={"enabled"})
        params["max_train_seconds"] = self.max_train_seconds or None
        params["arch_params"] = self.arch_params or None
        return params


# Each network's default training, from the registry of networks (its seed order).
DEFAULT_MODELS = {name: ModelSpec(**network.spec) for name, network in NETWORKS.items()}


TRAINING_ORDER = sorted(NETWORKS, key=lambda name: NETWORKS[name].training_order)


def in_seed_order(runs: list) -> list:
    """Trained networks (anything with a ``name``) in the seed's order, MLPs then CNNs, whatever
    the order they trained in: the report, the model list and a tie for the best follow it."""
    return sorted(runs, key=lambda r: list(DEFAULT_MODELS).index(r.name))


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_train: int = Field(0, ge=0, description="training images used (0 = all)")
    threads: int = Field(0, ge=0, description="CPU threads per training process (0 = the "
                         "cores the study gives it: one when two networks train side by side, "
                         "else all)")
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
    def _auto_where_the_registry_defines_it(self) -> Params:
        for name, spec in self.models.items():
            for field_name in spec.auto_fields():
                if field_name not in NETWORKS[name].auto:
                    defined = [n for n, network in NETWORKS.items() if field_name in network.auto]
                    raise ValueError(f"models.{name}.{field_name}: 'auto' is defined for "
                                     f"{', '.join(defined) or 'no network'} only")
        return self

    @model_validator(mode="after")
    def _check_architectures(self) -> Params:
        changed = {name: spec for name, spec in self.models.items()
                   if spec.arch_params not in ("auto", DEFAULT_MODELS[name].arch_params)}
        if not changed:  # the defaults are valid (tested); building them would import torch
            return self
        from ..models.nets import build_module

        for name, spec in changed.items():
            try:
                build_module(name, (28, 28), 10, spec.arch_params)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"models.{name}.arch_params: {exc}") from None
        return self

    def enabled(self) -> dict[str, ModelSpec]:
        return {k: v for k, v in self.models.items() if v.enabled}


# cnn-fast's 3 epochs of 2,000 images are too few gradient steps for shifted images to pay
# (mnist-5k, seeds 0-2: 0.8977 without, 0.8950 with): the quick profile trains on them as they are.
QUICK = {"max_train": 2000,
         "models": {"mlp-1": {"epochs": 4}, "mlp-2": {"epochs": 4}, "cnn-seed": {"epochs": 3},
                    "cnn-fast": {"epochs": 3, "augment_shift": 0, "augment": []}},
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
    # Per epoch, the validation loss under the training criterion (label smoothing included):
    # what the training loss can be compared with; history["val_loss"] is plain cross-entropy.
    val_loss_criterion: list[float]
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
    train_pid: int  # the process that trained it: another than the study's when isolated
    weights_file: str  # relative to the run folder
    weights_sha256: str  # the store checks it: altered or missing weights make the step stale
    confusion: np.ndarray
    test_pred: np.ndarray  # (n_test,) int16: the class predicted for each test image
    example_images: np.ndarray
    example_pred: np.ndarray
    example_true: np.ndarray
    error_images: np.ndarray
    error_pred: np.ndarray
    error_true: np.ndarray
    error_confidence: np.ndarray

    @property
    def n_fit(self) -> int:
        """The images the weights were fitted on: ``n_train`` less the validation split the
        estimator holds out (scikit-learn's train_test_split rounds that split up)."""
        fraction = self.spec.get("validation_fraction") or 0
        return self.n_train - math.ceil(fraction * self.n_train) if fraction else self.n_train

    @property
    def val_acc(self) -> float:
        """Validation accuracy of the weights kept: the epoch of least validation loss under
        early stopping, else the last (NaN without a validation split)."""
        acc, loss = self.history.get("val_acc") or [], self.history.get("val_loss") or []
        if not acc:
            return math.nan
        if self.spec.get("early_stopping") and loss:
            return float(acc[int(np.argmin(loss))])
        return float(acc[-1])


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
        from ..models.deep_process import run_in_child

        return run_in_child(fn, *args)
    import torch

    threads = torch.get_num_threads()
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def architectures(data: Dataset, *, arch_params: dict[str, dict]) -> Architectures:
    """Layers, shapes and parameter counts of each network (``arch_params`` per name)."""
    from ..models.deep import build_module, count_parameters, layer_table

    shapes, outputs, layers, params = {}, {}, {}, {}
    for name, arch in arch_params.items():
        module = build_module(name, data.image_shape, data.n_classes, arch)
        layers[name] = layer_table(module, data.image_shape)
        shapes[name] = ([None, int(np.prod(data.image_shape))] if name.startswith("mlp")
                        else [None, 1, *data.image_shape])
        outputs[name] = data.n_classes
        params[name] = count_parameters(module)
    return Architectures(shapes, outputs, layers, params)


def train_model(data: Dataset, *, name: str, spec: ModelSpec, max_train: int, isolate: bool,
                threads: int, n_examples: int, seed: int, files_dir: Path,
                files_key: str) -> TrainResult:
    """Train one network; its weights go to ``files_dir/NAME-KEY.safetensors``, named by the
    step's key so that a cached result always points at the weights it produced."""
    x, y = stratified_subset(data.x_train, data.y_train, max_train or None, seed)
    files_dir.mkdir(parents=True, exist_ok=True)
    weights = files_dir / f"{name}-{files_key[:16]}.safetensors"
    from ..models.deep_process import fit_evaluate

    out = _call(isolate, fit_evaluate, name, {**spec.estimator_params(), "seed": seed}, x, y,
                data.x_test, data.y_test, threads or cores_given() or 0, str(weights), isolate)
    from sklearn.metrics import confusion_matrix

    pred, conf = out["pred"], out["confidence"]
    wrong = np.flatnonzero(pred != data.y_test)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:n_examples]
    first = np.arange(min(n_examples, len(pred)))
    history = dict(out["history"])
    return TrainResult(
        name=name, spec=spec.model_dump(), n_train=len(y), history=history,
        val_loss_criterion=history.pop("val_loss_criterion"),
        test_loss=out["test_loss"], test_acc=float(np.mean(pred == data.y_test)),
        train_s=out["train_s"], epochs_run=len(out["history"]["train_loss"]),
        infer_s_per_10k=out["infer_s_per_10k"], n_params=out["n_params"],
        peak_mb=out["peak_mb"], baseline_mb=out["baseline_mb"], threads=out["threads"],
        isolated=isolate, train_pid=out["pid"],
        weights_file=str(weights.relative_to(files_dir.parent)),
        weights_sha256=sha256_file(weights),
        confusion=confusion_matrix(data.y_test, pred, labels=range(data.n_classes)),
        test_pred=pred.astype(np.int16),
        example_images=data.x_test[first], example_pred=pred[first].astype(np.int64),
        example_true=data.y_test[first], error_images=data.x_test[wrong],
        error_pred=pred[wrong].astype(np.int64), error_true=data.y_test[wrong],
        error_confidence=conf[wrong].astype(np.float32))


def overfit(data: Dataset, *, name: str, spec: ModelSpec, overfit_images: int,
            overfit_max_epochs: int, isolate: bool, threads: int, seed: int) -> OverfitResult:
    """Train on ``overfit_images`` images until every one is right (at most
    ``overfit_max_epochs``), then score the test set."""
    x, y = stratified_subset(data.x_train, data.y_train, overfit_images, seed)
    params = {**spec.estimator_params(), "seed": seed, "validation_fraction": 0.0,
              "early_stopping": False, "schedule": "constant", "max_train_seconds": None,
              "epochs": overfit_max_epochs, "stop_at_train_accuracy": 1.0}
    from ..models.deep_process import overfit_evaluate

    out = _call(isolate, overfit_evaluate, name, params, x, y, data.x_test, data.y_test,
                threads or cores_given() or 0)
    return OverfitResult(name, len(y), out["epochs"], out["history"][-1], out["test_acc"],
                         out["test_loss"], out["history"])


def plan(data: Dataset, params: Params, seed: int, engine: str = "sklearn",
         earlier: Mapping[str, Step] | None = None) -> list[Step]:
    params = params.model_copy(update={"models": {
        name: spec.for_data(data, name) for name, spec in params.models.items()}})
    for name, spec in params.enabled().items():  # the config against this data's images
        problem = (image_shape_problem(name, data.image_shape, spec.arch_params)
                   or augment_shift_problem(spec.augment_shift, data.image_shape))
        if problem:
            raise ConfigError(f"deep.models.{name}: cannot work on images of "
                              f"{data.image_shape[0]}x{data.image_shape[1]} ({problem})")
    if params.overfit_models and params.overfit_images < data.n_classes:
        raise ConfigError(f"deep.overfit_images={params.overfit_images}: fewer than the "
                          f"{data.n_classes} classes of {data.name} (the overfitting demo "
                          "trains on at least one image of each)")

    # On two cores each network trains on one thread, two at once, when it trains in a process
    # of its own: a second thread made them little faster (Fashion-MNIST, one epoch, 2 -> 1
    # threads: cnn-fast 30.3 -> 47.6 s, cnn-seed 11.2 -> 14.9 s, mlp-2 5.6 -> 5.0 s), and
    # the longest first, so that the two cores end together. In this process (the quick
    # profile) the trainings would share torch's threads and Python's lock: one at a time.
    # On more cores, one at a time with every core (one thread each would leave most idle).

    one_core = params.isolate and usable_cores() == 2

    def step(step_name: str, fn, /, **given) -> Step:
        return bind(step_name, fn, params, seed, one_core=one_core, **given)

    enabled = params.enabled()
    steps = [bind("architectures", architectures, params, seed,
                  arch_params={k: v.arch_params for k, v in enabled.items()})]
    for name in sorted(enabled, key=TRAINING_ORDER.index):
        steps.append(step(f"train:{name}", train_model, files=True, name=name,
                          spec=enabled[name]))
    for name in params.overfit_models:
        steps.append(step(f"overfit:{name}", overfit, name=name,
                          spec=params.models.get(name) or DEFAULT_MODELS[name].for_data(data, name)))
    return steps
