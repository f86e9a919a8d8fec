"""The scheduler and API-server paths, and how the config is read inside Airflow."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openlineage_emitter.collector import Collector
from tests.airflow.conftest import AIRFLOW, SCRIPTS, TASKS_DAG, AirflowHome, DagsTest, Finished

pytestmark = pytest.mark.airflow

#: ``[openlineage] emitter_shutdown_timeout`` for the scheduler: its exit budget.
SHUTDOWN_TIMEOUT_S = 2.0
#: Airflow's own share of a scheduler's SIGTERM exit (executor end, DB writes, interpreter
#: exit): measured here at 0.8 s with OpenLineage disabled on an idle machine, and up to
#: 2.7 s on a 2-core machine at load 8, so not this package's. Bounded generously: the
#: failures this test guards against cost far more (see HUNG_CALL_TIMEOUT_S).
AIRFLOW_OWN_EXIT_S = 6.0
#: The emitter's per-call timeout for the scheduler: far above the exit bound, so an exit
#: that waited for the hung in-flight call (instead of abandoning it) fails clearly; the
#: provider's own path never exits at all (its process pool deadlocks on shutdown).
HUNG_CALL_TIMEOUT_S = 30.0


def last_json_line(finished: Finished) -> dict[str, Any]:
    lines = [line for line in finished.output.splitlines() if line.startswith("{")]
    assert lines, finished.tail()
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- API server: a task instance's state set by hand ----------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ({}, True),
        ({"AIRFLOW__OPENLINEAGE__EMITTER_PLUGIN_ENABLED": "False"}, False),
        ({"AIRFLOW__OPENLINEAGE__DISABLED": "True"}, False),
    ],
    ids=["plugin", "plugin-switched-off", "openlineage-disabled"],
)
def test_api_server_state_change_is_emitted_in_process_without_fork(
    case: tuple[dict[str, str], bool],
    airflow_home: AirflowHome,
    healthy_run: DagsTest,  # leaves the task instances this changes
    collector: Collector,
    validate_event: Callable[[Any], None],
) -> None:
    env, attached = case
    finished = airflow_home.run(
        [sys.executable, SCRIPTS / "state_change.py", TASKS_DAG, "load"],
        airflow_home.env(collector.url, **env),
        name="state-change",
    )

    assert finished.returncode == 0, finished.tail()
    result = last_json_line(finished)
    assert result["patched"] is attached
    if attached:
        assert result["hook_error"] is None
        assert collector.wait_for(1, timeout_s=2.0)  # delivered at the latest by the exit flush
        [event] = collector.events
        assert (event["eventType"], event["job"]["name"]) == ("COMPLETE", f"{TASKS_DAG}.load")
        validate_event(event)
    else:
        # Upstream would fork for it (os.fork raises here) or there is no listener at all.
        assert collector.received == []
    assert finished.leftovers == []


# --- scheduler: DAG-run events, then SIGTERM with a hung backend --------------------------


def test_scheduler_with_a_hung_backend_stops_on_sigterm_within_its_budget(
    airflow_home: AirflowHome, hung_collector: Collector, validate_event: Callable[[Any], None]
) -> None:
    env = airflow_home.env(
        hung_collector.url,
        AIRFLOW__OPENLINEAGE__EMITTER_SHUTDOWN_TIMEOUT=f"{SHUTDOWN_TIMEOUT_S:g}",
        AIRFLOW__OPENLINEAGE__EMITTER_CALL_TIMEOUT=f"{HUNG_CALL_TIMEOUT_S:g}",
    )
    scheduler = airflow_home.start([AIRFLOW, "scheduler", "--skip-serve-logs"], env, name="scheduler")
    try:
        # ole_once's run starts: its DAG START reaches the backend, which never answers.
        assert hung_collector.wait_for(1, timeout_s=120, delivered=False), scheduler.output()[-5000:]
        first = hung_collector.received[0].body
        assert (first["eventType"], first["job"]["name"]) == ("START", "ole_once")
        validate_event(first)
        time.sleep(0.5)  # let the run finish too: its COMPLETE waits in the queue
        signalled = time.monotonic()
        scheduler.proc.send_signal(signal.SIGTERM)
        finished = scheduler.wait(timeout_s=60)
    except BaseException:
        scheduler.kill()
        raise

    exit_s = finished.ended_at - signalled
    assert finished.returncode == 0, finished.tail()
    assert exit_s <= SHUTDOWN_TIMEOUT_S + AIRFLOW_OWN_EXIT_S, f"exited {exit_s:.1f}s after SIGTERM"
    assert finished.leftovers == []
    assert "ProcessPoolExecutor" not in finished.output


# --- config: Airflow's conf, env and airflow.cfg, provider defaults skipped -----------------


def probe_config(home: AirflowHome, **env: str) -> dict[str, Any]:
    finished = home.run([sys.executable, SCRIPTS / "config_probe.py"], {**home.env(), **env}, name="config")
    assert finished.returncode == 0, finished.tail()
    return last_json_line(finished)


def with_option(cfg: str, line: str) -> str:
    """``cfg`` with ``line`` added to its [openlineage] section (created if missing)."""
    if "\n[openlineage]\n" in cfg:
        return cfg.replace("\n[openlineage]\n", f"\n[openlineage]\n{line}\n", 1)
    return f"{cfg}\n[openlineage]\n{line}\n"


def test_config_reads_airflow_cfg_and_env_and_ignores_generated_provider_defaults(
    airflow_home: AirflowHome, tmp_path: Path
) -> None:
    # The airflow.cfg `airflow db migrate` generated: it carries every default Airflow
    # knows, the provider's `execute_in_thread = False` included (on 3.3 / provider 2.20).
    cfg = tmp_path / "airflow.cfg"
    cfg.write_text(with_option((airflow_home.path / "airflow.cfg").read_text(), "emitter_call_timeout = 2"))

    got = probe_config(airflow_home, AIRFLOW_CONFIG=str(cfg), AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE="7")

    sources = got["sources"]
    assert (got["call_timeout_s"], sources["emitter_call_timeout"]) == (2.0, "airflow conf (airflow.cfg)")
    assert (got["queue_size"], sources["emitter_queue_size"]) == (
        7,
        "env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE",
    )
    assert (got["execution_timeout_s"], sources["execution_timeout"]) == (
        3.0,
        "env AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT",
    )
    assert (got["execute_in_thread"], sources["execute_in_thread"]) == (True, "default")


def test_config_skips_provider_metadata_defaults_and_env_selects_the_fork_strategy(
    airflow_home: AirflowHome, tmp_path: Path
) -> None:
    cfg = tmp_path / "airflow.cfg"  # no [openlineage] section: only the providers' defaults
    cfg.write_text("[core]\nload_examples = False\n")
    env = airflow_home.env(AIRFLOW_CONFIG=str(cfg), AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="False")
    del env["AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT"]

    finished = airflow_home.run([sys.executable, SCRIPTS / "config_probe.py"], env, name="config")

    assert finished.returncode == 0, finished.tail()
    got = last_json_line(finished)
    sources = got["sources"]
    assert (got["execute_in_thread"], sources["execute_in_thread"]) == (
        False,
        "env AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD",
    )
    # The provider's defaults (10, False) are not "set": this package's defaults apply.
    assert (got["execution_timeout_s"], sources["execution_timeout"]) == (10.0, "default")
    assert sources["disabled"] == "default"
