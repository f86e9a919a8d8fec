"""Airflow's own ``Stats`` as the emitter's metrics client.

**Which ``Stats``.** The metrics go wherever the operator pointed Airflow's ``[metrics]``
(StatsD, Datadog, OpenTelemetry), through the ``Stats`` Airflow itself uses in the process:

- Airflow 3.1: ``airflow.stats.Stats``, one per process, configured from ``[metrics]`` on
  first use.
- Airflow 3.3 (and, untested, 3.2): two singletons, each a no-op (``NoStatsLogger``)
  until its side calls ``initialize``: the task SDK's (``airflow.sdk.observability.stats``;
  the task runner and ``airflow.sdk.serde`` initialize it, so it is live in task runners
  and ``airflow dags test``) and core's (``airflow.observability.stats``; the scheduler,
  API server, DAG processor, triggerer and executors initialize it). Each call goes to the
  one this process initialized — core's first in a server component, the SDK's first
  otherwise — and to the preferred one (a no-op) if neither is: then Airflow sends no
  metrics from this process either.

The choice is made per call, not once: a component may initialize its ``Stats`` after the
emitter was built (the scheduler does so after loading plugins).

The component (``role.Role``) is evaluated per call: a forked child reports as what it is,
not as the parent that built the transport.

Publishing never raises into the emitter or a hook (``Publisher`` guards every call); with
StatsD or Datadog a metric is one UDP datagram, with OpenTelemetry an in-memory update.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.airflow.role import API_SERVER, DAG_PROCESSOR, SCHEDULER, TRIGGERER

log = masked_logger(__name__)

#: Components whose ``Stats`` is core's (Airflow 3.2+); the others prefer the task SDK's.
SERVER_COMPONENTS = frozenset({SCHEDULER, API_SERVER, DAG_PROCESSOR, TRIGGERER})


class _Backend:
    """One Airflow ``Stats`` and how to tell whether this process initialized it."""

    def __init__(self, path: str, module: ModuleType) -> None:
        self.path = path
        self.stats: Any = module.Stats
        # 3.2+: module-level functions re-exported from the module that holds the state.
        incr = getattr(module, "incr", None)
        self._home = sys.modules.get(getattr(incr, "__module__", "") or "")

    def initialized(self) -> bool:
        # No such state (Airflow 3.1's Stats configures itself on first use): usable.
        return getattr(self._home, "_factory", True) is not None


def _load(path: str) -> _Backend | None:
    try:
        return _Backend(path, importlib.import_module(path))
    except Exception:  # noqa: BLE001 - an Airflow without it: try the next
        return None


class AirflowStats:
    """The :class:`~openlineage_emitter.metrics.Metrics` the emitter and strategies publish to.

    Each call goes to the ``Stats`` this process initialized, tagged with the component
    this process is now (``component`` is evaluated per call and overrides the tag).
    """

    def __init__(
        self, task_side: Sequence[_Backend], server_side: Sequence[_Backend], component: Callable[[], str]
    ) -> None:
        self._task_side = tuple(task_side)
        self._server_side = tuple(server_side)
        self._component = component

    @property
    def backends(self) -> tuple[str, ...]:
        """Where the ``Stats`` candidates come from, in task-side order (for logs and tests)."""
        return tuple(b.path for b in self._task_side)

    def target(self) -> tuple[str, Any]:
        """The module path and the ``Stats`` a call now goes to."""
        order = self._server_side if self._component() in SERVER_COMPONENTS else self._task_side
        chosen = next((b for b in order if b.initialized()), order[0])
        return chosen.path, chosen.stats

    def _tags(self, tags: Mapping[str, str] | None) -> dict[str, str]:
        return {**(tags or {}), "component": self._component()}

    def incr(self, stat: str, count: int = 1, *, tags: dict[str, str] | None = None) -> None:
        self.target()[1].incr(stat, count, tags=self._tags(tags))

    def gauge(self, stat: str, value: float, *, tags: dict[str, str] | None = None) -> None:
        self.target()[1].gauge(stat, value, tags=self._tags(tags))

    def timing(self, stat: str, dt: float, *, tags: dict[str, str] | None = None) -> None:
        self.target()[1].timing(stat, dt, tags=self._tags(tags))


_lock = threading.Lock()
_backends: tuple[list[_Backend], list[_Backend]] | None = None


def _discover() -> tuple[list[_Backend], list[_Backend]]:
    """(task-side order, server-side order) of the ``Stats`` this Airflow has; cached."""
    global _backends  # noqa: PLW0603 - the installed Airflow does not change in a process
    with _lock:
        if _backends is None:
            sdk = _load("airflow.sdk.observability.stats")  # 3.2+
            core = _load("airflow.observability.stats")  # 3.2+
            found = [b for b in (sdk, core) if b is not None]
            if found:
                _backends = (found, found[::-1])
            else:
                # 3.1 (and where airflow.stats is the only one). Imported last: on 3.2+
                # it is a deprecated shim that warns.
                legacy = _load("airflow.stats")
                _backends = ([legacy], [legacy]) if legacy is not None else ([], [])
        return _backends


def airflow_stats(component: Callable[[], str]) -> AirflowStats | None:
    """Airflow's ``Stats`` as a metrics client for this process; None without Airflow."""
    task_side, server_side = _discover()
    if not task_side:
        log.debug("openlineage-emitter: no Airflow Stats found; not publishing metrics")
        return None
    return AirflowStats(task_side, server_side, component)
