"""``openlineage-emitter demo``: thread vs fork strategies against four loopback backends.

Each scenario runs in a fresh process (so the fork strategy can really fork) against a
collector on 127.0.0.1 that this process starts and stops. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

from openlineage_emitter._demo_run import EXECUTION_TIMEOUT_S
from openlineage_emitter.collector import Answer, Collector, refusing_url

BACKENDS = {
    "healthy": Answer(),
    "slow (0.3 s)": Answer(delay_s=0.3),
    "hung": Answer(hang=True),
    "refusing": None,
}
SCENARIO_TIMEOUT_S = 60.0


@contextmanager
def _backend(answer: Answer | None) -> Iterator[tuple[str, Collector | None]]:
    if answer is None:
        yield refusing_url(), None
        return
    with Collector(answer) as collector:
        yield collector.url, collector


def _scenario(strategy: str, answer: Answer | None, tasks: int) -> dict[str, object]:
    with _backend(answer) as (url, collector), tempfile.TemporaryDirectory() as spool:
        proc = subprocess.run(
            [sys.executable, "-m", "openlineage_emitter._demo_run", strategy, url, str(tasks), spool],
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"demo scenario failed: {proc.stderr.strip()[-500:]}")
        result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["delivered"] = len(collector.events) if collector is not None else 0
        return result


def run_demo(tasks: int, console: Console) -> int:
    logging.getLogger("openlineage_emitter").addHandler(logging.NullHandler())
    console.print(
        f"openlineage-emitter demo: {tasks} simulated tasks (START + COMPLETE each) per run, "
        f"execution_timeout {EXECUTION_TIMEOUT_S:g} s, call timeout 0.5 s, loopback only (127.0.0.1)\n"
    )
    table = Table(title="caller time per task and where the events went", title_justify="left")
    for column in (
        "strategy",
        "backend",
        "wait/task median",
        "wait/task max",
        "delivered",
        "spooled",
        "lost",
        "peak threads",
    ):
        table.add_column(column, justify="left" if column in {"strategy", "backend"} else "right")
    for strategy in ("thread", "fork"):
        for label, answer in BACKENDS.items():
            with console.status(f"{strategy} strategy, {label} backend"):
                r = _scenario(strategy, answer, tasks)
            waits = [float(x) for x in r["per_task_s"]]  # type: ignore[attr-defined]
            delivered, spooled = int(r["delivered"]), int(r["spooled"])  # type: ignore[call-overload]
            name = "fork" if r["forked"] else strategy
            table.add_row(
                name,
                label,
                f"{statistics.median(waits) * 1000:.1f} ms",
                f"{max(waits) * 1000:.1f} ms",
                str(delivered),
                str(spooled),
                str(max(0, 2 * tasks - delivered - spooled)),
                str(r["peak_threads"]),
            )
    console.print(table)
    console.print(
        "thread: the task waits for extraction only; events go to one bounded worker thread, and "
        "what a dead backend cannot take is spooled (replayed later), not lost.\n"
        "fork: every hook forks a child and waits for the network, up to execution_timeout, and "
        "has nowhere to keep what it could not send."
    )
    return 0
