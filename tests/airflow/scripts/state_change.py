"""Fire the listener hook the API server fires when a task instance's state is set by hand.

Run with an Airflow venv's python: ``state_change.py DAG_ID TASK_ID``. The API server's
PATCH task-instance handler calls ``on_task_instance_success(previous_state=None,
task_instance=<DB TaskInstance>)`` (3.1: ``_patch_task_instance_state``; 3.3:
``_emit_state_listener_hooks``); so does this, with ``os.fork`` made to raise, on the
latest run's task instance. Prints one JSON line: whether the plugin attached.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

from airflow.listeners.listener import get_listener_manager
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session


def no_fork() -> NoReturn:
    raise OSError("os.fork() is forbidden on the API-server path")


def main(dag_id: str, task_id: str) -> None:
    manager = get_listener_manager()  # loads the plugins, as the API server does at start
    listener_module = sys.modules.get("airflow.providers.openlineage.plugins.listener")
    listener_cls = getattr(listener_module, "OpenLineageListener", None)
    patched = bool(getattr(listener_cls, "__openlineage_emitter_patched__", False))
    os.fork = no_fork
    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .join(DagRun, (TaskInstance.dag_id == DagRun.dag_id) & (TaskInstance.run_id == DagRun.run_id))
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
            .order_by(DagRun.id.desc())
            .first()
        )
        if ti is None:
            raise SystemExit(f"no task instance {dag_id}.{task_id} in the database")
        try:
            manager.hook.on_task_instance_success(previous_state=None, task_instance=ti)
            error = None
        except Exception as exc:  # noqa: BLE001 - the API server's handler logs "error calling listener"
            error = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"patched": patched, "hook_error": error}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
