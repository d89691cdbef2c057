"""Study configuration: one pydantic model per section, loaded from TOML, printed as TOML.

Precedence, lowest first: the defaults (the ``full`` profile: everything the seed does, on all
the data), the ``quick`` profile's overrides, the user's TOML file, the command line.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..core.errors import ConfigError
from ..models.fitting import ACCELERATED, EngineSetting
from ..sections import SECTIONS

Profile = Literal["quick", "full"]
PROFILES = ("quick", "full")


class _Study(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # numpy and scikit-learn take seeds below 2**32
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of every random choice in the "
                      "study")
    engine: EngineSetting = Field(
        "auto", description=f"library fitting {ACCELERATED}: sklearnex "
                            "(scikit-learn-intelex), sklearn, or auto "
                            "(sklearnex where installed)")


# Everything a study computes is decided here; the run folder stores it with the results. One
# part per section of the registry, named and ordered as the sections are.
StudyConfig = create_model(
    "StudyConfig", __base__=_Study, __module__=__name__,
    __doc__="Everything a study computes: the seed and each section's parameters.",
    **{section.NAME: (section.Params, Field(default_factory=section.Params))
       for section in SECTIONS})


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


AUTO_BRANCH = "literal['auto']"  # how pydantic names the "auto" choice of a union in a location


def _describe_all(errors: list[dict]) -> str:
    """One phrase per wrong setting: a setting that takes a value or "auto" fails once per
    choice, and reads "epochs: Input should be greater than or equal to 1, or 'auto'" (an item
    of a list that could have been "auto" reads as that item's error alone)."""
    with_auto = {e["loc"][:-1] for e in errors if e["loc"] and e["loc"][-1] == AUTO_BRANCH}
    phrases = []
    for error in errors:
        loc = error["loc"]
        setting = next((p for p in with_auto if loc[:len(p)] == p and len(loc) > len(p)), None)
        if setting is None:
            phrases.append(_describe(error))
        elif loc[len(setting)] != AUTO_BRANCH:  # the other choice: drop the union's tag
            inner = loc[len(setting) + 1:]
            phrases.append(_describe({**error, "loc": setting + inner,
                                      "msg": error["msg"] + ("" if inner else ", or 'auto'")}))
    return "; ".join(phrases)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where}"
    value = error.get("input")
    if isinstance(value, (dict, list)):  # a whole section: the message already says what
        return f"{where}: {error['msg']}"
    return f"{where}: {error['msg']} (got {value!r})"


def build_config(profile: str = "full", overrides: dict | None = None,
                 seed: int | None = None, origin: str = "config",
                 engine: str | None = None) -> StudyConfig:
    """Defaults, then the profile, then ``overrides`` (a parsed TOML file), then ``seed`` and
    ``engine``."""
    if profile not in PROFILES:
        raise ConfigError(f"--profile {profile}: must be one of {', '.join(PROFILES)}")
    values = StudyConfig().model_dump()
    if profile == "quick":
        values = _deep_merge(values, {s.NAME: s.QUICK for s in SECTIONS})
    values = _deep_merge(values, overrides or {})
    if seed is not None:
        values["seed"] = seed
    if engine is not None:
        values["engine"] = engine
    try:
        return StudyConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: " + _describe_all(exc.errors())) from None


def load_config(path: str | Path | None, profile: str = "full",
                seed: int | None = None, engine: str | None = None) -> StudyConfig:
    """Read a TOML file (optional) and build the study configuration."""
    overrides = {}
    if path is not None:
        path = Path(path)
        try:
            overrides = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"--config {path}: is a folder, not a TOML file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"--config {path}: cannot be read ({exc.strerror})") from None
    return build_config(profile, overrides, seed, origin=str(path) if path else "config",
                        engine=engine)


def _toml_value(value) -> str:
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _toml_assignment(name: str, value) -> str:
    if isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value):
        return f"{name} = [{', '.join(_toml_value(v) for v in value)}]"  # one line, not one per item
    return tomli_w.dumps({name: value}).rstrip()


def _toml_lines(model: BaseModel, section: str | None = None) -> list[str]:
    """Commented ``key = value`` lines, then the dict-valued fields as sub-tables."""
    lines, tables = [], {}
    values = model.model_dump(mode="json")
    for name, info in type(model).model_fields.items():
        value = values[name]
        if isinstance(getattr(model, name), BaseModel):
            continue
        if isinstance(value, dict):
            tables[name] = value
            continue
        if info.description:
            lines.append(f"# {info.description}")
        lines.append(_toml_assignment(name, value))
    for name, value in tables.items():
        description = type(model).model_fields[name].description
        lines += ["", f"# {description}"] if description else [""]
        lines.append(tomli_w.dumps({section: {name: value}} if section else {name: value})
                     .rstrip())
    return lines


def config_toml(config: StudyConfig) -> str:
    """The configuration as commented TOML (what ``--print-config`` prints)."""
    lines = _toml_lines(config)
    for section in SECTIONS:
        params = getattr(config, section.NAME)
        lines += ["", f"[{section.NAME}]  # {section.TITLE}",
                  *_toml_lines(params, section.NAME)]
    return "\n".join(lines) + "\n"
