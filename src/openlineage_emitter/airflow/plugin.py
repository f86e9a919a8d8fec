"""The Airflow plugin (entry point group ``airflow.plugins``): decide whether to attach, then attach.

It attaches in ``on_load``, which Airflow calls while loading plugins — before it
registers any plugin's listeners — in every process that loads plugins (scheduler, API
server, task runner, ``airflow dags test``). It stays off, leaving the provider exactly
as upstream, when:

- ``[openlineage] emitter_plugin_enabled = False`` (the documented off switch);
- OpenLineage is disabled (``[openlineage] disabled``, or no transport configured: the
  provider's own ``is_disabled()``) — then there is nothing to route;
- the provider is not installed, or lacks what the plugin patches (one warning, naming
  the provider's version);
- the airflow.cfg cannot be read (one error).

A bad ``[openlineage]`` value does *not* keep it off: forking again is exactly what an
operator installed this to stop. The key falls back to its default, with one WARNING per
bad value naming key, value, source and what is allowed; an unknown ``emitter_*`` key gets
a WARNING naming the nearest known key. The safe readings of the switches follow from
that: a bad ``execute_in_thread`` means the thread strategy, a bad
``emitter_plugin_enabled`` means attached, a bad ``disabled`` means not disabled (the
provider then decides with its own reading).

It logs ``attached ...`` at INFO once per process, and ``airflow plugins`` shows what it
decided (attached or why not, and the config warnings) in its ``source`` column.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.config import load_config_with_sources
from openlineage_emitter.errors import ConfigError

log = masked_logger(__name__)

PROVIDER = "apache-airflow-providers-openlineage"

#: Whether this process already decided (core and task SDK may both load plugins).
_decided: bool | None = None
#: What it decided, in words (``airflow plugins`` shows it), and the config warnings.
_state = "not decided yet"
_warnings: list[str] = []


class OpenLineageEmitterPlugin(AirflowPlugin):  # type: ignore[misc]  # Any without Airflow's types
    """Routes the OpenLineage provider's emission through openlineage-emitter."""

    name = "openlineage_emitter"

    @classmethod
    def on_load(cls, *args: Any, **kwargs: Any) -> None:
        try:
            activate()
        except Exception:
            _decide("not attached (unexpected error)")
            log.warning("openlineage-emitter: not attached (unexpected error)", exc_info=True)

    # Airflow sets each plugin instance's ``source`` and ``airflow plugins`` prints it: the
    # plugin's one place to show what it decided in this process.
    @property
    def source(self) -> Any:
        return self.__dict__.get("_source")

    @source.setter
    def source(self, value: Any) -> None:
        self.__dict__["_source"] = value if isinstance(value, _Described) else _Described(value)


class _Described:
    """The plugin's source as Airflow set it, followed by what the plugin decided."""

    def __init__(self, source: object) -> None:
        self._source = source

    def __getattr__(self, name: str) -> Any:
        if name == "_source":  # not set yet (copy, pickle): never recurse
            raise AttributeError(name)
        return getattr(self._source, name)

    def __str__(self) -> str:
        return f"{self._source or ''} => {_plain(state())}".lstrip()

    def __html__(self) -> str:
        from html import escape

        inner = getattr(self._source, "__html__", None)
        shown = inner() if callable(inner) else escape(str(self._source or ""))
        return f"{shown} => {escape(_plain(state()))}"


def _plain(text: str) -> str:
    """Without ``[openlineage]``: ``airflow plugins`` renders cells as rich markup, which eats it."""
    return text.replace("[openlineage] ", "openlineage.")


def state() -> str:
    """What this process decided (attached or why not) and its config warnings, in one line."""
    if not _warnings:
        return _state
    return f"{_state}; {len(_warnings)} config warning(s): " + " | ".join(_warnings)


def _decide(what: str) -> None:
    global _state  # noqa: PLW0603 - one decision per process
    _state = what


def activate() -> bool:
    """Attach to the provider if everything allows it; True if attached. Decides once."""
    global _decided  # noqa: PLW0603 - one decision per process
    if _decided is None:
        _decided = _attach()
    return _decided


def _attach() -> bool:
    try:
        loaded = load_config_with_sources(lenient=True)
    except ConfigError as err:  # only an unreadable config file gets here
        _decide(f"not attached: {err}")
        log.error("openlineage-emitter: not attached, the provider behaves as upstream: %s", err)
        return False
    for problem in [*map(str, loaded.invalid), *loaded.unknown]:
        _warnings.append(problem)
        log.warning("openlineage-emitter: %s", problem)
    config = loaded.config
    if not config.plugin_enabled:
        _decide("switched off (emitter_plugin_enabled = False)")
        log.info("openlineage-emitter: switched off ([openlineage] emitter_plugin_enabled = False)")
        return False
    if config.disabled:
        _decide("not attached: OpenLineage is disabled ([openlineage] disabled)")
        return False
    try:
        from airflow.providers.openlineage import __version__ as version
        from airflow.providers.openlineage import conf as provider_conf
    except ImportError:
        _decide(f"not attached: {PROVIDER} is not installed")
        log.warning("openlineage-emitter: %s is not installed; the plugin has nothing to attach to", PROVIDER)
        return False
    try:
        disabled = provider_conf.is_disabled()
    except Exception as exc:  # noqa: BLE001 - e.g. its own reading of a bad `disabled` value
        _decide(f"not attached: the provider cannot read its config ({exc})")
        log.warning("openlineage-emitter: not attached: the provider cannot read its config (%s)", exc)
        return False
    if disabled:
        _decide("not attached: OpenLineage is disabled (no transport configured, or disabled)")
        return False

    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener

    from openlineage_emitter.airflow import patch, process

    lacks = patch.missing(OpenLineageListener, OpenLineageAdapter)
    if lacks:
        _decide(f"not attached: {PROVIDER} {version} lacks {', '.join(lacks)}")
        log.warning(
            "openlineage-emitter: %s %s lacks %s; the plugin is not attached and the provider "
            "behaves as upstream (supported: %s >=2.14,<3)",
            PROVIDER,
            version,
            ", ".join(lacks),
            PROVIDER,
        )
        return False
    process.configure(config)
    process.use_airflow_default_spool()
    patch.patch(OpenLineageListener, OpenLineageAdapter)
    strategy = "thread" if config.execute_in_thread else "fork"
    _decide(f"attached to {PROVIDER} {version} (strategy: {strategy})")
    # INFO, once per process: Airflow's default level shows it, so an operator can see
    # in any process's log (a task's included) that the plugin is in charge.
    log.info("openlineage-emitter: attached to %s %s (strategy: %s)", PROVIDER, version, strategy)
    return True
