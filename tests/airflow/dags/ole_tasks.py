"""Four PythonOperators of ~0.2 s; ``broken`` fails. The tests run it with ``airflow dags test``.

With ``OLE_TEST_PROBE`` set, every task appends one JSON line to that file: its process
and that process's defunct (zombie) children, so a test can see that no fork-strategy
child of an earlier hook was left unreaped.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def _zombie_children() -> list[int]:
    me, zombies = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state == "Z":
            zombies.append(int(entry))
    return zombies


def _probe(name: str) -> None:
    path = os.environ.get("OLE_TEST_PROBE")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"task": name, "pid": os.getpid(), "zombies": _zombie_children()}) + "\n")


def work(name: str) -> None:
    _probe(name)
    time.sleep(0.2)


def fail(name: str) -> None:
    _probe(name)
    time.sleep(0.2)
    raise RuntimeError("this task fails on purpose")


with DAG("ole_tasks", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    extract = PythonOperator(task_id="extract", python_callable=work, op_args=["extract"])
    transform = PythonOperator(task_id="transform", python_callable=work, op_args=["transform"])
    load = PythonOperator(task_id="load", python_callable=work, op_args=["load"])
    broken = PythonOperator(task_id="broken", python_callable=fail, op_args=["broken"])
    extract >> transform >> load
    extract >> broken
