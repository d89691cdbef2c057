import tomllib

import pytest

from conftest import run_cli
from mnistlab.core.errors import ConfigError
from mnistlab.study.config import build_config, config_toml, load_config


def test_printed_config_is_valid_toml_that_rebuilds_the_same_config(tmp_path):
    result = run_cli("study", "--print-config", "--profile", "quick", "--seed", "7")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "c.toml"
    path.write_text(result.stdout)
    assert tomllib.loads(result.stdout)["seed"] == 7
    assert load_config(path) == build_config("quick", seed=7)


def test_quick_profile_overrides_and_toml_wins_over_the_profile(tmp_path):
    full, quick = build_config("full"), build_config("quick")
    assert quick.explore.holdout_train < full.explore.holdout_train
    path = tmp_path / "c.toml"
    path.write_text("[explore]\nholdout_train = 321\n")
    assert load_config(path, profile="quick").explore.holdout_train == 321
    assert "holdout_train = 321" in config_toml(load_config(path))


@pytest.mark.parametrize("text, message", [
    ("[explore]\nholdout_trian = 5\n", "unknown key explore.holdout_trian"),
    ("[explore]\nn_samples = 0\n", "explore.n_samples: Input should be greater than or equal to 1"),
    ("[explore]\nn_samples = 'ten'\n", "explore.n_samples: Input should be a valid integer"),
    ("[nonsense]\n", "unknown key nonsense"),
    ("seed = -1\n", "seed: Input should be greater than or equal to 0"),
    ("[explore\n", "invalid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_config(path)
    assert message in str(info.value) and str(path) in str(info.value)
    result = run_cli("study", "--dataset", "digits", "--config", str(path),
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_bad_options_fail_with_exit_2(tmp_path):
    result = run_cli("study", "--profile", "medium", "--dataset", "digits")
    assert result.returncode == 2 and "--profile medium: must be one of quick, full" in result.stderr
    result = run_cli("study", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "missing.toml: file not found" in result.stderr
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 2 and "not a mnistlab run folder" in result.stderr
