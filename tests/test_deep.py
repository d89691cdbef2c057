import os

import numpy as np
import pytest
import torch

from mnistlab import build_config, load_dataset
from mnistlab.core.errors import ConfigError
from mnistlab.engine.step import call_step
from mnistlab.models.deep import TorchClassifier, build_module, count_parameters, layer_table
from mnistlab.sections import deep as section


def _train(data, params, folder, name="mlp-1"):
    return call_step(section.train_model, data, params, name=name, spec=params.models[name],
                     files_dir=folder / "models", files_key="0123456789abcdef01234567")


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")


@pytest.fixture(autouse=True)
def _one_thread():
    # Same thread count in every test: results are reproducible only at a fixed count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch, epochs", [("mlp-1", 2), ("mlp-2", 2), ("cnn-seed", 1),
                                          ("cnn-fast", 1)])
def test_each_model_learns(mnist5k, arch, epochs):
    x, y = mnist5k.x_train[:2000], mnist5k.y_train[:2000]
    clf = TorchClassifier(arch, epochs=epochs, validation_fraction=0.1).fit(x, y)
    assert clf.score(mnist5k.x_test, mnist5k.y_test) > 0.6  # chance is 0.1
    assert len(clf.history_["val_loss"]) == epochs
    proba = clf.predict_proba(mnist5k.x_test[:5])
    assert proba.shape == (5, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_same_seed_same_predictions(mnist5k):
    x, y = mnist5k.x_train[:1000], mnist5k.y_train[:1000]
    runs = [TorchClassifier("cnn-fast", epochs=1, seed=3).fit(x, y).predict_proba(
        mnist5k.x_test) for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])
    other = TorchClassifier("cnn-fast", epochs=1, seed=4).fit(x, y).predict_proba(mnist5k.x_test)
    assert not np.array_equal(runs[0], other)


def test_saved_weights_reload_and_predict_the_same(mnist5k, tmp_path):
    clf = TorchClassifier("cnn-seed", epochs=1).fit(mnist5k.x_train[:500], mnist5k.y_train[:500])
    path = clf.save(tmp_path / "cnn.safetensors")
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    again = TorchClassifier.load(path)
    assert np.array_equal(again.predict_proba(mnist5k.x_test), clf.predict_proba(mnist5k.x_test))
    assert again.mean_ == clf.mean_ and again.n_params_ == clf.n_params_


def test_overfit_demo_reaches_full_training_accuracy(mnist5k):
    params = build_config("quick").deep
    result = call_step(section.overfit, mnist5k, params, name="mlp-1",
                       spec=params.models["mlp-1"])
    assert result.n_images == 10 and result.train_acc == 1.0
    assert result.history_train_acc[-1] == 1.0 and result.epochs == len(result.history_train_acc)
    assert result.test_acc < 0.8  # ten images do not generalise


@pytest.mark.parametrize("arch", ["mlp-1", "mlp-2", "cnn-seed", "cnn-fast"])
def test_summary_parameter_counts_equal_the_modules(arch):
    module = build_module(arch, (28, 28), 10)
    rows = layer_table(module, (28, 28))
    assert sum(r["params"] for r in rows) == count_parameters(module)
    assert rows[-1]["output_shape"] == [None, 10]


def test_keras_numbers_of_the_seed_models():
    assert count_parameters(build_module("mlp-1", (28, 28), 10)) == 101_770  # seed's summary
    rows = layer_table(build_module("cnn-seed", (28, 28), 10), (28, 28))
    assert rows[0]["output_shape"] == [None, 32, 26, 26] and rows[0]["params"] == 320


