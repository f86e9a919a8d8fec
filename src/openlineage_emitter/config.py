"""The ``[openlineage]`` config section: one frozen class and the loaders that fill it.

Precedence is Airflow's: env ``AIRFLOW__OPENLINEAGE__<KEY>`` > the airflow.cfg-style file
(``AIRFLOW_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``, else ``~/airflow/airflow.cfg``) >
default. Inside a running Airflow process (``airflow.configuration`` already imported),
Airflow's own ``conf`` replaces the file, so runtime overrides are seen too.

Strict loading (the default) raises the first bad value. Lenient loading (the Airflow
plugin's) replaces each bad value with its key's default and reports every one, so that a
typo never brings back the forking the plugin is installed to stop. Unknown ``emitter_*``
keys are reported either way, with the nearest known key.
"""

from __future__ import annotations

import configparser
import difflib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from openlineage_emitter import _validators as v
from openlineage_emitter._keys import SECTION, Key, keys_of, setting
from openlineage_emitter._secrets import masked_repr
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.retry import RetryPolicy
from openlineage_emitter.settings import EmitterSettings


@attrs.frozen
class OpenLineageConfig:
    """The ``[openlineage]`` keys this package reads; durations in seconds."""

    execute_in_thread: bool = setting("execute_in_thread", True, v.is_bool)
    execution_timeout_s: float = setting("execution_timeout", 10.0, v.seconds())
    disabled: bool = setting("disabled", False, v.is_bool)
    force_fork: bool = setting("emitter_force_fork", False, v.is_bool)
    plugin_enabled: bool = setting("emitter_plugin_enabled", True, v.is_bool)
    transport: Mapping[str, Any] | None = setting("transport", None, secret=True, show=masked_repr)
    emitter: EmitterSettings = attrs.field(factory=EmitterSettings)


#: Every key, derived from the fields of OpenLineageConfig (see ``_keys``): declared once.
KEYS: tuple[Key, ...] = tuple(keys_of(OpenLineageConfig))
KEYS_BY_NAME = {k.name: k for k in KEYS}


@attrs.frozen
class Invalid:
    """A bad value (lenient loading) and the keys that fell back to their defaults because of it."""

    error: ConfigError
    #: Key name -> the default used in its place.
    defaults: Mapping[str, Any]

    def __str__(self) -> str:
        used = ", ".join(f"{name} = {value}" for name, value in self.defaults.items())
        return f"{self.error}; using the default instead ({used})"


@attrs.frozen
class LoadedConfig:
    """A config and, per key, where its value came from (``env ...``, ``file ...``, ``default``)."""

    config: OpenLineageConfig
    sources: Mapping[str, str]
    #: Lenient loading only: every bad value, in key order, each replaced by its key's default.
    invalid: tuple[Invalid, ...] = ()
    #: Unknown ``emitter_*`` keys, one sentence each (with the nearest known key).
    unknown: tuple[str, ...] = ()


def default_of(key: str) -> Any:
    """The default value of ``[openlineage] key`` as the config class holds it."""
    return value_at(OpenLineageConfig(), KEYS_BY_NAME[key].path)


def value_at(config: OpenLineageConfig, path: tuple[str, ...]) -> Any:
    """The value at ``path`` (a :attr:`Key.path`); enums as their config spelling."""
    value: Any = config
    for part in path:
        value = getattr(value, part)
    return getattr(value, "value", value)


def config_file_path(environ: Mapping[str, str]) -> Path:
    """The airflow.cfg Airflow itself would read."""
    if environ.get("AIRFLOW_CONFIG"):
        return Path(environ["AIRFLOW_CONFIG"]).expanduser()
    home = environ.get("AIRFLOW_HOME") or "~/airflow"
    return Path(home).expanduser() / "airflow.cfg"


def _read_file(path: Path) -> dict[str, str]:
    parser = configparser.RawConfigParser(strict=False)
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        return {}
    except (OSError, configparser.Error) as exc:
        raise ConfigError("(file)", str(path), f"a readable airflow.cfg-style file ({exc})") from exc
    return dict(parser.items(SECTION)) if parser.has_section(SECTION) else {}


def _airflow_values() -> dict[str, tuple[str, str]] | None:
    """Explicitly set ``[openlineage]`` values from a live Airflow ``conf``, with their source.

    Only used when Airflow is already imported: importing it just for this costs seconds.
    Provider defaults are skipped on purpose: the provider's ``execute_in_thread``
    default (False) must not override this package's (True). Airflow names their source
    ``default``, ``default-<provider>`` (3.1) or ``provider-metadata-fallback-defaults``
    (3.3): every default source has "default" in its name.

    Airflow also writes every default, the provider's included, into the airflow.cfg it
    generates, so ``execute_in_thread = False`` there is indistinguishable from Airflow's
    own line: it counts as unset (choose the fork strategy with the env variable).
    """
    if "airflow.configuration" not in sys.modules:
        return None
    try:
        from airflow.configuration import conf

        section = conf.as_dict(display_source=True, display_sensitive=True).get(SECTION, {})
    except Exception:  # noqa: BLE001 - a broken Airflow config must not break emission
        return None
    out: dict[str, tuple[str, str]] = {}
    for name, item in section.items():
        if not (isinstance(item, tuple) and len(item) == 2) or "default" in str(item[1]):
            continue
        if item[1] == "airflow.cfg" and _is_generated_default(name, item[0]):
            continue
        out[name] = (str(item[0]), f"airflow conf ({item[1]})")
    return out


#: Provider defaults that differ from this package's, as Airflow writes them into a
#: generated airflow.cfg (lower-cased).
_GENERATED_DEFAULTS = {"execute_in_thread": "false"}

