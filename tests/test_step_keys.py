"""Step keys are derived from what each step receives: change one configuration value and exactly
the steps that read it (and the steps that read their results) get new keys; every other step
keeps its key, so its stored result is reused."""

from __future__ import annotations

import tomllib
import typing

import numpy as np
import pydantic
import pytest

from conftest import FAST_TOML
from mnistlab import build_config, load_dataset, run_study
from mnistlab.core.errors import ConfigError
from mnistlab.engine.store import RunStore
from mnistlab.models.deep import TorchClassifier
from mnistlab.sections import SECTIONS
from mnistlab.study.runner import plan_study

FAST = tomllib.loads(FAST_TOML)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _keys(data, config) -> dict[str, str]:
    return {f"{p.section}.{p.step.name}": p.key for p in plan_study(data, config)}


def _candidates(value, annotation):
    """Other values of a field's type, most natural first; the config validates them."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):  # + 1000: a max_train of 1 is rightly refused (BIC of 1 point)
        return [value + 1, value - 1, value * 2 or 1, value + 1000]
    if isinstance(value, float):
        return [value * 0.5, value * 1.5, value + 0.01, value - 0.01]
    if value == "auto" and bool in typing.get_args(annotation):  # auto or an explicit bool
        return [False, True]
    if isinstance(value, str):
        choices = [a for a in typing.get_args(annotation) if isinstance(a, str)]
        return [c for c in choices if c != value]
    if isinstance(value, list):
        if not value:
            return [[5]]
        out = [value[:-1]] if len(value) > 1 else []
        if isinstance(value[-1], int) and not isinstance(value[-1], bool):
            out.append([*value[:-1], value[-1] + 1])
        args = typing.get_args(annotation)
        inner = typing.get_args(args[0]) if args else ()
        extra = [a for a in inner if a not in value] if inner else (
            [max(value) + 1] if value and isinstance(value[0], int) else
            [round(max(value) * 0.5, 6)] if value else [])
        return out + [value + extra[:1]] if extra else out
    if isinstance(value, dict):  # model_params and deep.models (merged into the defaults)
        return [{"logistic": {"C": 0.5}}, {"cnn-fast": {"epochs": 2}}]
    raise AssertionError(f"no perturbation for {value!r}")


def _changed_field_cases():
    base = build_config("full")
    for section in SECTIONS:
        params = getattr(base, section.NAME)
        for name, info in type(params).model_fields.items():
            yield section.NAME, name, getattr(params, name), info.annotation


def _override(section: str, name: str, value) -> dict:
    return {section: {name: value}}


@pytest.mark.parametrize("section, name, value, annotation", list(_changed_field_cases()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_changing_one_value_rekeys_exactly_its_readers(digits, section, name, value,
                                                       annotation):
    base_config = build_config("full")
    base = _keys(digits, base_config)
    plans = {f"{p.section}.{p.step.name}": p for p in plan_study(digits, base_config)}
    for candidate in _candidates(value, annotation):
        try:
            changed_config = build_config("full", _override(section, name, candidate))
            after = _keys(digits, changed_config)
        except ConfigError:
            continue
        break
    else:
        pytest.skip(f"{section}.{name}: no other valid value to try")
    new_plans = {f"{p.section}.{p.step.name}": p for p in plan_study(digits, changed_config)}
    changed = {s for s in base.keys() & after.keys() if base[s] != after[s]}
    appeared = after.keys() ^ base.keys()
    assert changed or appeared, f"{section}.{name}: no step reads it"
    for step in changed:
        old, new = plans[step], new_plans[step]
        direct = old.step.arguments != new.step.arguments
        upstream = old.needed_keys != new.needed_keys
        assert direct or upstream, f"{step} was rekeyed but receives nothing that changed"
    # Nothing outside the section reads a section's parameters: outside it, only the steps
    # that score its models (the robustness section) follow their keys.
    directly = {s for s in changed if plans[s].step.arguments != new_plans[s].step.arguments}
    outside = {s for s in changed | appeared if s.split(".")[0] != section}
    assert {s.split(".")[0] for s in (changed | appeared) - outside} == {section}
    assert all(s.startswith("robustness.score:") for s in outside) and not outside & directly


def _points(sweep: str, values) -> set[str]:
    """A sweep's step and the steps of its points."""
    return {sweep, *(f"{sweep}:{v}" for v in values)}


FULL_CLASSIC = build_config("full").classic
FULL_UNSUPERVISED = build_config("full").unsupervised


