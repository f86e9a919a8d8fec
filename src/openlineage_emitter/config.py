"""The ``[openlineage]`` config section: one frozen class and the loaders that fill it.

Precedence is Airflow's: env ``AIRFLOW__OPENLINEAGE__<KEY>`` > the airflow.cfg-style file
(``AIRFLOW_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``, else ``~/airflow/airflow.cfg``) >
default. Inside a running Airflow process (``airflow.configuration`` already imported),
Airflow's own ``conf`` replaces the file, so runtime overrides are seen too.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from openlineage_emitter import _validators as v
from openlineage_emitter._keys import SECTION, Key, keys_of
from openlineage_emitter._secrets import masked_repr
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.retry import RetryPolicy
from openlineage_emitter.settings import EmitterSettings


@attrs.frozen
class OpenLineageConfig:
    """The ``[openlineage]`` keys this package reads; durations in seconds."""

    execute_in_thread: bool = attrs.field(
        default=True, validator=v.is_bool, metadata={"key": "execute_in_thread"}
    )
    execution_timeout_s: float = attrs.field(
        default=10.0, validator=v.seconds(), metadata={"key": "execution_timeout"}
    )
    disabled: bool = attrs.field(default=False, validator=v.is_bool, metadata={"key": "disabled"})
    force_fork: bool = attrs.field(default=False, validator=v.is_bool, metadata={"key": "emitter_force_fork"})
    plugin_enabled: bool = attrs.field(
        default=True, validator=v.is_bool, metadata={"key": "emitter_plugin_enabled"}
    )
    transport: Mapping[str, Any] | None = attrs.field(
        default=None, repr=masked_repr, metadata={"key": "transport", "secret": True}
    )
    emitter: EmitterSettings = attrs.field(factory=EmitterSettings)


#: Every key, derived from the fields of OpenLineageConfig (see ``_keys``): declared once.
KEYS: tuple[Key, ...] = tuple(keys_of(OpenLineageConfig))
KEYS_BY_NAME = {k.name: k for k in KEYS}


@attrs.frozen
class LoadedConfig:
    """A config and, per key, where its value came from (``env ...``, ``file ...``, ``default``)."""

    config: OpenLineageConfig
    sources: Mapping[str, str]


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
    environ: Mapping[str, str] | None = None, config_file: Path | str | None = None
) -> LoadedConfig:
    """Load ``[openlineage]``; every bad value raises one :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    path = Path(config_file) if config_file is not None else config_file_path(env)
    airflow = _airflow_values() if environ is None and config_file is None else None
    file_values = {} if airflow is not None else _read_file(path)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
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
        try:
            values[key.name] = key.parse(key.name, raw)
        except ConfigError as err:
            raise err.with_source(source) from None
        sources[key.name] = source

    try:
        config = build_config(values)
    except ConfigError as err:
        raise err.with_source(sources.get(err.key, "")) from None
    return LoadedConfig(config, sources)


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
