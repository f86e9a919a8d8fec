"""The plugin against an incomplete provider: one clear warning, upstream left untouched."""

from __future__ import annotations

import sys

import pytest

from openlineage_emitter.collector import Collector
from tests.airflow.conftest import SCRIPTS, AirflowHome
from tests.airflow.test_servers import last_json_line

pytestmark = pytest.mark.airflow


def test_a_provider_lacking_a_hook_gets_one_warning_naming_its_version(
    airflow_home: AirflowHome, collector: Collector
) -> None:
    finished = airflow_home.run(
        [sys.executable, SCRIPTS / "incomplete_provider.py"],
        airflow_home.env(collector.url),
        name="incomplete",
    )

    assert finished.returncode == 0, finished.tail()
    result = last_json_line(finished)
    assert result["attached"] is False
    assert result["patched"] is False
    [warning] = result["warnings"]
    assert f"apache-airflow-providers-openlineage {result['provider_version']}" in warning
    assert "OpenLineageListener._on_task_instance_manual_state_change" in warning
    assert "behaves as upstream" in warning