@pytest.mark.parametrize("override, expected", [
    ({"explore": {"n_samples": 4}}, {"explore.gallery"}),
    ({"classic": {"pca_components": 50}},
     {"classic.representation", "classic.model:svc-rbf", "classic.model:knn",
      "classic.model:hist-gb", "classic.best", "robustness.score:svc-rbf",
      "robustness.score:knn", "robustness.score:hist-gb",
      *_points("classic.svc_pca", FULL_CLASSIC.svc_pca_components),
      *_points("classic.svc_kernels", FULL_CLASSIC.kernels)}),
    ({"classic": {"model_params": {"logistic": {"C": 0.5}}}},
     {"classic.model:logistic", "classic.best", "robustness.score:logistic",
      *_points("classic.learning_curve", FULL_CLASSIC.learning_curve_sizes)}),
    ({"classic": {"tree_depths": [1, 2, 3]}},
     {"classic.tree_depth", *_points("classic.tree_pca", FULL_CLASSIC.tree_pca_components)}),
    ({"unsupervised": {"variance_target": 0.8}},
     {*(f"unsupervised.{s}" for s in ("pca", "kmeans_inits", "kmeans_2d", "gmm", "birch")),
      *_points("unsupervised.kmeans_sweep", FULL_UNSUPERVISED.kmeans_k),
      *_points("unsupervised.bic", FULL_UNSUPERVISED.bic_k)}),
    ({"unsupervised": {"embedding_dim": 5}}, {"unsupervised.embedding"}),
    ({"unsupervised": {"embedding_deskew": True}}, set()),  # auto deskews digits
    ({"unsupervised": {"embedding_deskew": False}}, {"unsupervised.embedding"}),
    ({"deep": {"models": {"cnn-fast": {"epochs": 2}}}},
     {"deep.train:cnn-fast", "robustness.score:cnn-fast"}),
    ({"deep": {"models": {"cnn-fast": {"arch_params": {"channels": [8, 16, 32]}}}}},
     {"deep.train:cnn-fast", "deep.architectures", "robustness.score:cnn-fast"}),
    ({"deep": {"models": {"mlp-1": {"lr": 0.01}}}},
     {"deep.train:mlp-1", "deep.overfit:mlp-1", "robustness.score:mlp-1"}),
])
def test_named_changes_rekey_the_expected_steps(digits, override, expected):
    base = _keys(digits, build_config("full"))
    after = _keys(digits, build_config("full", override))
    # a step that disappears counts (pca_components=50: the RBF kernel's point becomes the
    # SVC sweep's point of 50)
    assert {s for s in base.keys() | after.keys() if base.get(s) != after.get(s)} == expected


@pytest.mark.parametrize("section, field, sweep", [
    ("unsupervised", "kmeans_k", "kmeans_sweep"), ("unsupervised", "bic_k", "bic"),
    ("classic", "svc_pca_components", "svc_pca"), ("classic", "tree_pca_components", "tree_pca"),
])
def test_a_new_point_of_a_sweep_computes_only_itself(digits, section, field, sweep):
    """Cache granularity follows the points: one more value rekeys no other point."""
    values = getattr(getattr(build_config("full"), section), field)
    new = max(values) + 1
    base = _keys(digits, build_config("full"))
    after = _keys(digits, build_config("full", {section: {field: [*values, new]}}))
    assert after.keys() - base.keys() == {f"{section}.{sweep}:{new}"}
    assert {s for s in base if base[s] != after[s]} == {f"{section}.{sweep}"}


def test_the_seed_rekeys_every_seeded_step(digits):
    base = _keys(digits, build_config("full"))
    after = _keys(digits, build_config("full", seed=1))
    unchanged = {s for s in base if base[s] == after[s]}
    assert unchanged == {"explore.summary", "deep.architectures"}


def test_a_changed_value_recomputes_only_its_readers_and_reuses_the_rest(digits, tmp_path):
    out = tmp_path / "run"
    run_study(digits, build_config("quick", FAST), out, profile="quick")
    changed = build_config("quick", {**FAST, "classic": {**FAST["classic"],
                                                         "tree_depths": [1, 3]}})
    expected = {s for s, k in _keys(digits, changed).items()
                if k != _keys(digits, build_config("quick", FAST))[s]}
    outcome = run_study(digits, changed, out, profile="quick")
    assert {f"{r.section}.{r.name}" for r in outcome.computed} == expected == {
        "classic.tree_depth", *_points("classic.tree_pca", FAST["classic"]["tree_pca_components"])}


def test_weights_on_disk_belong_to_the_cached_result_they_came_with(digits, tmp_path):
    """Config A, then B, then A again: A's cached result still points at A's weights."""
    out = tmp_path / "run"

    def config(epochs):
        return build_config("quick", {**FAST, "deep": {**FAST["deep"], "models": {
            **FAST["deep"]["models"], "mlp-1": {"epochs": epochs}}}})

    def trained(epochs):
        run_study(digits, config(epochs), out, profile="quick")
        key = next(p.key for p in plan_study(digits, config(epochs))
                   if p.step.name == "train:mlp-1")
        store = RunStore(out, create=False)
        try:
            return store.load_result(key)
        finally:
            store.close()

    a = trained(1)
    b = trained(3)
    a_again = trained(1)
    assert a.weights_file != b.weights_file
    assert a_again.weights_file == a.weights_file
    for result in (a_again, b):
        model = TorchClassifier.load(out / result.weights_file)
        accuracy = float(np.mean(model.predict(digits.x_test) == digits.y_test))
        assert accuracy == pytest.approx(result.test_acc)


