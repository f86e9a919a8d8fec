"""Section: a 5 MB event against a backend that takes at most 1 MB (e.g. Azure Event Hubs).

Each row emits one event of ~5 MB (a debug facet, source code, SQL, an integration's
``op_kwargs``, a large schema) through ``ThreadedTransport(http)`` to the loopback
collector of this process, which answers 413 to bodies over its limit, and reads back
what arrived: its size, whether it carries the truncation facet, what ``stats()`` counted.
``emit`` is timed alone: the shedding happens on the worker, the caller only enqueues.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet, parent_run, schema_dataset, source_code_job, sql_job
from openlineage.client.serde import Serde
from openlineage.client.uuid import generate_new_uuid

from benchmarks._common import PRODUCER
from benchmarks._common import make_event as small_event
from benchmarks._options import Options
from benchmarks._table import Column, Table
from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._size import TRUNCATION_FACET
from openlineage_emitter.collector import Collector

MB = 1_000_000  #: decimal, as backends state their limits
#: The backend's request size limit: 1 MB, like Azure Event Hubs.
LIMIT = 1 * MB


@attrs.define
class _DebugRunFacet(RunFacet):
    payload: str = ""


@attrs.define
class _AirflowRunFacet(RunFacet):
    op_kwargs: str = ""


def five_mb_event() -> RunEvent:
    """~5 MB: debug output 2 MB, source code 1 MB, op_kwargs 1 MB, SQL 0.6 MB, a schema ~0.4 MB."""
    fields = [
        schema_dataset.SchemaDatasetFacetFields(name=f"column_{i:06d}", type="varchar") for i in range(10_000)
    ]
    return RunEvent(
        eventType=RunState.START,
        eventTime="2026-12-03T04:00:00+00:00",
        run=Run(
            runId=str(generate_new_uuid()),
            facets={
                "parent": parent_run.ParentRunFacet(
                    run=parent_run.Run(runId=str(generate_new_uuid())),
                    job=parent_run.Job(namespace="benchmarks", name="dag"),
                ),
                "debug": _DebugRunFacet(payload="d" * 2 * MB),
                "airflow": _AirflowRunFacet(op_kwargs="k" * MB),
            },
        ),
        job=Job(
            namespace="benchmarks",
            name="dag.big_task",
            facets={
                "sourceCode": source_code_job.SourceCodeJobFacet(language="python", sourceCode="s" * MB),
                "sql": sql_job.SQLJobFacet(query="q" * 600_000),
            },
        ),
        inputs=[
            InputDataset(
                namespace="postgres://db",
                name="public.wide",
                facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
            )
        ],
        producer=PRODUCER,
    )


CASES = (
    # (label, emitter_max_event_bytes, backend limit)
    ("budget 1 MB, backend limit 1 MB", LIMIT, LIMIT),
    ("no budget, backend limit 1 MB", 0, LIMIT),
    ("no budget, no backend limit", 0, 0),
)


def _columns() -> list[Column]:
    return [
        Column("case", "case", align="<"),
        Column("event_mb", "event MB"),
        Column("requests", "requests"),
        Column("statuses", "answers", align="<"),
        Column("arrived_kb", "arrived KB"),
        Column("marked", "marked"),
        Column("shed", "facets shed"),
        Column("delivered", "delivered"),
        Column("truncated", "truncated", align="<"),
        Column("dropped", "dropped"),
        Column("emit_us", "emit us"),
        Column("delivery_ms", "delivery ms"),
    ]


def _row(label: str, budget: int, limit: int) -> dict[str, Any]:
    event = five_mb_event()
    event_bytes = len(Serde.to_json(event))
    settings = EmitterSettings(max_event_bytes=budget, call_timeout_s=30)
    with Collector(max_body_bytes=limit) as collector:
        transport = ThreadedTransport.wrap({"type": "http", "url": collector.url}, settings)
        try:
            # A small event first: the worker is started and idle when the big one is timed.
            transport.emit(small_event())
            transport.flush(10)
            started = time.perf_counter_ns()
            transport.emit(event)
            emit_ns = time.perf_counter_ns() - started
            transport.flush(60)
            delivery_s = (time.perf_counter_ns() - started) / 1e9
        finally:
            transport.close(5)
        received = collector.received[1:]
    stats = transport.stats()
    arrived = [r for r in received if 200 <= r.status < 300]
    marker = arrived[0].body["run"]["facets"].get(TRUNCATION_FACET) if arrived else None
    return {
        "case": label,
        "event_mb": round(event_bytes / MB, 2),
        "requests": len(received),
        "statuses": " ".join(str(r.status) for r in received),
        "arrived_kb": round(int(arrived[0].headers.get("content-length", 0)) / 1000, 1) if arrived else None,
        "marked": marker is not None,
        "shed": len(marker["shedFacets"]) if marker else 0,
        "delivered": stats.delivered - 1,
        "truncated": ", ".join(f"{k} {v}" for k, v in stats.truncated.items() if v) or "-",
        "dropped": stats.dropped_total,
        "emit_us": round(emit_ns / 1000, 1),
        "delivery_ms": round(delivery_s * 1000, 1),
    }


def run(opts: Options) -> Table:
    table = Table(
        "event_size",
        "Large events: one ~5 MB event, a backend that refuses bodies over 1 MB (413)",
        _columns(),
    )
    for label, budget, limit in CASES:
        table.rows.append(_row(label, budget, limit))
    table.notes.append(
        "emit us: the caller's cost (enqueue only); delivery ms: emit to accepted, shedding included"
    )
    table.notes.append(
        "the collector runs in this process whatever --collector says: its answers are read back"
    )
    table.notes.append(
        "marked: the delivered event carries the run facet "
        f"{TRUNCATION_FACET} (what was shed, sizes before/after)"
    )
    return table
