"""Section 5: ``airflow dags test`` with healthy, slow, hung and refusing lineage backends.

For this plugin's thread and fork strategies and the provider's own fork and thread
paths (plugin switched off), side by side: the wall time of ``airflow dags test`` and
the task-instance durations Airflow recorded in its metadata DB. Each run gets a fresh
loopback collector in this process; Airflow runs from ``.venv-airflow-3.3`` (Airflow
3.3 + the OpenLineage provider + this project, editable) in a temporary AIRFLOW_HOME
(sqlite), every command in its own session with a timeout. Skipped, with a note,
without that venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from benchmarks._options import Options
from benchmarks._table import Column, Row, Table, fmt_ratio
from openlineage_emitter.collector import Answer, Collector, refusing_url

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-airflow-3.3"
DAG_ID = "ole_bench"
WARMUP_TASK = "warmup"
#: ``[openlineage] execution_timeout`` of every run, as in DESIGN.md's measurement.
EXECUTION_TIMEOUT_S = 5
TASK_SLEEP_S = 0.2
SLOW_DELAY_S = 2.0
#: The target: a hung/refusing backend's TI median within 10 % (+100 ms) of healthy.
TARGET_FACTOR = 1.10
TARGET_SLACK_S = 0.100
#: Timeouts of the set-up commands and of the small DB query.
SETUP_TIMEOUT_S = 240.0
QUERY_TIMEOUT_S = 30.0
#: Operator the warm-up task uses; OpenLineage is disabled for it (disabled_for_operators).
WARMUP_OPERATOR = "airflow.providers.standard.operators.bash.BashOperator"

BACKENDS = ("healthy", "slow", "hung", "refusing")
QUICK_BACKENDS = ("healthy", "hung")

_DAG = '''"""Written by benchmarks/airflow_dags.py: a warm-up task, then {n} tasks of {sleep} s in a chain."""

import time
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def work() -> None:
    time.sleep({sleep})


with DAG("{dag_id}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    previous = BashOperator(task_id="{warmup}", bash_command="true")
    for i in range({n}):
        task = PythonOperator(task_id=f"t{{i:02d}}", python_callable=work)
        previous >> task
        previous = task
'''

#: Run with the Airflow venv's python: task instances of DAG runs newer than argv[3].
_QUERY = r"""
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(last,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM dag_run WHERE dag_id = ?", (sys.argv[2],)).fetchone()
rows = db.execute(
    "SELECT ti.task_id, ti.state, "
    "COALESCE(ti.duration, (julianday(ti.end_date) - julianday(ti.start_date)) * 86400.0) "
    "FROM task_instance ti JOIN dag_run dr ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
    "WHERE dr.dag_id = ? AND dr.id > ?",
    (sys.argv[2], int(sys.argv[3])),
).fetchall()
print(json.dumps({"last": last, "tis": rows}))
"""


@attrs.frozen
class Config:
    label: str
    env: Mapping[str, str]
    in_quick: bool = True


CONFIGS = (
    Config("plugin: thread (default)", {}),
    Config(
        "plugin: fork (forced)",
        {
            "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "False",
            "AIRFLOW__OPENLINEAGE__EMITTER_FORCE_FORK": "True",
        },
    ),
    Config(
        "provider: fork (plugin off)",
        {
            "AIRFLOW__OPENLINEAGE__EMITTER_PLUGIN_ENABLED": "False",
            "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "False",
        },
        in_quick=False,  # the slowest row set: 16 s per task with a hung backend
    ),
    Config(
        "provider: thread (plugin off)",
        {
            "AIRFLOW__OPENLINEAGE__EMITTER_PLUGIN_ENABLED": "False",
            "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        },
    ),
)


@attrs.frozen
class Outcome:
    """One ``airflow dags test`` run."""

    wall_s: float | None  #: None: it timed out and was killed
    returncode: int | None
    durations: list[float]  #: measured tasks' TI durations (the warm-up task left out)
    succeeded: int
    delivered: int | None  #: 2xx answers at the collector (None: refusing, nothing listens)
    requests: int | None
    leftovers: list[str]
    log: Path


def _columns() -> list[Column]:
    return [
        Column("config", "configuration", align="<"),
        Column("backend", "backend", align="<"),
        Column("tasks_ok", "tasks ok", align=">"),
        Column("wall_s", "dags test s"),
        Column("ti_median_s", "TI median s"),
        Column("ti_max_s", "TI max s"),
        Column("delivered", "events delivered"),
        Column("vs_healthy", "TI median vs healthy", fmt_ratio),
        Column("target", "target met", align=">"),
    ]


def _clean_env(home: Path, url: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of an Airflow command of ``home``: inherited Airflow/OpenLineage
    variables dropped, so only what the configuration sets counts."""
    drop = ("AIRFLOW", "OPENLINEAGE", "PYTEST", "OLE_", "_AIRFLOW")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__OPENLINEAGE__NAMESPACE="ole-benchmarks",
        AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT=str(EXECUTION_TIMEOUT_S),
        AIRFLOW__OPENLINEAGE__DISABLED_FOR_OPERATORS=WARMUP_OPERATOR,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "http", "url": url}),
        # A spool per run, as the default one would be for a fresh host: the default
        # ($AIRFLOW_HOME/openlineage-spool) is shared by every run of this home, and what a
        # dead-backend run spools would be replayed into a later run's collector.
        AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR=str(home / f"spool-{uuid.uuid4().hex[:8]}"),
    )
    env.update(extra)
    return env


