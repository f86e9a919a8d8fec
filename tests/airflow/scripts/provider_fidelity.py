"""Run the provider's own code that depends on the client's transport; print what it did (JSON).

Run with an Airflow venv's python: ``provider_fidelity.py SCENARIO [URL]``. Airflow loads
its plugins first (``get_listener_manager()``, as every Airflow process does), so the
plugin attaches unless the environment switches it off. Scenarios:

- ``inspect``: what the provider derives from the listener's client's transport: the
  transport information it injects into Spark properties, Glue arguments and EMR
  Serverless configuration (``[openlineage] spark_inject_transport_info``), and the
  ``transport_type`` tag of its ``ol.emit.attempts`` metric.
- ``before-stopping-timeout``: queue an event for a hung backend, then call the listener's
  ``before_stopping`` inside Airflow's own SIGALRM ``timeout(1)``: whether the
  ``AirflowTaskTimeout`` it raises mid-flush escapes the hook.
- ``explicit-client URL``: an adapter given a client of its own, sending to ``URL``, next
  to the listener's adapter (built from ``[openlineage] transport``); each emits once, the
  explicit one first and last.
- ``sigterm-in-dag-run-hook``: the listener's ``on_dag_run_success`` while SIGTERM arrives,
  the handler exiting as the scheduler's does: whether its ``SystemExit`` escapes the hook.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from airflow.listeners.listener import get_listener_manager
from airflow.providers.common.compat.sdk import timeout
from airflow.providers.openlineage.plugins import adapter as adapter_module
from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
from airflow.providers.openlineage.plugins.listener import OpenLineageListener, get_openlineage_listener
from airflow.providers.openlineage.utils import spark
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.transport.http import HttpConfig, HttpTransport

from openlineage_emitter.airflow import patch


def event(job: str) -> RunEvent:
    return RunEvent(
        eventType=RunState.START,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="ole-airflow-tests", name=job),
        producer="https://github.com/openlineage-emitter/tests",
    )


class RecordingStats:
    """Stands in for the adapter module's ``Stats``: records the tags the provider computed."""

    def __init__(self) -> None:
        self.timer_tags: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def timer(self, name: str, tags: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[None]:
        self.timer_tags.append({"name": name, **(tags or {})})
        yield

    def incr(self, *args: Any, **kwargs: Any) -> None:
        pass


def inspect() -> dict[str, Any]:
    listener = get_openlineage_listener()
    stats = RecordingStats()
    adapter_module.Stats = stats
    listener.adapter.emit(event("inspect"))
    return {
        "spark": spark.inject_transport_information_into_spark_properties({}, {}),
        "glue": spark.inject_transport_information_into_glue_arguments({}, {}),
        "emr": spark.inject_transport_information_into_emr_serverless_properties(None, {}),
        "metric_tags": stats.timer_tags,
    }


def before_stopping_timeout() -> dict[str, Any]:
    listener = get_openlineage_listener()
    listener.adapter.emit(event("before-stopping"))
    escaped = None
    started = time.monotonic()
    try:
        with timeout(1):
            listener.before_stopping(object())
    except BaseException as exc:  # noqa: BLE001 - what escaped is the result
        escaped = type(exc).__name__
    return {"escaped": escaped, "elapsed_s": time.monotonic() - started}


def explicit_client(url: str) -> dict[str, Any]:
    listener = get_openlineage_listener()
    explicit = OpenLineageAdapter(client=OpenLineageClient(transport=HttpTransport(HttpConfig(url=url))))
    explicit.emit(event("explicit-1"))
    listener.adapter.emit(event("configured"))
    explicit.emit(event("explicit-2"))
    return {"explicit_kind": explicit.get_or_create_openlineage_client().transport.kind}


class SignalledDagRun:
    """A DAG run whose first attribute read is where SIGTERM lands (then it has no attributes)."""

    def __init__(self) -> None:
        self.signalled = False

    def __getattr__(self, name: str) -> Any:
        if not self.signalled:
            self.signalled = True
            signal.raise_signal(signal.SIGTERM)  # the handler runs before this returns
        raise AttributeError(name)


def sigterm_in_dag_run_hook() -> dict[str, Any]:
    def exit_gracefully(signum: int, frame: object) -> None:  # as SchedulerJobRunner's
        sys.exit(os.EX_OK)

    signal.signal(signal.SIGTERM, exit_gracefully)
    listener = get_openlineage_listener()
    dag_run = SignalledDagRun()
    escaped = None
    try:
        listener.on_dag_run_success(dag_run=dag_run, msg="success")
    except BaseException as exc:  # noqa: BLE001 - what escaped is the result
        escaped = type(exc).__name__
    return {
        "signalled": dag_run.signalled,
        "escaped": escaped,
        "handler_restored": signal.getsignal(signal.SIGTERM) is exit_gracefully,
    }


def main(scenario: str, *args: str) -> None:
    get_listener_manager()  # loads the plugins, as every Airflow process does at start
    patched = bool(getattr(OpenLineageListener, patch.MARK, False))
    run: dict[str, Callable[..., dict[str, Any]]] = {
        "inspect": inspect,
        "before-stopping-timeout": before_stopping_timeout,
        "explicit-client": explicit_client,
        "sigterm-in-dag-run-hook": sigterm_in_dag_run_hook,
    }
    result = run[scenario](*args)
    print(json.dumps({"patched": patched, **result}, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *sys.argv[2:])