#: The source of a key whose airflow.cfg value is the one Airflow generates (see above).
GENERATED_SOURCE = "default (airflow.cfg has the value Airflow generates: treated as unset)"


def _is_generated_default(name: str, raw: object) -> bool:
    return _GENERATED_DEFAULTS.get(name) == str(raw).strip().lower()


def load_config_with_sources(
    environ: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
    *,
    lenient: bool = False,
) -> LoadedConfig:
    """Load ``[openlineage]``; strict: the first bad value raises one :class:`ConfigError`.

    ``lenient``: every bad value is replaced by its key's default and listed in
    :attr:`LoadedConfig.invalid` (its source then reads ``default (invalid value from ...)``).
    An unreadable config file raises either way.
    """
    env = os.environ if environ is None else environ
    path = Path(config_file) if config_file is not None else config_file_path(env)
    airflow = _airflow_values() if environ is None and config_file is None else None
    file_values = {} if airflow is not None else _read_file(path)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    invalid: list[Invalid] = []
    for key in KEYS:
        raw: object
        if key.env_var in env:
            raw, source = env[key.env_var], f"env {key.env_var}"
        elif airflow is not None and key.name in airflow:
            raw, source = airflow[key.name]
        elif key.name in file_values:
            if _is_generated_default(key.name, file_values[key.name]):
                # Read the file as the plugin reads it through Airflow's conf, so that
                # `check` reports what the plugin will do.
                sources[key.name] = GENERATED_SOURCE
                continue
            raw, source = file_values[key.name], f"file {path}"
        else:
            sources[key.name] = "default"
            continue
        sources[key.name] = source
        try:
            values[key.name] = key.parse(key.name, raw)
        except ConfigError as err:
            if not lenient:
                raise err.with_source(source) from None
            invalid.append(Invalid(err.with_source(source), {key.name: default_of(key.name)}))
            sources[key.name] = f"default (invalid value from {source})"

    config = _build(values, sources, invalid if lenient else None)
    unknown = _unknown_keys(env, airflow, file_values, path)
    order = {key.name: i for i, key in enumerate(KEYS)}
    invalid.sort(key=lambda bad: order.get(bad.error.key, len(order)))
    return LoadedConfig(config, sources, tuple(invalid), tuple(unknown))


def _build(
    values: dict[str, Any], sources: dict[str, str], invalid: list[Invalid] | None
) -> OpenLineageConfig:
    """Build the config; with ``invalid`` (lenient), keys that fail validation fall back to defaults.

    A cross-key check (``emitter_retry_max_backoff`` >= ``..._initial_backoff``) can fail
    on a key left at its default: then the keys set next to it (same group) fall back too.
    """
    while True:
        try:
            return build_config(values)
        except ConfigError as err:
            if invalid is None:
                raise err.with_source(sources.get(err.key, "")) from None
            group = KEYS_BY_NAME[err.key].path[:-1] if err.key in KEYS_BY_NAME else ()
            dropped = (
                [err.key]
                if err.key in values
                else [name for name in values if KEYS_BY_NAME[name].path[:-1] == group]
            )
            error = err.with_source(sources.get(err.key, "default"))
            invalid.append(Invalid(error, {name: default_of(name) for name in dropped}))
            if not dropped:  # the defaults alone failed: cannot happen, but never loop
                return OpenLineageConfig()
            for name in dropped:
                del values[name]
                if not sources[name].startswith("default"):
                    sources[name] = f"default (invalid value from {sources[name]})"


#: Suffixes Airflow accepts on a key (``<key>_cmd``, ``<key>_secret``): not unknown keys.
_VARIANTS = ("_cmd", "_secret")
_PREFIX = "emitter_"


def _unknown_keys(
    env: Mapping[str, str],
    airflow: Mapping[str, tuple[str, str]] | None,
    file_values: Mapping[str, str],
    path: Path,
) -> list[str]:
    """One sentence per ``emitter_*`` key that no :data:`KEYS` entry knows, nearest key named."""
    env_prefix = f"AIRFLOW__{SECTION.upper()}__"
    found: dict[str, str] = {}
    for name in env:
        if name.startswith(env_prefix + _PREFIX.upper()):
            found.setdefault(name[len(env_prefix) :].lower(), f"env {name}")
    for name, (_value, source) in (airflow or {}).items():
        found.setdefault(name.lower(), source)
    for name in file_values:
        found.setdefault(name.lower(), f"file {path}")
    out = []
    for name, source in sorted(found.items()):
        base = next((name[: -len(s)] for s in _VARIANTS if name.endswith(s)), name)
        if not name.startswith(_PREFIX) or base in KEYS_BY_NAME:
            continue
        nearest = difflib.get_close_matches(name, [k.name for k in KEYS], n=1)
        hint = f"did you mean {nearest[0]}?" if nearest else "see docs/configuration.md for the known keys"
        out.append(f"unknown [{SECTION}] key {name} (from {source}) is ignored; {hint}")
    return out


def load_config(
    environ: Mapping[str, str] | None = None, config_file: Path | str | None = None
) -> OpenLineageConfig:
    """Load ``[openlineage]`` the way Airflow does (see the module docstring)."""
    return load_config_with_sources(environ, config_file).config


def build_config(values: Mapping[str, Any]) -> OpenLineageConfig:
    """An :class:`OpenLineageConfig` from parsed values keyed by ``[openlineage]`` key name."""
    nested: dict[str, Any] = {"emitter": {"retry": {}}}
    for name, value in values.items():
        *parents, leaf = KEYS_BY_NAME[name].path
        node = nested
        for part in parents:
            node = node[part]
        node[leaf] = value
    emitter = nested.pop("emitter")
    emitter["retry"] = RetryPolicy(**emitter["retry"])
    return OpenLineageConfig(**nested, emitter=EmitterSettings(**emitter))
