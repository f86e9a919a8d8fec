"""Real-Airflow fixtures: a temporary AIRFLOW_HOME (sqlite, fresh ``airflow db migrate``) and
bounded subprocesses.

Every subprocess runs in its own session with a timeout; on a timeout or any error its
whole process group is killed. Each gets a unique ``OLE_TEST_RUN`` marker in its
environment, which its children inherit, so processes that outlive it can be found in
/proc (and are killed, after being reported). Nothing listens on anything but 127.0.0.1:
the collectors are loopback, ``airflow dags test`` serves its execution API in-process,
and the scheduler runs with ``--skip-serve-logs``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from openlineage_emitter.collector import Collector

HERE = Path(__file__).resolve().parent
SITE = HERE / "site"
SCRIPTS = HERE / "scripts"
AIRFLOW = Path(sys.executable).with_name("airflow")

#: ``[openlineage] execution_timeout`` for every run: small, so bounds are tested quickly.
EXECUTION_TIMEOUT_S = 3.0
NAMESPACE = "ole-airflow-tests"
TASKS_DAG = "ole_tasks"
#: The tasks of ``ole_tasks`` and the state each must end in.
TASK_STATES = {"extract": "success", "transform": "success", "load": "success", "broken": "failed"}
#: Seconds any one Airflow command may take before the test fails (and it is killed).
COMMAND_TIMEOUT_S = 240.0


def require_airflow() -> None:
    """Skip without Airflow; fail instead when ``dev.py test`` runs the Airflow suites."""
    if AIRFLOW.exists() and importlib.util.find_spec("airflow") is not None:
        return
    message = f"Airflow is not installed next to {sys.executable} (python3 dev.py test builds the venvs)"
    if os.environ.get("OLE_REQUIRE_AIRFLOW") == "1":
        pytest.fail(message)
    pytest.skip(message)


@attrs.frozen
class Finished:
    """A subprocess that ended by itself."""

    returncode: int
    output: str
    elapsed_s: float
    #: ``time.monotonic()`` when it was seen to have exited.
    ended_at: float
    #: ``pid cmdline`` of processes (with the run's marker) still alive after it ended.
    leftovers: list[str]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def _marked(marker: str) -> list[int]:
    needle = f"OLE_TEST_RUN={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} [{state}] {cmdline}"


def reap_leftovers(marker: str, grace_s: float = 1.0) -> list[str]:
    """Processes of a finished run still alive after ``grace_s``: described, then killed."""
    deadline = time.monotonic() + grace_s
    pids = _marked(marker)
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = _marked(marker)
    described = [_describe(pid) for pid in pids]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return described


class Bounded:
    """A subprocess in its own process group, with a marker its descendants inherit."""

    def __init__(self, cmd: Sequence[str | Path], env: Mapping[str, str], log: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.log = log
        self._log_fh = log.open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(c) for c in cmd],
            env={**env, "OLE_TEST_RUN": self.marker},
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait(self, timeout_s: float) -> Finished:
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.proc.args!r} did not finish within {timeout_s:g}s; killed\n{self.output()[-5000:]}"
            ) from None
        ended_at = time.monotonic()
        self._log_fh.close()
        return Finished(
            self.proc.returncode,
            self.output(),
            ended_at - self.started,
            ended_at,
            reap_leftovers(self.marker),
        )

    def stop(self, timeout_s: float, *, again_every_s: float = 5.0) -> Finished:
        """SIGTERM, sent again every ``again_every_s`` until the process exits (at most
        ``timeout_s`` in all). Airflow's scheduler exits by raising ``SystemExit`` from its
        SIGTERM handler, and Python drops an exception raised in a garbage-collection
        callback ("Exception ignored in"): one SIGTERM landing there is lost. Seen on
        Airflow 3.1, in SQLAlchemy's ``InstanceState._cleanup``, outside any OpenLineage code."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.proc.send_signal(signal.SIGTERM)
            remaining = deadline - time.monotonic()
            try:
                self.proc.wait(max(0.0, min(again_every_s, remaining)))
                break
            except subprocess.TimeoutExpired:
                if remaining <= again_every_s:
                    break
        return self.wait(max(0.0, deadline - time.monotonic()))

    def output(self) -> str:
        if not self._log_fh.closed:
            self._log_fh.flush()
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """Kill the whole group and anything else carrying the marker; always reaps."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log_fh.close()
        reap_leftovers(self.marker, grace_s=0)


@attrs.frozen
class AirflowHome:
    """A temporary AIRFLOW_HOME with a migrated sqlite DB and the test DAGs serialized."""

    path: Path

    def env(self, transport_url: str | None = None, **extra: str) -> dict[str, str]:
        """A clean environment for an Airflow process of this home.

        Inherited AIRFLOW*/OPENLINEAGE* variables are dropped (isolation), and so are
        PYTEST*: the provider disables its config cache when PYTEST_VERSION is set.
        """
        drop = ("AIRFLOW", "OPENLINEAGE", "PYTEST", "OLE_TEST", "_AIRFLOW")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update(
            AIRFLOW_HOME=str(self.path),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.path / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__PARALLELISM="2",
            AIRFLOW__OPENLINEAGE__NAMESPACE=NAMESPACE,
            AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT=f"{EXECUTION_TIMEOUT_S:g}",
            # The default spool ($AIRFLOW_HOME/openlineage-spool) is shared by every run of
            # this session's home: one run's spooled events would be replayed into later
            # runs' collectors. Tests of the spool set a directory or drop this.
            AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR="off",
        )
        if transport_url is not None:
            env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps({"type": "http", "url": transport_url})
        env.update(extra)
        return env

    def start(self, cmd: Sequence[str | Path], env: Mapping[str, str], name: str) -> Bounded:
        return Bounded(cmd, env, self.path / f"{name}-{uuid.uuid4().hex[:8]}.log")

    def run(
        self,
        cmd: Sequence[str | Path],
        env: Mapping[str, str],
        name: str,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> Finished:
        return self.start(cmd, env, name).wait(timeout_s)

    def last_run(self, dag_id: str) -> int:
        """The id of ``dag_id``'s latest DAG run (0: none yet)."""
        with sqlite3.connect(self.path / "airflow.db") as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(id), 0) FROM dag_run WHERE dag_id = ?", (dag_id,)
            ).fetchone()
        return int(last)

    def task_states(self, dag_id: str, after_run: int) -> dict[str, str]:
        """Task states of the one run of ``dag_id`` newer than ``after_run`` ({} if none)."""
        with sqlite3.connect(self.path / "airflow.db") as db:
            rows = db.execute(
                "SELECT ti.task_id, ti.state FROM task_instance ti JOIN dag_run dr "
                "ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id WHERE dr.dag_id = ? AND dr.id > ?",
                (dag_id, after_run),
            ).fetchall()
        return {task: str(state) for task, state in rows}

    def task_durations(self, dag_id: str, after_run: int) -> dict[str, float]:
        """Seconds each task instance of the run newer than ``after_run`` took, as Airflow
        recorded them (start to end of the task, its listener hooks included)."""
        with sqlite3.connect(self.path / "airflow.db") as db:
            rows = db.execute(
                "SELECT ti.task_id, ti.duration FROM task_instance ti JOIN dag_run dr "
                "ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id WHERE dr.dag_id = ? AND dr.id > ?",
                (dag_id, after_run),
            ).fetchall()
        return {task: float(duration or 0.0) for task, duration in rows}


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    require_airflow()
    home = AirflowHome(tmp_path_factory.mktemp("airflow-home"))
    shutil.copytree(HERE / "dags", home.path / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        done = home.run([AIRFLOW, *args], home.env(), name="-".join(args))
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.tail()}"
    return home


