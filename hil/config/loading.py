"""Reading run configs: YAML files by path or shipped configs by name, errors per field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hil.config.run import RunConfig
from hil.errors import ConfigError


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``field.path: reason``."""
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        loc = list(item["loc"])
        if loc[:1] == ["bench"] and loc[1:2] in (["simulated"], ["lab"]):
            del loc[1]  # the union's tag: bench.engine, not bench.simulated.engine
        where = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


#: A config is a page of YAML; anything larger is not one.
MAX_CONFIG_BYTES = 1024 * 1024
#: Aliases a config may use (``*anchor``): a few are handy, thousands are a YAML bomb.
MAX_ALIASES = 64
#: Deepest nesting of mappings and lists (a config has 5 levels).
MAX_DEPTH = 32


def _check_yaml_budget(text: str, source: str) -> None:
    """ConfigError for a YAML bomb (too many aliases) or absurd nesting, before building it.

    Scans the parser's events, which is iterative: deep nesting cannot exhaust the stack
    here, and nothing is expanded.
    """
    aliases = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(f"config {source} uses more than {MAX_ALIASES} YAML aliases")
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"config {source} nests deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def shipped_configs() -> list[str]:
    """Names of the configs that ship with the package (``bench_configs/*.yaml``)."""
    folder = resources.files("bench_configs")
    return sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml"))


def find_config(name_or_path: str | Path) -> Path:
    """The config file a user means: an existing path, or a shipped config by name.

    ``sim-digits`` and ``sim-digits.yaml`` both name ``bench_configs/sim-digits.yaml`` of
    the installed package; an existing file of that name in the working directory wins.

    Raises
    ------
    ConfigError
        Neither a file nor a shipped config; the message lists the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and stem in shipped_configs():
        shipped = resources.files("bench_configs") / f"{stem}.yaml"
        return Path(str(shipped))
    raise ConfigError(
        f"config file {name_or_path} does not exist, and no shipped config has that name "
        f"(shipped: {', '.join(shipped_configs())})"
    )


def load_config(path: str | Path, **overrides: object) -> RunConfig:
    """Read and validate a YAML run config (a path or a shipped name, see :func:`find_config`);
    ``overrides`` set ``training`` fields (None leaves a field as the file has it)."""
    path = find_config(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a config"
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    if "\x00" in text:
        raise ConfigError(f"config file {path} is binary, not YAML text")
    try:
        _check_yaml_budget(text, str(path))
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return validate_config(raw, str(path), **overrides)


def validate_config(raw: dict[str, Any], source: str, **overrides: object) -> RunConfig:
    """Validate a config mapping (from a file, or inline in an API request).

    ``overrides`` set ``training`` fields (None leaves a field as given); ``source`` names
    the config in error messages.

    Raises
    ------
    ConfigError
        One line per problem, ``field.path: reason``.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        training = raw.get("training") or {}
        if not isinstance(training, dict):
            raise ConfigError(f"invalid config {source}:\n  training: must be a mapping")
        raw = {**raw, "training": {**training, **given}}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every leaf field that differs between two config mappings: ``{"a.b": (old, new)}``."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    return {
        key: (flat_old.get(key), flat_new.get(key))
        for key in sorted(flat_old.keys() | flat_new.keys())
        if flat_old.get(key) != flat_new.get(key)
    }


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
