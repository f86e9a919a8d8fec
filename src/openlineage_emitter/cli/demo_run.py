"""One demo scenario, run in a fresh single-threaded process so the fork strategy really forks.

    python -m openlineage_emitter.cli.demo_run STRATEGY URL TASKS SPOOL_DIR

Prints one JSON line: caller seconds per task, the emitter's stats, and the peak numbers
of the emitter's threads (worker, its call thread, abandoned calls) and of the thread
strategy's extraction threads, sampled after every hook.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from datetime import datetime, timezone
from uuid import uuid4

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

from openlineage_emitter.config import OpenLineageConfig
from openlineage_emitter.retry import RetryPolicy
from openlineage_emitter.settings import EmitterSettings
from openlineage_emitter.strategies import select_strategy
from openlineage_emitter.transport import ThreadedTransport

PRODUCER = "https://github.com/openlineage-emitter/demo"
EXECUTION_TIMEOUT_S = 1.0
TASK_WORK_S = 0.05


def _event(state: RunState, run_id: str, task: int) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=run_id),
        job=Job(namespace="demo", name=f"demo_dag.task_{task}"),
        producer=PRODUCER,
    )


def main(strategy_name: str, url: str, tasks: int, spool_dir: str) -> dict[str, object]:
    settings = EmitterSettings(
        call_timeout_s=0.5,
        retry=RetryPolicy(attempts=3, initial_backoff_s=0.1, max_backoff_s=0.5, deadline_s=2.0),
        breaker_threshold=3,
        shutdown_timeout_s=EXECUTION_TIMEOUT_S,
        spool_dir=spool_dir or None,
    )
    config = OpenLineageConfig(
        execute_in_thread=strategy_name == "thread", execution_timeout_s=EXECUTION_TIMEOUT_S, emitter=settings
    )
    transport = ThreadedTransport.wrap({"type": "http", "url": url}, settings)
    # A fork child ends with os._exit: it sends what it emits itself (no worker would).
    strategy = select_strategy(config, child_setup=transport.emit_synchronously)
    per_task_s: list[float] = []
    peak = {"emitter": 0, "extraction": 0}

    def sample() -> None:
        names = [t.name for t in threading.enumerate()]
        for kind, seen in peak.items():
            peak[kind] = max(seen, sum(name.startswith(f"openlineage-{kind}") for name in names))

    for task in range(tasks):
        run_id = str(uuid4())
        start = time.perf_counter()
        start_event = _event(RunState.START, run_id, task)
        strategy.run(functools.partial(transport.emit, start_event), "on_running")
        waited = time.perf_counter() - start
        sample()
        time.sleep(TASK_WORK_S)  # the task's own work, not counted
        start = time.perf_counter()
        complete_event = _event(RunState.COMPLETE, run_id, task)
        strategy.run(functools.partial(transport.emit, complete_event), "on_success")
        per_task_s.append(waited + time.perf_counter() - start)
        sample()
    start = time.perf_counter()
    transport.close(EXECUTION_TIMEOUT_S)
    close_s = time.perf_counter() - start
    stats = transport.stats()
    return {
        "per_task_s": per_task_s,
        "close_s": close_s,
        "spooled": stats.spooled,
        "dropped": stats.dropped_total,
        "peak_emitter_threads": peak["emitter"],
        "peak_extraction_threads": peak["extraction"],
        "forked": getattr(strategy, "fallbacks", 0) == 0 and strategy.name == "fork",
    }


if __name__ == "__main__":
    name, target, count, spool = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print(json.dumps(main(name, target, count, spool)), flush=True)
