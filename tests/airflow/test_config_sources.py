"""Which of Airflow's ``conf`` values count as set, with the sources Airflow 3.1 and 3.3 report.

No Airflow needed (core suite): a stand-in ``airflow.configuration`` returns what
``conf.as_dict(display_source=True)`` returned in real 3.1.8 / 3.3.2 processes
(``test_servers.py`` checks the same against real Airflow).
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from openlineage_emitter.config import load_config_with_sources


class FakeConf:
    def __init__(self, section: Mapping[str, tuple[str, str]]) -> None:
        self._section = dict(section)

    def as_dict(self, *, display_source: bool, display_sensitive: bool) -> dict[str, Any]:
        return {"openlineage": dict(self._section)}


@pytest.fixture
def airflow_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    for name in list(os.environ):
        if name.startswith("AIRFLOW__OPENLINEAGE__"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))

    def install(section: Mapping[str, tuple[str, str]]) -> None:
        module = types.ModuleType("airflow.configuration")
        module.conf = FakeConf(section)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "airflow", types.ModuleType("airflow"))
        monkeypatch.setitem(sys.modules, "airflow.configuration", module)

    return install


@pytest.mark.parametrize(
    "source",
    ["default", "default-apache-airflow-providers-openlineage", "provider-metadata-fallback-defaults"],
)
def test_every_kind_of_airflow_default_is_skipped(airflow_conf: Any, source: str) -> None:
    airflow_conf({"execute_in_thread": ("False", source), "execution_timeout": ("10", source)})

    loaded = load_config_with_sources()

    assert loaded.config.execute_in_thread is True
    assert loaded.sources["execute_in_thread"] == "default"
    assert loaded.sources["execution_timeout"] == "default"


def test_the_generated_execute_in_thread_false_counts_as_unset_but_other_values_are_read(
    airflow_conf: Any,
) -> None:
    airflow_conf(
        {
            "execute_in_thread": ("False", "airflow.cfg"),  # what `airflow db migrate` writes
            "execution_timeout": ("4", "airflow.cfg"),
            "emitter_call_timeout": ("2", "env var"),
        }
    )

    loaded = load_config_with_sources()

    assert (loaded.config.execute_in_thread, loaded.sources["execute_in_thread"]) == (True, "default")
    assert loaded.config.execution_timeout_s == 4.0
    assert loaded.sources["execution_timeout"] == "airflow conf (airflow.cfg)"
    assert loaded.config.emitter.call_timeout_s == 2.0


@pytest.mark.parametrize("source", ["cmd", "secret", "env var"])
def test_execute_in_thread_false_from_an_explicit_source_selects_fork(airflow_conf: Any, source: str) -> None:
    airflow_conf({"execute_in_thread": ("False", source)})

    assert load_config_with_sources().config.execute_in_thread is False
