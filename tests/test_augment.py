"""The networks' training augmentations: per image, seeded, of the kinds the robustness
section's corruptions test; and the estimator and the study configuration taking them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistlab import build_config, load_dataset
from mnistlab.core.errors import ConfigError
from mnistlab.models.augment import AUGMENTATIONS, augment
from mnistlab.models.deep import TorchClassifier
from mnistlab.models.training import AUGMENTATION_NAMES


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    x = load_dataset("mnist-5k").x_test[:128]
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(1)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_registry_is_the_configurations_list():
    assert tuple(AUGMENTATIONS) == AUGMENTATION_NAMES


@pytest.mark.parametrize("name", AUGMENTATION_NAMES)
def test_each_augmentation_is_seeded_per_image_and_keeps_grey_levels(batch, name):
    out = AUGMENTATIONS[name](batch, _seeded())
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert torch.equal(out, AUGMENTATIONS[name](batch, _seeded()))
    assert not torch.equal(out, AUGMENTATIONS[name](batch, _seeded(1)))
    assert out.min() >= 0 and out.max() <= 255 + 1e-3
    changed = (out != batch).flatten(1).any(1)
    # drawn per image: some images changed, and (but for the affine map) some left as they are
    assert changed.any()
    if name != "affine":
        assert not changed.all()


@pytest.mark.parametrize("name, share", [("affine", 0.3), ("stroke", 0.5), ("blur", 0.2),
                                         ("contrast", 0.3), ("noise", 0.2)])
def test_each_augmentation_changes_the_share_of_images_its_docstring_states(name, share):
    images = load_dataset("mnist-5k").x_test  # 1,000: a share's sd is at most 0.016
    pix = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    changed = (AUGMENTATIONS[name](pix, _seeded()) != pix).flatten(1).any(1).float().mean()
    assert abs(float(changed) - share) < 0.06


def test_the_stroke_augmentation_thickens_some_and_thins_others(batch):
    out = AUGMENTATIONS["stroke"](batch, _seeded())
    ink_before, ink_after = (batch > 127).flatten(1).sum(1), (out > 127).flatten(1).sum(1)
    thicker, thinner = (ink_after > ink_before).float().mean(), (ink_after < ink_before).float().mean()
    assert 0.1 < thicker < 0.4 and 0.1 < thinner < 0.4


def test_the_affine_map_moves_the_ink_but_keeps_most_of_it(batch):
    out = augment(batch, ["affine"], _seeded())
    mass_before, mass_after = batch.flatten(1).sum(1), out.flatten(1).sum(1)
    # scaled by 0.6 to 1.1 in each direction: the ink's mass by about 0.36 to 1.2
    ratio = mass_after / mass_before
    assert 0.3 < ratio.min() and ratio.max() < 1.4


def test_a_network_trains_with_every_augmentation_and_refuses_an_unknown_one():
    data = load_dataset("digits")
    clf = TorchClassifier("mlp-1", epochs=3, augment=list(AUGMENTATION_NAMES)).fit(
        data.x_train, data.y_train)
    plain = TorchClassifier("mlp-1", epochs=3).fit(data.x_train, data.y_train)
    # it learns (chance is 0.1), from other images than the plain fit's (same seed)
    assert clf.score(data.x_test, data.y_test) > 0.3
    assert clf.history_["train_loss"] != plain.history_["train_loss"]
    with pytest.raises(ValueError, match=r"^TorchClassifier: augment\.0: Input should be"):
        TorchClassifier("mlp-1", augment=["flip"]).fit(data.x_train, data.y_train)


def test_the_configuration_takes_augmentations_per_network():
    config = build_config("full", {"deep": {"models": {"cnn-fast": {"augment": ["affine"]}}}})
    assert config.deep.models["cnn-fast"].augment == ["affine"]
    spec = config.deep.models["cnn-fast"].for_data(load_dataset("digits"), "cnn-fast")
    assert spec.estimator_params()["augment"] == ["affine"]
    with pytest.raises(ConfigError, match="augment"):
        build_config("full", {"deep": {"models": {"cnn-fast": {"augment": ["flip"]}}}})