def _marked(marker: str) -> list[int]:
    """Pids of processes whose environment carries ``OLE_BENCH_RUN=<marker>``."""
    needle = f"OLE_BENCH_RUN={marker}".encode()
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


def _reap_leftovers(marker: str, grace_s: float) -> list[str]:
    """Processes of a finished command still alive after ``grace_s``: described, then killed."""
    deadline = time.monotonic() + grace_s
    pids = _marked(marker)
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = _marked(marker)
    described = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            described.append(f"{pid} {cmdline}")
        except OSError:
            described.append(f"{pid} (gone)")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return described


def _bounded(
    cmd: Sequence[str | Path], env: Mapping[str, str], log: Path, timeout_s: float
) -> tuple[int | None, float, list[str]]:
    """Run ``cmd`` in its own session, output to ``log``: (exit code or None on timeout, seconds,
    leftover processes). On a timeout the whole group and every marked process is killed."""
    marker = uuid.uuid4().hex
    with log.open("w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            env={**env, "OLE_BENCH_RUN": marker},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            returncode: int | None = proc.wait(timeout_s)
            elapsed = time.monotonic() - started
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - started
            _kill(proc, marker)
            returncode = None
        except BaseException:  # KeyboardInterrupt: its own session did not get the SIGINT
            _kill(proc, marker)
            raise
    leftovers = _reap_leftovers(marker, grace_s=1.0 if returncode is not None else 0.0)
    return returncode, elapsed, leftovers


def _kill(proc: subprocess.Popen[bytes], marker: str) -> None:
    """SIGKILL the command's process group and anything else carrying its marker; reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _reap_leftovers(marker, grace_s=0.0)


def _query(python: Path, home: Path, after: int) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "-c", _QUERY, str(home / "airflow.db"), DAG_ID, str(after)],
        check=True,
        capture_output=True,
        text=True,
        timeout=QUERY_TIMEOUT_S,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@contextlib.contextmanager
def _backend(kind: str) -> Iterator[tuple[str, Collector | None]]:
    """A loopback backend of ``kind``: its URL and its collector (none when refusing); always stopped."""
    if kind == "refusing":
        yield refusing_url(), None
        return
    answer = {"healthy": Answer(), "slow": Answer(delay_s=SLOW_DELAY_S), "hung": Answer(hang=True)}[kind]
    collector = Collector(answer).start()
    try:
        yield collector.url, collector
    finally:
        collector.stop()


def _timeout_s(n_tasks: int) -> float:
    # Upstream's fork path with a hung backend: ~16 s per task (two hooks of execution_timeout
    # + 3 s each until SIGKILL), plus ~45 s of retries for the DAG-run event, plus start-up.
    return 120.0 + (n_tasks + 1) * 4 * (EXECUTION_TIMEOUT_S + 3)


def _dags_test(venv: Path, home: Path, config: Config, kind: str, n_tasks: int) -> Outcome:
    python, airflow = venv / "bin" / "python", venv / "bin" / "airflow"
    before = int(_query(python, home, 1 << 62)["last"])
    log = home / f"dags-test-{len(list(home.glob('dags-test-*.log'))):02d}-{kind}.log"
    with _backend(kind) as (url, collector):
        returncode, elapsed, leftovers = _bounded(
            [airflow, "dags", "test", DAG_ID], _clean_env(home, url, config.env), log, _timeout_s(n_tasks)
        )
        delivered = requests = None
        if collector is not None:
            # Requests in flight when the process ended are answered (and recorded) after the delay.
            time.sleep(0.3 + (SLOW_DELAY_S if kind == "slow" else 0.0))
            received = collector.received
            delivered = sum(200 <= r.status < 300 for r in received)
            requests = len(received)
    try:
        found = _query(python, home, before)["tis"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        found = []  # shows as 0/n tasks ok, with a note pointing at the log
    tis = [(task, state, float(d)) for task, state, d in found if d is not None]
    measured = [(state, d) for task, state, d in tis if task != WARMUP_TASK]
    return Outcome(
        wall_s=elapsed if returncode is not None else None,
        returncode=returncode,
        durations=[d for _, d in measured],
        succeeded=sum(state == "success" for state, _ in measured),
        delivered=delivered,
        requests=requests,
        leftovers=leftovers,
        log=log,
    )


def _setup(venv: Path, home: Path, n_tasks: int) -> None:
    (home / "dags").mkdir(parents=True)
    (home / "dags" / f"{DAG_ID}.py").write_text(
        _DAG.format(n=n_tasks, sleep=TASK_SLEEP_S, dag_id=DAG_ID, warmup=WARMUP_TASK)
    )
    env = _clean_env(home, refusing_url(), {})
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        log = home / f"{'-'.join(args)}.log"
        returncode, _, _ = _bounded([venv / "bin" / "airflow", *args], env, log, SETUP_TIMEOUT_S)
        if returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"airflow {' '.join(args)} failed (exit {returncode}):\n{tail}")


def _versions(venv: Path) -> str:
    code = (
        "import importlib.metadata as m, platform; "
        "print(m.version('apache-airflow'), m.version('apache-airflow-providers-openlineage'), "
        "platform.python_version())"
    )
    try:
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", code],
            check=True,
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT_S,
        )
        airflow, provider, python = done.stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return f"Airflow from {venv.name} (versions unknown)"
    return f"Airflow {airflow} + apache-airflow-providers-openlineage {provider}, Python {python}"


def _row(config: Config, kind: str, n_tasks: int, outcome: Outcome, healthy_median: float | None) -> Row:
    median = statistics.median(outcome.durations) if outcome.durations else None
    ratio = target = None
    if median is not None and healthy_median:
        ratio = median / healthy_median
        if kind != "healthy":
            target = median <= healthy_median * TARGET_FACTOR + TARGET_SLACK_S
    return {
        "config": config.label,
        "backend": kind if kind != "slow" else f"slow ({SLOW_DELAY_S:g} s)",
        "tasks_ok": f"{outcome.succeeded}/{n_tasks}",
        "wall_s": outcome.wall_s,
        "ti_median_s": median,
        "ti_max_s": max(outcome.durations) if outcome.durations else None,
        "delivered": outcome.delivered,
        "requests": outcome.requests,
        "vs_healthy": ratio,
        "target": target,
    }


def run(opts: Options) -> Table:
    n_tasks = opts.pick(full=5, quick=3)
    backends = QUICK_BACKENDS if opts.quick else BACKENDS
    configs = [c for c in CONFIGS if c.in_quick or not opts.quick]
    table = Table(
        name="airflow",
        title=(
            f"5. Airflow `dags test`: wall time and task-instance durations ({n_tasks} tasks of "
            f"{TASK_SLEEP_S:g} s, execution_timeout {EXECUTION_TIMEOUT_S} s)"
        ),
        columns=_columns(),
    )
    if not (VENV / "bin" / "airflow").exists():
        table.notes = [
            f"skipped: no Airflow venv at {VENV} (python3 dev.py test builds it: Airflow 3.3 + "
            "apache-airflow-providers-openlineage + this project)"
        ]
        return table

    notes: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="ole-bench-airflow-"))
    keep_home = False
    try:
        versions = _versions(VENV)
        try:
            _setup(VENV, home, n_tasks)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            keep_home = True
            table.notes = [f"skipped: setting up AIRFLOW_HOME {home} failed: {exc}"]
            return table
        for config in configs:
            healthy_median: float | None = None
            for kind in backends:
                outcome = _dags_test(VENV, home, config, kind, n_tasks)
                if kind == "healthy" and outcome.durations:
                    healthy_median = statistics.median(outcome.durations)
                row = _row(config, kind, n_tasks, outcome, healthy_median)
                table.rows.append(row)
                wall = "timed out" if outcome.wall_s is None else f"{outcome.wall_s:.1f}s"
                print(f"  airflow: {config.label:<30} {kind:<9} {wall}", file=sys.stderr, flush=True)
                where = f"{config.label} / {kind}"
                if outcome.returncode is None:
                    keep_home = True
                    notes.append(
                        f"{where}: timed out after {_timeout_s(n_tasks):g}s, killed; log {outcome.log}"
                    )
                elif outcome.returncode != 0 or outcome.succeeded != n_tasks:
                    keep_home = True
                    notes.append(f"{where}: exit code {outcome.returncode}, see {outcome.log}")
                if outcome.leftovers:
                    notes.append(f"{where}: processes left behind (killed): {'; '.join(outcome.leftovers)}")
    finally:
        if keep_home:
            notes.append(f"AIRFLOW_HOME with the logs kept at {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)

    healthy_events = [r["delivered"] for r in table.rows if r["backend"] == "healthy"]
    table.notes = [
        f"{versions}; sqlite metadata DB in a temporary AIRFLOW_HOME; one `airflow dags test` per row, "
        f"its tasks run one after another in one process; [openlineage] execution_timeout = "
        f"{EXECUTION_TIMEOUT_S}, transport http to the backend",
        f"DAG: a warm-up BashOperator (OpenLineage disabled for it via disabled_for_operators; it absorbs "
        f"Airflow's one-time ~3 s start of the in-process execution API), then {n_tasks} PythonOperators "
        f"sleeping {TASK_SLEEP_S:g} s; TI median/max over those {n_tasks} (task_instance.duration from "
        "the metadata DB)",
        "TI duration spans the running hook (START) and execute(); the success hook (COMPLETE) runs after "
        "the task runner has reported success, so its cost shows in `dags test s` only",
        "`dags test` runs all tasks in one process and calls before_stopping after each; the plugin "
        "flushes there within what is left of one execution_timeout per process in total: with a slow, "
        "hung or refusing backend that is up to ~5 s more `dags test s`, outside any TI duration (a real "
        "task runner is one process per task: its exit waits at most execution_timeout, its state never); "
        "what is still queued then is dropped at shutdown and counted (no emitter_spool_dir set here)",
        "plugin: fork: the child emits through the inner transport directly, with urllib3's retries off "
        "(the thread emitter owns retries): a refused connection fails at once, unretried; a slow or hung "
        "backend is waited for, up to execution_timeout, then the child is terminated",
        f"backends: loopback Collector in this process (127.0.0.1): healthy; slow: answers after "
        f"{SLOW_DELAY_S:g} s; hung: never answers; refusing: nothing listens on the port",
        "plugin: fork (forced): execute_in_thread = False + emitter_force_fork = True; `dags test` runs "
        "threads (the in-process execution API), so without the force the fork strategy falls back to "
        "the thread strategy; provider rows: emitter_plugin_enabled = False, execute_in_thread False (fork) "
        "/ True (thread)",
        f"events delivered: requests the collector answered 2xx, counted after the run ended (a healthy run "
        f"delivers {'/'.join(str(e) for e in healthy_events)}: START + COMPLETE of each of the {n_tasks} "
        "tasks plus the DAG run's events); '-': refusing, nothing to count",
        f"target met: TI median <= healthy TI median x {TARGET_FACTOR:g} + {TARGET_SLACK_S * 1000:g} ms, "
        "the same configuration's healthy run; stated for hung/refusing, shown for slow too",
        *notes,
    ]
    if opts.quick:
        skipped = ", ".join(c.label for c in CONFIGS if not c.in_quick)
        table.notes.append(f"quick run: healthy and hung backends only; not run: {skipped}")
    return table
