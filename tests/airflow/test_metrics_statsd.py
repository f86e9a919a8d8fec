"""``ol.emitter.*`` through Airflow's own ``Stats`` to a real StatsD listener on 127.0.0.1.

Airflow is configured with ``[metrics] statsd_on`` (plain StatsD: tags are dropped, which
is why drops are also published as ``dropped.<reason>``), or with
``statsd_influxdb_enabled`` (tags appended to the name: ``name,component=...,transport=...``)
to see the component tag on the wire. The metric names checked are the ones
docs/metrics.md documents.

Also here, without a StatsD listener: how a process finds out which component it is
(``openlineage_emitter.airflow.role.Role``) and which of Airflow's ``Stats`` it
publishes to.
"""

from __future__ import annotations

import json
import shutil
import socketserver
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from openlineage_emitter.airflow import metrics as af_metrics
from openlineage_emitter.airflow import role as af_role
from openlineage_emitter.collector import Collector
from tests.airflow.conftest import AIRFLOW, TASK_STATES, AirflowHome, dags_test
from tests.conftest import wait_until

pytestmark = pytest.mark.airflow

PREFIX = "airflow"
OURS = f"{PREFIX}.ol.emitter."
#: Any one metric of Airflow's own that a ``dags test`` run sends (the same client as ours).
AIRFLOW_OWN = f"{PREFIX}.ti.start"


# --- a StatsD listener ------------------------------------------------------------------------


@attrs.frozen
class Line:
    """One StatsD line: ``name[,k=v...]:value|type[|@rate]``."""

    name: str
    tags: dict[str, str]
    value: float
    kind: str

    @classmethod
    def parse(cls, text: str) -> Line:
        head, _, rest = text.partition(":")
        value, kind = rest.split("|")[:2]
        name, *pairs = head.split(",")
        return cls(name, dict(pair.split("=", 1) for pair in pairs), float(value), kind)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, _socket = self.request
        server: StatsdListener = self.server  # type: ignore[assignment]
        with server.lock:
            server.datagrams.append(data.decode(errors="replace"))


class StatsdListener(socketserver.UDPServer):
    """A StatsD server on 127.0.0.1 (ephemeral port) that keeps every datagram."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.datagrams: list[str] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="statsd-listener", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def env(self, **extra: str) -> dict[str, str]:
        """Airflow's ``[metrics]`` pointed at this listener."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": PREFIX,
            **extra,
        }

    def lines(self) -> list[Line]:
        with self.lock:
            texts = [t for d in self.datagrams for t in d.splitlines() if t]
        return [Line.parse(t) for t in texts]

    def ours(self) -> list[Line]:
        return [line for line in self.lines() if line.name.startswith(OURS)]

    def settle(self) -> None:
        """Take in everything the (exited) senders sent, then stop listening.

        Loopback UDP puts a datagram into this socket's buffer at ``sendto``: once the
        senders have exited, all they sent was either read already or is waiting there. So
        stop serving and read the rest, rather than wait for a quiet spell, which a listener
        thread starved of CPU on a loaded machine fakes (and then some lines are missing).
        """
        self._stop_serving()
        self.socket.setblocking(False)
        while True:
            try:
                data = self.socket.recv(65536)
            except BlockingIOError:
                return
            with self.lock:
                self.datagrams.append(data.decode(errors="replace"))

    def _stop_serving(self) -> None:
        # Safe to repeat: a second shutdown() returns at once after serve_forever ended.
        self.shutdown()
        self._thread.join(5)

    def stop(self) -> None:
        self._stop_serving()
        self.server_close()


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    try:
        yield listener
    finally:
        listener.stop()


def total(lines: list[Line], name: str, **tags: str) -> float:
    """Sum of the counter ``ol.emitter.<name>`` (all deltas one process sent)."""
    return sum(
        line.value
        for line in lines
        if line.name == OURS + name
        and line.kind == "c"
        and all(line.tags.get(k) == v for k, v in tags.items())
    )


def kinds(lines: list[Line]) -> dict[str, str]:
    """``{short name: statsd type}`` of what was received."""
    return {line.name.removeprefix(OURS): line.kind for line in lines}


