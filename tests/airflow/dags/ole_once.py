"""A DAG without tasks, scheduled once: a scheduler starts its run and finishes it at once.

So the scheduler emits DAG-run events (START, COMPLETE) without running any task (which
would need an execution API server).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

with DAG("ole_once", start_date=datetime(2024, 1, 1), schedule="@once", catchup=False) as dag:
    pass
