"""Shared fixtures: a loopback collector, OpenLineage events, emitters that are always closed."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.uuid import generate_new_uuid

from openlineage_emitter import ThreadedTransport
from openlineage_emitter.collector import Collector

PRODUCER = "https://github.com/openlineage-emitter/tests"
#: The OpenLineage JSON Schema (spec 2-0-2, Apache-2.0), carried as test data: see its README/NOTICE.
SPEC_DIR = Path(__file__).resolve().parent / "data" / "openlineage-spec"


@pytest.fixture(autouse=True)
def no_process_default_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without a process default spool and leaves none behind: one set
    by a test (the Airflow plugin's, ~/airflow/openlineage-spool) must not reach others."""
    from openlineage_emitter import transport

    monkeypatch.setattr(transport.PROCESS_DEFAULTS, "spool_dir", None)


def isolated_env(tmp_path: Path, *, columns: int, **extra: str) -> dict[str, str]:
    """An environment for a CLI subprocess with no Airflow or OpenLineage config of the
    developer's leaking in: home, AIRFLOW_HOME and airflow.cfg under ``tmp_path``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    clean.update(
        HOME=str(tmp_path),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW_CONFIG=str(tmp_path / "airflow.cfg"),
        COLUMNS=str(columns),
        **extra,
    )
    return clean


@pytest.fixture
def transports() -> Iterator[list[ThreadedTransport]]:
    """ThreadedTransports a test builds (it appends them); each closed, briefly, after it."""
    made: list[ThreadedTransport] = []
    yield made
    for transport in made:
        transport.close(0.5)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A healthy loopback collector (script it with ``answer``/``script``); always stopped."""
    with Collector() as c:
        yield c


def make_event(state: RunState = RunState.START, run_id: str | None = None, job: str = "job") -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=run_id or str(generate_new_uuid())),
        job=Job(namespace="tests", name=job),
        producer=PRODUCER,
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, interval_s: float = 0.005) -> bool:
    """Poll ``predicate`` until it holds or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def emitter_threads() -> list[threading.Thread]:
    """Threads this package started (worker and call threads), alive now."""
    return [t for t in threading.enumerate() if t.name.startswith("openlineage-emitter")]


@pytest.fixture(scope="session")
def validate_event() -> Callable[[Any], None]:
    """Validate one delivered event against the OpenLineage spec in tests/data.

    The spec is part of the repository: if it is missing the checkout is broken, and every
    test that validates fails rather than skips (a skip would pass CI without validating).
    """
    main = SPEC_DIR / "OpenLineage.json"
    if not main.is_file():
        pytest.fail(
            f"OpenLineage spec not found at {main}: tests/data/openlineage-spec is part of the repository"
        )
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = [json.loads(p.read_text()) for p in [main, *sorted((SPEC_DIR / "facets").glob("*.json"))]]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas if "$id" in s)
    validator = Draft202012Validator(schemas[0], registry=registry)

    def validate(event: Any) -> None:
        validator.validate(event)

    return validate