def no_rejected_names(output: str) -> None:
    """Airflow's name validation logs these when it refuses a metric name."""
    for refusal in ("Invalid stat name", "contains invalid characters for stats", "Dropping invalid tag"):
        assert refusal not in output


# --- airflow dags test: healthy, hung -------------------------------------------------------


def test_healthy_dags_test_sends_the_documented_metrics_to_statsd(
    airflow_home: AirflowHome, collector: Collector, statsd: StatsdListener
) -> None:
    run = dags_test(airflow_home, collector, **statsd.env())
    statsd.settle()

    assert run.states == TASK_STATES, run.finished.tail()
    no_rejected_names(run.finished.output)
    lines = statsd.ours()
    sample = "\n".join(f"{line}" for line in lines[:12])
    assert {
        "submitted": "c",
        "delivered": "c",
        "queue_depth": "g",
        "breaker_state": "g",
        "delivery_latency": "ms",
        "call_latency": "ms",
    }.items() <= kinds(lines).items(), sample
    # Counters are deltas: their sums are the process's totals; everything was delivered.
    assert total(lines, "submitted") == total(lines, "delivered") == len(run.events) > 0
    assert not {"dropped", "failed", "abandoned_calls", "spooled"} & kinds(lines).keys()
    assert [line.value for line in lines if line.name == OURS + "queue_depth"][-1] == 0
    assert all(line.tags == {} for line in lines)  # plain StatsD: no tags on the wire
    # Through the same client as Airflow's own metrics.
    assert any(line.name == AIRFLOW_OWN for line in statsd.lines())


@pytest.mark.parametrize("spool", [False, True], ids=["no-spool", "spool"])
def test_hung_backend_dags_test_sends_abandoned_calls_and_drops_or_spools(
    spool: bool,
    airflow_home: AirflowHome,
    hung_collector: Collector,
    statsd: StatsdListener,
    tmp_path: Path,
) -> None:
    env = statsd.env(
        AIRFLOW__OPENLINEAGE__EMITTER_CALL_TIMEOUT="0.5",
        # Keep every event retrying until the exit deadline, however long the run takes: with
        # the default policy (5 attempts, ~10 s) the first events of a slow run (a loaded
        # machine) are given up as retries_exhausted before exit, a drop that is counted
        # right but is not the one this test is about.
        AIRFLOW__OPENLINEAGE__EMITTER_RETRY_ATTEMPTS="1000",
        AIRFLOW__OPENLINEAGE__EMITTER_RETRY_DEADLINE="3600",
    )
    if spool:
        env["AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR"] = str(tmp_path / "spool")
    run = dags_test(airflow_home, hung_collector, **env)
    statsd.settle()

    assert run.states == TASK_STATES, run.finished.tail()
    no_rejected_names(run.finished.output)
    lines = statsd.ours()
    names = kinds(lines)
    assert total(lines, "abandoned_calls") >= 1, names  # calls abandoned at emitter_call_timeout
    assert names.get("call_latency") == "ms"
    assert total(lines, "delivered") == 0
    submitted = total(lines, "submitted")
    assert submitted > 0
    if spool:
        # Nothing lost: what could not be delivered by the exit deadline is on disk.
        assert total(lines, "spooled") == submitted, names
        assert "dropped" not in names
    else:
        # Lost at the exit deadline, counted by reason: tagged and with the reason in the name.
        assert total(lines, "dropped.shutdown") == total(lines, "dropped") == submitted, names
        assert "spooled" not in names


# --- the scheduler: its component tag, Airflow's allow list ---------------------------------


@pytest.fixture
def scheduler_home(airflow_home: AirflowHome, tmp_path: Path) -> AirflowHome:
    """A copy of the session's home: this test's scheduler run leaves the original's
    ``ole_once`` (scheduled once) for test_servers' scheduler test."""
    home = AirflowHome(tmp_path / "home")
    home.path.mkdir()
    shutil.copytree(airflow_home.path / "dags", home.path / "dags")
    cfg = (airflow_home.path / "airflow.cfg").read_text()
    (home.path / "airflow.cfg").write_text(cfg.replace(str(airflow_home.path), str(home.path)))
    with (
        sqlite3.connect(airflow_home.path / "airflow.db") as source,
        sqlite3.connect(home.path / "airflow.db") as copy,
    ):
        source.backup(copy)
    return home


