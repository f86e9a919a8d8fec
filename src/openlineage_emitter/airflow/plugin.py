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
- the ``[openlineage]`` config is invalid (one error naming the key).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.config import load_config
from openlineage_emitter.errors import ConfigError

log = masked_logger(__name__)

PROVIDER = "apache-airflow-providers-openlineage"

#: Whether this process already decided (core and task SDK may both load plugins).
_decided: bool | None = None


class OpenLineageEmitterPlugin(AirflowPlugin):  # type: ignore[misc]  # Any without Airflow's types
    """Routes the OpenLineage provider's emission through openlineage-emitter."""

    name = "openlineage_emitter"

    @classmethod
    def on_load(cls, *args: Any, **kwargs: Any) -> None:
        try:
            activate()
        except Exception:
            log.warning("openlineage-emitter: not attached (unexpected error)", exc_info=True)


def activate() -> bool:
    """Attach to the provider if everything allows it; True if attached. Decides once."""
    global _decided  # noqa: PLW0603 - one decision per process
    if _decided is None:
        _decided = _attach()
    return _decided


def _attach() -> bool:
    try:
        config = load_config()
    except ConfigError as err:
        log.error("openlineage-emitter: not attached, the provider behaves as upstream: %s", err)
        return False
    if not config.plugin_enabled:
        log.info("openlineage-emitter: switched off ([openlineage] emitter_plugin_enabled = False)")
        return False
    if config.disabled:
        return False
    try:
        from airflow.providers.openlineage import __version__ as version
        from airflow.providers.openlineage import conf as provider_conf
    except ImportError:
        log.warning("openlineage-emitter: %s is not installed; the plugin has nothing to attach to", PROVIDER)
        return False
    if provider_conf.is_disabled():
        return False

    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener

    from openlineage_emitter.airflow import patch, process

    lacks = patch.missing(OpenLineageListener, OpenLineageAdapter)
    if lacks:
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
    patch.patch(OpenLineageListener, OpenLineageAdapter)
    log.debug(
        "openlineage-emitter: attached to %s %s (strategy: %s)",
        PROVIDER,
        version,
        "thread" if config.execute_in_thread else "fork",
    )
    return True