@pytest.mark.parametrize("arch", ["cnn-seed", "cnn-fast"])
def test_the_cnns_pool_before_their_relu_with_the_textbook_values_and_gradients(arch):
    """Same weights, same batch, same dropout draws: the textbook order (ReLU, then pooling)
    and ours give bit-identical outputs and gradients, in float32 and under bf16 autocast."""
    from torch import nn

    ours = build_module(arch, (28, 28), 10).to(memory_format=torch.channels_last)
    layers, swapped = list(ours), 0
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.MaxPool2d) and isinstance(layers[i + 1], nn.ReLU):
            layers[i], layers[i + 1] = nn.ReLU(), layers[i]
            swapped += 1
    assert swapped == (1 if arch == "cnn-seed" else 2)
    textbook = nn.Sequential(*layers)
    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for bf16 in (False, True):
        outputs, grads = [], []
        for module in (ours, textbook):
            module.zero_grad()
            torch.manual_seed(3)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = module(x)
            out.float().square().sum().backward()
            outputs.append(out)
            grads.append([p.grad.clone() for p in module.parameters()])
        assert torch.equal(outputs[0], outputs[1])
        assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_section_trains_in_a_subprocess_and_saves_safetensors(mnist5k, tmp_path):
    params = build_config("quick", {"deep": {"max_train": 500, "isolate": True}}).deep
    result = _train(mnist5k, params, tmp_path)
    assert result.isolated and result.train_pid != os.getpid()
    assert (tmp_path / result.weights_file).is_file()
    again = TorchClassifier.load(tmp_path / result.weights_file)
    assert np.mean(again.predict(mnist5k.x_test) == mnist5k.y_test) == pytest.approx(
        result.test_acc)
    assert result.peak_mb > result.baseline_mb > 0 and result.confusion.sum() == 1000
    assert len(result.history["train_loss"]) == result.epochs_run == 4


def test_a_training_process_reports_its_own_peak_not_its_parents(mnist5k, tmp_path):
    """The child's peak is its kernel high-water mark: 600 MB held by the study's process
    (pages a fork would have shared) are not in it."""
    import psutil

    ballast = np.ones(600 * 2**20, dtype=np.uint8)
    params = build_config("quick", {"deep": {"max_train": 500, "isolate": True}}).deep
    result = _train(mnist5k, params, tmp_path)
    here = psutil.Process().memory_info().rss / 2**20
    assert ballast.sum() and result.baseline_mb < result.peak_mb < here - 300


@pytest.mark.parametrize("override, message", [
    ({"models": {"cnn-fast": {"arch_params": {"channels": []}}}},
     "models.cnn-fast.arch_params: cnn-fast channels must be positive integers"),
    ({"models": {"cnn-fast": {"arch_params": {"channels": [8, 8, 8, 8, 8, 8]}}}},
     "pool 28x28 images to nothing"),
    ({"models": {"resnet": {}}}, "unknown model 'resnet'"),
    ({"models": {"mlp-1": {"epochs": 0}}}, "deep.models.mlp-1.epochs: Input should be greater"),
    ({"models": {"mlp-1": {"optimizer": "lbfgs"}}}, "deep.models.mlp-1.optimizer"),
    ({"models": {"cnn-fast": {"epochs": 0}}},
     "deep.models.cnn-fast.epochs: Input should be greater than or equal to 1, or 'auto' "
     "(got 0)"),
    ({"models": {"cnn-fast": {"arch_params": 3}}},
     "deep.models.cnn-fast.arch_params: Input should be a valid dictionary, or 'auto' (got 3)"),
    ({"models": {"cnn-fast": {"augment": ["flip"]}}},
     "deep.models.cnn-fast.augment.0: Input should be 'affine', 'stroke', 'blur', 'contrast' "
     "or 'noise' (got 'flip')"),
])
def test_bad_architecture_parameters_are_rejected(override, message):
    """One phrase per wrong setting, a setting that may be "auto" included (pydantic fails it
    once per choice of the union, under locations the user never wrote)."""
    with pytest.raises(ConfigError) as info:
        build_config("full", {"deep": override})
    assert message in str(info.value)
    assert "literal[" not in str(info.value) and "constrained-int" not in str(info.value)


@pytest.mark.parametrize("arch, arch_params", [
    ("mlp-1", {}), ("mlp-2", {"hidden": [16]}), ("cnn-seed", {}), ("cnn-fast", {}),
    ("cnn-fast", {"channels": [4]}), ("cnn-fast", {"channels": [4, 4, 4, 4]})])
def test_the_torch_free_shape_check_agrees_with_building_and_running_the_network(arch,
                                                                                 arch_params):
    """The plan checks networks against the images without torch; what it accepts must build
    and run, what it refuses must not."""
    from mnistlab.models.architectures import image_shape_problem

    for shape in [(h, w) for h in range(1, 12) for w in (1, 3, 4, 8, 9)]:
        problem = image_shape_problem(arch, shape, arch_params)
        try:
            module = build_module(arch, shape, 3, arch_params)
            out = module.eval()(torch.zeros(2, 1, *shape))
        except (ValueError, RuntimeError) as exc:
            assert problem is not None, (shape, exc)
        else:
            assert problem is None and out.shape == (2, 3), shape