#: ``airflow scheduler``, as the ``airflow`` script runs it, under a program name that is
#: not ``airflow``: the component must come from the scheduler's Job (``on_starting``), not
#: from ``sys.argv`` (whose rules are checked below without Airflow).
SCHEDULER = (
    "import sys; sys.argv = ['scheduler-under-test', 'scheduler', '--skip-serve-logs']; "
    "from airflow.__main__ import main; sys.exit(main())"
)


def test_scheduler_tags_its_metrics_with_its_component_and_passes_the_allow_list(
    scheduler_home: AirflowHome, collector: Collector, statsd: StatsdListener
) -> None:
    env = scheduler_home.env(
        collector.url,
        **statsd.env(
            AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED="True",
            # Only metrics whose name contains this pass: ours do, Airflow's own do not.
            AIRFLOW__METRICS__METRICS_ALLOW_LIST="ol.emitter",
        ),
    )
    # A new run of ole_once (no tasks: the scheduler starts and completes it by itself),
    # whether or not its one scheduled run already happened in this copy.
    triggered = scheduler_home.run(
        [AIRFLOW, "dags", "trigger", "ole_once"], env, name="trigger", timeout_s=60
    )
    assert triggered.returncode == 0, triggered.tail()

    scheduler = scheduler_home.start([sys.executable, "-c", SCHEDULER], env, name="scheduler")
    try:

        def delivered_by_scheduler() -> bool:
            return total(statsd.ours(), "delivered", component="scheduler", transport="http") >= 2

        assert wait_until(delivered_by_scheduler, timeout_s=60, interval_s=0.2), (
            f"{statsd.lines()[:20]}\n{scheduler.output()[-5000:]}"
        )
        finished = scheduler.stop(timeout_s=60)
    except BaseException:
        scheduler.kill()
        raise
    statsd.settle()

    assert finished.returncode == 0, finished.tail()
    no_rejected_names(finished.output)
    lines = statsd.lines()
    assert lines, "nothing received"
    assert {line.name for line in lines if not line.name.startswith(OURS)} == set()  # allow list applied
    assert {(line.tags.get("component"), line.tags.get("transport")) for line in lines} == {
        ("scheduler", "http")
    }
    assert {"submitted", "delivered", "queue_depth", "delivery_latency", "call_latency"} <= kinds(
        lines
    ).keys()
    assert total(lines, "submitted") == total(lines, "delivered") == len(collector.events)
    assert finished.leftovers == []


# --- which component, which Stats: in a real Airflow process --------------------------------

PROBE = """
import json
try:
    from airflow.sdk.listener import get_listener_manager
except ImportError:
    from airflow.listeners.listener import get_listener_manager
from airflow.sdk.execution_time.task_runner import TaskRunnerMarker
from openlineage_emitter.airflow import process

manager = get_listener_manager()  # loads the plugins: the plugin attaches
state = process.current()
before = state.component()
manager.hook.on_starting(component=TaskRunnerMarker())
stats = state.metrics()
print(json.dumps({
    "before": before,
    "after": state.component(),
    "task_runner": state.task_runner,
    "backends": list(stats.backends),
    "target": stats.target()[0],
}))
"""


def test_the_task_runner_marker_makes_the_process_a_task_runner(
    airflow_home: AirflowHome, collector: Collector
) -> None:
    finished = airflow_home.run([sys.executable, "-c", PROBE], airflow_home.env(collector.url), name="probe")

    assert finished.returncode == 0, finished.tail()
    got = json.loads([line for line in finished.output.splitlines() if line.startswith("{")][-1])
    assert (got["before"], got["after"], got["task_runner"]) == ("unknown", "task_runner", True)
    if got["backends"] == ["airflow.stats"]:  # Airflow 3.1: one Stats
        assert got["target"] == "airflow.stats"
    else:  # 3.2+: the task SDK's first, core's second
        assert got["backends"] == ["airflow.sdk.observability.stats", "airflow.observability.stats"]
        assert got["target"] in got["backends"]


