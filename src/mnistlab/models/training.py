"""The parameters of training a network, validated in one place.

Kept apart from :mod:`mnistlab.models.deep` (which imports torch): the study configuration reads them
at start-up, and ``mnistlab --help`` should not pay for torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def augment_shift_problem(augment_shift: int, image_shape: tuple[int, int]) -> str | None:
    """Why ``augment_shift`` cannot apply to images of ``image_shape``, or None when it can:
    a shift as large as the image would move it out of sight."""
    h, w = image_shape
    if augment_shift >= min(h, w):
        return (f"augment_shift={augment_shift} would move {h}x{w} images out of sight; use "
                f"less than {min(h, w)}")
    return None


# The training augmentations' names, in the order they apply (models.augment.AUGMENTATIONS
# holds their code, which needs torch: the configuration reads the names without it).
AUGMENTATION_NAMES = ("affine", "stroke", "blur", "contrast", "noise")
Augmentation = Literal[AUGMENTATION_NAMES]  # type: ignore[valid-type]


class TrainingParams(BaseModel):
    """How a network is trained: the TorchClassifier parameters besides ``arch``, validated in
    this one place for the estimator (at ``fit``) and for the study configuration (the deep
    section's ``[deep.models.NAME]`` extends it)."""

    model_config = ConfigDict(extra="forbid")

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
    augment_shift: int = Field(0, ge=0, le=8)
    augment: list[Augmentation] = Field(default_factory=list)
    arch_params: dict | None = None
    max_train_seconds: float | None = Field(None, ge=0)
    bf16: bool | Literal["auto"] = False

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self) -> TrainingParams:
        if self.early_stopping and self.validation_fraction <= 0:
            raise ValueError("early_stopping needs validation_fraction > 0")
        return self
