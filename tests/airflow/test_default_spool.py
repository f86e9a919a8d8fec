"""Zero loss by default: with ``emitter_spool_dir`` unset, an Airflow process spools what a
dead backend does not take into ``$AIRFLOW_HOME/openlineage-spool``, and a later
``openlineage-emitter replay`` on the host delivers every one of those events, once.
"""

from __future__ import annotations

import json
import stat
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from openlineage_emitter._records import parse_records
from openlineage_emitter.collector import Collector, refusing_url
from openlineage_emitter.spool import usage
from tests.airflow.conftest import AIRFLOW, TASK_STATES, TASKS_DAG, AirflowHome, task_events

pytestmark = pytest.mark.airflow

SPOOL_KEY = "AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR"
#: START then COMPLETE (FAIL for the failing task), exactly once each.
EXPECTED_EVENTS = {
    task: ["START", "COMPLETE" if state == "success" else "FAIL"] for task, state in TASK_STATES.items()
}


def unset_spool_env(home: AirflowHome, url: str) -> dict[str, str]:
    """The home's environment with ``emitter_spool_dir`` truly unset (the conftest sets off)."""
    env = home.env(url)
    del env[SPOOL_KEY]
    return env


def spooled(directory: Path) -> list[Any]:
    """Every event waiting in a spool directory (claimed batches included)."""
    events = []
    for path in sorted(directory.iterdir()):
        if ".jsonl" in path.name and path.is_file() and not path.name.endswith(".progress"):
            events += [json.loads(r) for r in parse_records(path.read_bytes()).records]
    return events


def by_run_and_type(events: Iterable[Any]) -> Counter[tuple[str, str]]:
    return Counter((e["run"]["runId"], e["eventType"]) for e in events)


def test_a_dead_backend_leaves_every_event_in_the_default_spool_and_replay_delivers_them_all(
    airflow_home: AirflowHome,
) -> None:
    spool = airflow_home.path / "openlineage-spool"
    assert usage(spool).batches == 0, "the default spool of the shared home is not empty"

    before = airflow_home.last_run(TASKS_DAG)
    run = airflow_home.run(
        [AIRFLOW, "dags", "test", TASKS_DAG], unset_spool_env(airflow_home, refusing_url()), name="dags-test"
    )

    assert airflow_home.task_states(TASKS_DAG, before) == TASK_STATES, run.tail()
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    kept = by_run_and_type(spooled(spool))
    assert sorted(map(sorted, task_events(spooled(spool)).values())) == sorted(
        map(sorted, EXPECTED_EVENTS.values())
    ), run.tail()
    assert set(kept.values()) == {1}

    with Collector() as collector:
        replay = airflow_home.run(
            [sys.executable, "-m", "openlineage_emitter", "replay"],
            unset_spool_env(airflow_home, collector.url),
            name="replay",
        )
        delivered = by_run_and_type(collector.events)

    assert replay.returncode == 0, replay.tail()
    assert f"delivered {sum(kept.values())}, failed 0 (quarantined), left 0" in replay.output
    assert delivered == kept  # every spooled event, each exactly once
    assert usage(spool).batches == 0