def test_overfit_demo_on_unbalanced_classes_sees_each_class(mnist5k):
    # 4 classes in shares 71/19/7/3 %: ten images drawn in proportion leave the last out,
    # and the test set's images of it once broke the demo's test loss
    from mnistlab.data.datasets import Dataset

    y = np.repeat([0, 1, 2, 3], [355, 95, 35, 15])
    x = np.concatenate([mnist5k.x_train[mnist5k.y_train == c][:k] for c, k in
                        zip(range(4), (355, 95, 35, 15))])
    test = np.isin(mnist5k.y_test, [0, 1, 2, 3])
    data = Dataset("unbalanced", x, y, mnist5k.x_test[test], mnist5k.y_test[test],
                   ["0", "1", "2", "3"], digits=True)
    params = build_config("quick").deep
    result = call_step(section.overfit, data, params, name="mlp-1", spec=params.models["mlp-1"])
    assert result.n_images == 10 and result.train_acc == 1.0
    assert np.isfinite(result.test_loss) and result.test_loss < 10


def test_the_plan_refuses_an_overfitting_demo_with_fewer_images_than_classes(mnist5k):
    params = build_config("full", {"deep": {"overfit_images": 9}}).deep
    with pytest.raises(ConfigError) as info:
        section.plan(mnist5k, params, seed=0)
    assert str(info.value) == ("deep.overfit_images=9: fewer than the 10 classes of mnist-5k "
                               "(the overfitting demo trains on at least one image of each)")


def test_log_loss_refuses_labels_the_model_never_saw(mnist5k):
    keep = mnist5k.y_train[:600] != 7
    clf = TorchClassifier("mlp-1", epochs=1, validation_fraction=0).fit(
        mnist5k.x_train[:600][keep], mnist5k.y_train[:600][keep])
    assert clf.log_loss(mnist5k.x_test[:50][mnist5k.y_test[:50] != 7],
                        mnist5k.y_test[:50][mnist5k.y_test[:50] != 7]) > 0
    with pytest.raises(ValueError, match=r"^log_loss: labels \[7\] were not among the classes "):
        clf.log_loss(mnist5k.x_test[:50], mnist5k.y_test[:50])


def test_the_plan_refuses_a_network_the_images_are_too_small_for():
    data = load_dataset("digits")  # 8x8: 28x28 passes the config check, 8x8 not the plan's
    params = build_config("full", {"deep": {"models": {
        "cnn-fast": {"arch_params": {"channels": [8, 8, 8, 8, 8]}}}}}).deep
    with pytest.raises(ConfigError, match=r"^deep.models.cnn-fast: cannot work on images of "
                       r"8x8 \(cnn-fast: 5 blocks pool 8x8 images to nothing"):
        section.plan(data, params, seed=0)


def test_estimator_rejects_bad_parameters(mnist5k):
    with pytest.raises(ValueError, match="TorchClassifier: arch must be one of"):
        TorchClassifier("resnet").fit(mnist5k.x_train[:50], mnist5k.y_train[:50])
    with pytest.raises(ValueError, match="early_stopping needs validation_fraction > 0"):
        TorchClassifier(early_stopping=True, validation_fraction=0).fit(
            mnist5k.x_train[:50], mnist5k.y_train[:50])


def test_in_process_training_gives_the_same_model(mnist5k, tmp_path):
    params = build_config("quick", {"deep": {"max_train": 500, "threads": 1}}).deep
    here = _train(mnist5k, params, tmp_path / "a")
    child = _train(mnist5k, params.model_copy(update={"isolate": True}), tmp_path / "b")
    assert not here.isolated and child.isolated
    assert here.train_pid == os.getpid() != child.train_pid
    assert here.test_acc == child.test_acc
    for key in ("train_loss", "val_loss", "val_acc"):  # "seconds" differ, numbers do not
        assert here.history[key] == child.history[key]


@pytest.mark.parametrize("p", [0.25, 0.5, 0.2])
def test_dropout_drops_p_of_the_elements_and_scales_the_rest(p):
    from mnistlab.models.nets import Dropout

    x = torch.randn(64, 32, 13, 13).to(memory_format=torch.channels_last).requires_grad_()
    torch.manual_seed(0)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    y.sum().backward()  # the gradient passes where the element was kept, scaled alike
    assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept],
                                                             torch.tensor(1 / (1 - p)))
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)  # the study's seed decides the masks
    assert torch.equal(Dropout(p).train()(x), y)
    assert torch.equal(Dropout(p).eval()(x), x)