# --- the same rules, without Airflow ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "component"),
    [
        (["/venv/bin/airflow", "scheduler", "--skip-serve-logs"], "scheduler"),
        (["/venv/bin/airflow", "api-server", "-p", "8080"], "api_server"),
        (["/venv/bin/airflow", "dag-processor"], "dag_processor"),
        (["/venv/bin/airflow", "triggerer"], "triggerer"),
        (["/venv/bin/airflow", "dags", "test", "ole_tasks"], "dags_test"),
        (["/venv/bin/airflow", "tasks", "test", "d", "t"], "task_runner"),
        (["/venv/lib/python3.11/site-packages/airflow/__main__.py", "scheduler"], "scheduler"),
        (["/venv/bin/airflow", "celery", "worker"], None),
        (["/venv/bin/airflow", "dags", "list"], None),
        (["-c"], None),
        ([], None),
    ],
)
def test_component_from_the_airflow_command_line(argv: list[str], component: str | None) -> None:
    assert af_role.component_from_argv(argv) == component


class TaskRunnerMarker:
    """Named like the task runner's marker: that name is what is checked."""


class FakeJob:
    def __init__(self) -> None:
        self.job_type: str | None = None


def test_role_order_dags_test_then_task_runner_then_job_then_argv_then_hints() -> None:
    # A task runner forked from a scheduler's executor inherits the scheduler's argv.
    role = af_role.Role(["/venv/bin/airflow", "scheduler"])
    assert role.component() == "scheduler"
    role.observe(TaskRunnerMarker())
    assert role.component() == "task_runner"
    # `dags test` runs task-runner hooks but stays dags_test.
    role = af_role.Role(["/venv/bin/airflow", "dags", "test", "d"])
    role.observe(TaskRunnerMarker())
    assert role.component() == "dags_test"
    # A Job announces itself before its runner sets job_type: read when asked.
    role = af_role.Role(["python", "-c"])
    job = FakeJob()
    role.observe(job)
    assert role.component() == "unknown"
    job.job_type = "TriggererJob"
    assert role.component() == "triggerer"
    role = af_role.Role(["python", "-c"])
    role.manual_state_change = True
    assert role.component() == "api_server"


def fake_stats_module(
    name: str, initialized: bool, sent: list[tuple[str, str, dict[str, str]]]
) -> ModuleType:
    """A module shaped like Airflow 3.2+'s stats re-export, over a home module holding ``_factory``."""
    home = ModuleType(f"{name}_home")
    home._factory = object() if initialized else None  # type: ignore[attr-defined]

    def incr(*_args: Any, **_kwargs: Any) -> None: ...

    incr.__module__ = home.__name__

    class Stats:
        @staticmethod
        def incr(stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, str] | None = None) -> None:
            sent.append((name, stat, dict(tags or {})))

    module = ModuleType(name)
    module.incr = incr  # type: ignore[attr-defined]
    module.Stats = Stats  # type: ignore[attr-defined]
    sys.modules[home.__name__] = home
    return module


@pytest.mark.parametrize(
    ("sdk_ready", "core_ready", "component", "expected"),
    [
        (True, True, "task_runner", "sdk"),
        (True, True, "scheduler", "core"),
        (True, False, "scheduler", "sdk"),  # core's never initialized here: the live one
        (False, True, "dags_test", "core"),
        (False, False, "scheduler", "core"),  # neither: the preferred (a no-op, as Airflow's own)
        (False, False, "task_runner", "sdk"),
    ],
)
def test_each_call_goes_to_the_stats_this_process_initialized(
    sdk_ready: bool, core_ready: bool, component: str, expected: str
) -> None:
    sent: list[tuple[str, str, dict[str, str]]] = []
    sdk = af_metrics._Backend("sdk", fake_stats_module("sdk", sdk_ready, sent))
    core = af_metrics._Backend("core", fake_stats_module("core", core_ready, sent))
    stats = af_metrics.AirflowStats([sdk, core], [core, sdk], lambda: component)
    try:
        stats.incr("ol.emitter.submitted", 2, tags={"component": "stale", "transport": "http"})
    finally:
        for name in ("sdk_home", "core_home"):
            sys.modules.pop(name, None)
    assert sent == [(expected, "ol.emitter.submitted", {"component": component, "transport": "http"})]