def task_events(events: Sequence[Any]) -> dict[str, list[str]]:
    """``{task_id: [eventType, ...]}`` for the ``ole_tasks`` task runs, in arrival order."""
    out: dict[str, list[str]] = {}
    for event in events:
        job = event["job"]["name"]
        if job.startswith(TASKS_DAG + "."):
            out.setdefault(job.split(".", 1)[1], []).append(event["eventType"])
    return out


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No plugin process state before the test; its transport closed after it. Its default
    spool is under ``tmp_path``: events one test leaves in ``~/airflow/openlineage-spool``
    would otherwise be replayed into the next test's collector."""
    from openlineage_emitter.airflow import process

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setattr(process, "_process", None)
    yield
    state = process._process
    if state is not None and state.transport is not None:
        state.transport.close(0)


@pytest.fixture
def hung_collector() -> Iterator[Collector]:
    from openlineage_emitter.collector import Answer

    with Collector(Answer(hang=True)) as collector:
        yield collector


@attrs.frozen
class DagsTest:
    """One ``airflow dags test ole_tasks`` run and what it left behind."""

    finished: Finished
    events: list[Any]
    states: dict[str, str]
    #: Seconds per task instance, as Airflow recorded them.
    durations: dict[str, float]
    #: How many times the ``dags test`` process forked (sitecustomize counts them).
    forks: int
    #: How many of those forks made Python (3.12+) warn that the process is
    #: multi-threaded (sitecustomize counts them).
    fork_warnings: int


def dags_test(home: AirflowHome, collector: Collector | None, url: str | None = None, **env: str) -> DagsTest:
    """``airflow dags test ole_tasks`` against ``collector`` (or ``url``); bounded, then checked."""
    fork_log = home.path / f"forks-{uuid.uuid4().hex[:8]}.log"
    fork_log.touch()
    warning_log = fork_log.with_suffix(".warnings")
    warning_log.touch()
    url = url or (collector.url if collector is not None else None)
    run_env = home.env(
        url,
        PYTHONPATH=str(SITE),
        OLE_TEST_FORK_LOG=str(fork_log),
        OLE_TEST_FORK_WARNING_LOG=str(warning_log),
        **env,
    )
    before = home.last_run(TASKS_DAG)
    finished = home.run([AIRFLOW, "dags", "test", TASKS_DAG], run_env, name="dags-test")
    if collector is not None:
        # The process flushed before it exited; this only lets the server threads record.
        collector.wait_for(2 * len(TASK_STATES), timeout_s=1.0)
    events = collector.events if collector is not None else []
    forks = len(fork_log.read_text().splitlines())
    fork_warnings = len(warning_log.read_text().splitlines())
    states, durations = home.task_states(TASKS_DAG, before), home.task_durations(TASKS_DAG, before)
    return DagsTest(finished, events, states, durations, forks, fork_warnings)


@pytest.fixture(scope="session")
def healthy_run(airflow_home: AirflowHome) -> DagsTest:
    """The healthy-backend run: its events are checked, its duration is the others' baseline.

    ``emitter_force_fork = True`` is set although the fork strategy is not selected:
    if ``execute_in_thread`` were wrongly read as False (the provider's default, which
    Airflow writes into the generated airflow.cfg), the run would fork.
    """
    with Collector() as collector:
        return dags_test(airflow_home, collector, AIRFLOW__OPENLINEAGE__EMITTER_FORCE_FORK="True")