def _offset_of(moved: np.ndarray, image: np.ndarray, shift: int, background: float):
    """The (dy, dx) in [-shift, shift] that moves ``image`` to ``moved``, or None."""
    h, w = image.shape
    padded = np.pad(image, shift, constant_values=background)
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            if np.array_equal(padded[shift - dy:shift - dy + h, shift - dx:shift - dx + w],
                              moved):
                return dy, dx
    return None


@pytest.mark.parametrize("shift", [1, 2])
def test_shift_augmentation_moves_each_image_by_its_own_offset(shift):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(200, 12, 10)).astype(np.float32)  # no 0: borders show
    clf = TorchClassifier("cnn-fast", augment_shift=shift)
    clf.mean_, clf.std_ = 100.0, 50.0
    batch = clf._images(images)
    moved = clf._shifted(batch, torch.Generator().manual_seed(0))
    assert moved.shape == batch.shape
    background = -clf.mean_ / clf.std_
    offsets = [_offset_of(m[0].numpy(), b[0].numpy(), shift, background)
               for m, b in zip(moved, batch)]
    assert None not in offsets
    # every offset of the square is drawn
    counts = np.unique(np.array(offsets), axis=0, return_counts=True)[1]
    assert len(counts) == (2 * shift + 1) ** 2 and counts.min() >= 1
    again = clf._shifted(batch, torch.Generator().manual_seed(0))
    assert torch.equal(moved, again)  # the seed decides the offsets


def test_shift_augmentation_trains_reproducibly_and_changes_the_model(mnist5k):
    x, y = mnist5k.x_train[:600], mnist5k.y_train[:600]
    params = dict(epochs=1, validation_fraction=0.1, arch_params={"channels": [8, 16]})
    plain = TorchClassifier("cnn-fast", **params).fit(x, y)
    shifted = TorchClassifier("cnn-fast", augment_shift=1, **params).fit(x, y)
    again = TorchClassifier("cnn-fast", augment_shift=1, **params).fit(x, y)
    assert shifted.history_["train_loss"] == again.history_["train_loss"]
    assert shifted.history_["train_loss"] != plain.history_["train_loss"]
    assert np.array_equal(shifted.predict(mnist5k.x_test[:50]), again.predict(mnist5k.x_test[:50]))


@pytest.mark.parametrize("value, message", [(-1, "greater than or equal to 0"),
                                            (9, "less than or equal to 8"),
                                            ("2", "valid integer")])
def test_bad_shift_augmentation_is_rejected_by_the_estimator_and_the_config(mnist5k, value,
                                                                           message):
    with pytest.raises(ValueError, match=f"TorchClassifier: augment_shift: .*{message}"):
        TorchClassifier("cnn-fast", augment_shift=value).fit(mnist5k.x_train[:50],
                                                              mnist5k.y_train[:50])
    if not isinstance(value, str):
        with pytest.raises(ConfigError, match="augment_shift"):
            build_config("full", {"deep": {"models": {"cnn-fast": {"augment_shift": value}}}})


def test_a_shift_as_large_as_the_images_is_refused_by_the_estimator_and_the_plan():
    data = load_dataset("digits")  # 8x8 images
    with pytest.raises(ValueError, match="augment_shift=8 would move 8x8 images out of sight"):
        TorchClassifier("mlp-1", augment_shift=8).fit(data.x_train[:50], data.y_train[:50])
    params = build_config("quick", {"deep": {"models": {
        "mlp-1": {"augment_shift": 8}}}}).deep
    with pytest.raises(ConfigError, match=r"^deep.models.mlp-1: cannot work on images of 8x8 "
                       r"\(augment_shift=8 would move 8x8 images out of sight; use less than "
                       r"8\)$"):
        section.plan(data, params, seed=0)
    TorchClassifier("mlp-1", augment_shift=7, epochs=1).fit(data.x_train[:50],
                                                            data.y_train[:50])


