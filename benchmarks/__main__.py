"""``python -m benchmarks [--quick] [--json PATH] [--only SECTION ...] [--collector child|inprocess]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import airflow_dags, caller_cost, crash, event_size, kafka, memory, spool_drain, throughput
from benchmarks._common import quiet_logging
from benchmarks._options import Options
from benchmarks._table import Table
from openlineage_emitter import __version__

SECTIONS: dict[str, Callable[[Options], Table | list[Table]]] = {
    "caller_cost": caller_cost.run,
    "throughput": throughput.run,
    "memory": memory.run,
    "crash": crash.run,  # SIGKILLs spooling and replaying processes: kills, lost, duplicates per kill
    "event_size": event_size.run,  # a 5 MB event, a 1 MB backend limit: budget, 413 retry
    "spool_drain": spool_drain.run,  # 10,000 spooled events, 20 ms backend: one per request vs batch endpoint
    "kafka": kafka.run,  # skipped, with a note, without confluent-kafka
    "airflow": airflow_dags.run,  # skipped, with a note, without .venv-airflow-3.3; ~14 min (quick ~3)
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "openlineage-emitter benchmarks: caller cost, throughput, memory, crash, event size, spool "
            "drain, kafka, airflow (loopback only)."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="fewer events: a ~20 s run instead of ~1-2 min")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the numbers as JSON to PATH")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SECTIONS),
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--collector",
        choices=["child", "inprocess"],
        default="child",
        help="run the loopback collector in a child process (default) or in this process",
    )
    parser.add_argument("--verbose", action="store_true", help="show the transports' log output")
    return parser


def _meta(opts: Options) -> dict[str, Any]:
    return {
        "openlineage_emitter": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "quick": opts.quick,
        "collector": opts.collector,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet_logging(args.verbose)
    opts = Options(quick=args.quick, collector=args.collector)
    meta = _meta(opts)
    print(
        f"openlineage-emitter {meta['openlineage_emitter']} benchmarks: Python {meta['python']}, "
        f"{meta['cpu_count']} CPUs, {'quick' if opts.quick else 'full'} run, {opts.collector_desc}",
        flush=True,
    )
    started = time.monotonic()
    results: dict[str, Any] = {}
    for name in args.only or list(SECTIONS):
        section_start = time.monotonic()
        produced = SECTIONS[name](opts)
        tables = produced if isinstance(produced, list) else [produced]
        for table in tables:
            print()
            print(table.render(), flush=True)
            results[table.name] = {**table.to_json(), "seconds": round(time.monotonic() - section_start, 2)}
    meta["seconds"] = round(time.monotonic() - started, 2)
    meta["threads_alive_at_end"] = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print(f"\ntotal {meta['seconds']:.1f}s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"meta": meta, "sections": results}, indent=2, allow_nan=False) + "\n"
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