def test_auto_deskew_straightens_digits_only(digits):
    import dataclasses

    def deskew(data, value="auto"):
        config = build_config("full", {"unsupervised": {"embedding_deskew": value}})
        (step,) = [p.step for p in plan_study(data, config) if p.step.name == "embedding"]
        return step.arguments["embedding_deskew"]

    clothes = dataclasses.replace(digits, digits=False)
    assert deskew(digits) is True and deskew(clothes) is False
    assert deskew(clothes, True) is True and deskew(digits, False) is False


def _seeded_point(data, *, k: int, seed: int):
    from mnistlab.engine.step import SweepPoint

    return SweepPoint({"k": k, "seed": seed, "data": data})


def _gathered(data, points):
    from mnistlab.engine.step import gathered_rows

    return gathered_rows(points)


def test_a_sweep_called_uncached_gets_the_study_seed_or_the_default_zero():
    from mnistlab.engine.step import call_sweep

    rows = call_sweep(_seeded_point, _gathered, "data", None, 5, over="k", values=[2, 1])
    assert rows == [{"k": 2, "seed": 5, "data": "data"}, {"k": 1, "seed": 5, "data": "data"}]
    assert [r["seed"] for r in call_sweep(_seeded_point, _gathered, "data", None, over="k",
                                          values=[3])] == [0]


class _Scaled(pydantic.BaseModel):
    scale: float = 2.5


def _labelled_point(data, *, k: int, seed: int, scale: float, label: str, shift: int):
    from mnistlab.engine.step import SweepPoint

    return SweepPoint({"k": k + shift, "label": label})


def _gathered_with(data, points, *, seed: int, scale: float, label: str):
    from mnistlab.engine.step import gathered_rows

    return {"data": data, "seed": seed, "scale": scale, "label": label,
            "rows": gathered_rows(points)}


def test_a_sweeps_gathering_gets_the_data_params_seed_and_the_arguments_it_takes():
    from mnistlab.engine.step import call_sweep

    out = call_sweep(_labelled_point, _gathered_with, "data", _Scaled(), 7, over="k",
                     values=[1, 2], label="a", shift=10)  # shift: the points' only
    assert out == {"data": "data", "seed": 7, "scale": 2.5, "label": "a",
                   "rows": [{"k": 11, "label": "a"}, {"k": 12, "label": "a"}]}


class _SweepParams(pydantic.BaseModel):
    alpha: float = 0.5


def _point(data, k: int, alpha: float, seed: int):
    return k * alpha + seed


def _gather(data, points: dict, alpha: float, seed: int):
    return points


def test_a_sweep_binds_each_point_and_its_gathering_with_the_params_and_seed():
    from mnistlab.engine.step import sweep

    steps = sweep("s", _point, _gather, _SweepParams(alpha=0.25), 7, over="k", values=[3, 10],
                  one_core=True)
    *points, gather = steps
    assert [p.name for p in points] == ["s:3", "s:10"] and gather.name == "s"
    assert [p.arguments for p in points] == [{"k": 3, "alpha": 0.25, "seed": 7},
                                             {"k": 10, "alpha": 0.25, "seed": 7}]
    assert [p.one_core for p in points] == [True, True] and gather.one_core is False
    assert gather.arguments == {"alpha": 0.25, "seed": 7}
    assert gather.needs == {"points": {"3": "s:3", "10": "s:10"}}
    assert all(not p.one_core for p in sweep("s", _point, _gather, _SweepParams(), 0, over="k",
                                             values=[1]))


def test_the_key_of_a_step_is_stable_across_versions():
    """The key names the stored result: a change to how it is derived makes every run folder
    recompute everything, so it is pinned here (change it only with CODE_VERSION, on purpose)."""
    from mnistlab.engine.step import Step
    from mnistlab.sections.explore import summarize

    step = Step("summary", summarize, {"a": 1, "b": [2.5, "x"]})
    assert step.key("fingerprint", {"points": "abc"}) == "b4dc0f83b215997faeedd07a"


def _takes_options(data, alpha: float, **options):
    return alpha, options


def _takes_rest(data, *rest, seed: int):
    return seed


def test_bind_passes_extras_only_to_a_function_that_takes_them():
    from mnistlab.engine.step import bind

    step = bind("s", _takes_options, _SweepParams(), 0, colour="red")
    assert step.arguments == {"alpha": 0.5, "colour": "red"}
    with pytest.raises(TypeError, match=r"takes no argument\(s\) \['colour'\]"):
        bind("s", _point, _SweepParams(), 0, k=1, colour="red")
    # parameters after *rest are bound too
    assert bind("s", _takes_rest, None, 4).arguments == {"seed": 4}