def test_cnn_fast_shifts_mnist_sized_digits_only_and_a_chosen_shift_is_kept(mnist5k):
    """augment_shift "auto" is decided by the plan for the data: 1 on 28x28 digits (it helped
    there), 0 on other images of that size and on 8x8 digits (it hurt both); a value the
    config sets is kept, and an undecided spec never reaches the estimator."""
    import dataclasses

    def shifts(data, cfg=None):
        steps = section.plan(data, (cfg or build_config("full")).deep, 0)
        return {s.name: s.arguments["spec"].augment_shift for s in steps
                if s.name.startswith("train:")}

    assert shifts(mnist5k) == {"train:cnn-fast": 1, "train:cnn-seed": 0, "train:mlp-2": 0,
                               "train:mlp-1": 0}
    assert shifts(dataclasses.replace(mnist5k, digits=False))["train:cnn-fast"] == 0
    assert shifts(load_dataset("digits"))["train:cnn-fast"] == 0
    chosen = build_config("full").model_copy(deep=True)
    chosen.deep.models["cnn-fast"].augment_shift = 2
    assert shifts(dataclasses.replace(mnist5k, digits=False), chosen)["train:cnn-fast"] == 2
    with pytest.raises(ValueError, match="for_data"):
        build_config("full").deep.models["cnn-fast"].estimator_params()


def test_cnn_fast_trains_longer_in_smaller_batches_on_mnist_sized_digits_only(mnist5k):
    """batch_size, epochs and arch_params "auto": on 28x28 digits, where the augmentations
    apply, batches of 32 for 10 epochs through a fourth block; elsewhere batches of 256 for 5
    epochs through three. The other networks keep their own, a value the config sets is kept,
    and "auto" is refused where the registry does not say what it means."""
    import dataclasses

    def chosen(data, cfg=None):
        steps = section.plan(data, (cfg or build_config("full")).deep, 0)
        return {s.name[len("train:"):]: (s.arguments["spec"].batch_size,
                                         s.arguments["spec"].epochs,
                                         s.arguments["spec"].arch_params)
                for s in steps if s.name.startswith("train:")}

    assert chosen(mnist5k) == {"cnn-fast": (32, 10, {"channels": [16, 32, 64, 128]}),
                               "cnn-seed": (128, 10, {}), "mlp-2": (128, 10, {}),
                               "mlp-1": (128, 10, {})}
    elsewhere = (256, 5, {"channels": [32, 64, 128]})
    assert chosen(dataclasses.replace(mnist5k, digits=False))["cnn-fast"] == elsewhere
    assert chosen(load_dataset("digits"))["cnn-fast"] == elsewhere
    config = build_config("full", {"deep": {"models": {"cnn-fast": {
        "batch_size": 48, "epochs": 2, "arch_params": {"channels": [8, 16]}}}}})
    assert chosen(mnist5k, config)["cnn-fast"] == (48, 2, {"channels": [8, 16]})
    decided = next(s.arguments["spec"] for s in section.plan(mnist5k, build_config("full").deep, 0)
                   if s.name == "train:cnn-fast")
    decided.arch_params["channels"].append(1)  # a decided spec is a copy, not the registry's
    assert chosen(mnist5k)["cnn-fast"][2] == {"channels": [16, 32, 64, 128]}
    with pytest.raises(ConfigError, match="batch_size"):
        build_config("full", {"deep": {"models": {"cnn-fast": {"batch_size": "big"}}}})
    with pytest.raises(ConfigError, match=r"models\.mlp-1\.epochs: 'auto' is defined for "
                       r"cnn-fast only"):
        build_config("full", {"deep": {"models": {"mlp-1": {"epochs": "auto"}}}})


def test_augmenting_a_chunk_at_a_time_keeps_the_batches_of_the_permutation(mnist5k, monkeypatch):
    """Images are drawn (and augmented) ~1,024 at a time, then cut into batches: without
    augmentations the model is the one trained batch by batch, bit for bit."""
    x, y = mnist5k.x_train[:1200], mnist5k.y_train[:1200]  # 1,080 to train: two chunks
    params = dict(epochs=2, batch_size=32, validation_fraction=0.1,
                  arch_params={"channels": [8, 16]})
    assert TorchClassifier("cnn-fast", **params)._chunk == 1024
    assert TorchClassifier("cnn-fast", batch_size=300)._chunk == 900
    assert TorchClassifier("cnn-fast", batch_size=2000)._chunk == 2000
    chunked = TorchClassifier("cnn-fast", **params).fit(x, y)
    monkeypatch.setattr(TorchClassifier, "_chunk", property(lambda self: self.batch_size))
    batch_by_batch = TorchClassifier("cnn-fast", **params).fit(x, y)
    assert chunked.history_["train_loss"] == batch_by_batch.history_["train_loss"]
    for a, b in zip(chunked.module_.state_dict().values(),
                    batch_by_batch.module_.state_dict().values(), strict=True):
        assert torch.equal(a, b)
