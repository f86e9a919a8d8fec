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
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich import box
from rich.console import Console
from rich.table import Table

from openlineage_emitter.cli.demo_run import EXECUTION_TIMEOUT_S
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
            [sys.executable, "-m", "openlineage_emitter.cli.demo_run", strategy, url, str(tasks), spool],
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


#: Each column, explained once under the table.
LEGEND = (
    (
        "wait p50, max",
        "how long a task waited in its two lineage hooks (START and COMPLETE together), "
        "median and worst over the tasks",
    ),
    ("delivered", "events the backend received"),
    (
        "spooled",
        f"events not delivered within the {EXECUTION_TIMEOUT_S:g} s exit budget, kept on disk and "
        "replayed later (a task runner's budget is min(execution_timeout, emitter_shutdown_timeout): "
        f"{EXECUTION_TIMEOUT_S:g} s here, 5 s with the defaults). At least once: an event whose "
        "call was still running at the deadline can count as delivered and spooled",
    ),
    ("lost", "events neither delivered nor spooled"),
    (
        "threads",
        "peak threads, as emitter + extraction: the emitter's workers and their calls (per lane a "
        "worker and one call, plus 1: at most 3 for one run's events, 17 with 8 lanes busy, whatever "
        "the backend does) + the thread strategy's extraction threads (2 at most); "
        "the main thread is not counted. The fork strategy's work runs in children: 0 + 0",
    ),
)


def run_demo(tasks: int, console: Console) -> int:
    logging.getLogger("openlineage_emitter").addHandler(logging.NullHandler())
    runs = len(BACKENDS) * 2
    console.print(
        f"openlineage-emitter demo: {tasks} simulated task{'s' if tasks != 1 else ''} "
        f"(START + COMPLETE each) per run, {runs} runs; execution_timeout {EXECUTION_TIMEOUT_S:g} s, "
        f"call timeout 0.5 s, exit budget {EXECUTION_TIMEOUT_S:g} s; loopback only (127.0.0.1)\n"
    )
    # No box edges and single padding: eight columns fit in 80.
    table = Table(
        title="time per task in the lineage hooks, and where the events went",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in (
        "strategy",
        "backend",
        "wait p50\n(ms)",
        "wait max\n(ms)",
        "delivered",
        "spooled",
        "lost",
        "threads",
    ):
        table.add_column(
            column, justify="left" if column in {"strategy", "backend"} else "right", no_wrap=True
        )
    done = 0
    for strategy in ("thread", "fork"):
        for label, answer in BACKENDS.items():
            started = time.monotonic()
            with console.status(f"{strategy} strategy, {label} backend"):
                r = _scenario(strategy, answer, tasks)
            done += 1
            # A line per run: piped, the status spinner shows nothing.
            console.print(
                f"[{done}/{runs}] {strategy} strategy, {label} backend: {time.monotonic() - started:.1f} s",
                markup=False,
            )
            waits = [float(x) for x in r["per_task_s"]]  # type: ignore[attr-defined]
            delivered, spooled = int(r["delivered"]), int(r["spooled"])  # type: ignore[call-overload]
            name = "fork" if r["forked"] else strategy
            table.add_row(
                name,
                label,
                f"{statistics.median(waits) * 1000:.1f}",
                f"{max(waits) * 1000:.1f}",
                str(delivered),
                str(spooled),
                str(max(0, 2 * tasks - delivered - spooled)),
                f"{r['peak_emitter_threads']}+{r['peak_extraction_threads']}",
            )
    console.print()
    console.print(table)
    legend = Table.grid(padding=(0, 2))
    legend.add_column(no_wrap=True)
    legend.add_column()
    for column, meaning in LEGEND:
        legend.add_row(column, meaning)
    console.print(legend)
    console.print(
        "\nthread: the task waits for extraction only; events go to one bounded worker thread, and "
        "what a dead backend cannot take is spooled (replayed later), not lost.\n"
        "fork: every hook forks a child and waits for the network, up to execution_timeout, and "
        "has nowhere to keep what it could not send."
    )
    return 0
