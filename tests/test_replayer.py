"""The one replay engine (``_replayer``), through both of its callers: the emitter's background
replay (a real ThreadedTransport) and ``openlineage-emitter replay`` (``run_replay`` in this
process), against the real loopback collector, on real spool directories. Same rules for
both: refused events are quarantined as the raw bytes read from the spool, progress is
durable after every call; with ``emitter_http_batch`` on, drains go through the batch endpoint.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.serde import Serde
from rich.console import Console

from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport
from openlineage_emitter._http_batch import forget_unsupported
from openlineage_emitter._records import parse_records
from openlineage_emitter._replayer import Drained, Replayer, Sending
from openlineage_emitter.cli.replay import run_replay
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.spool import Spool
from tests.conftest import make_event, wait_until

BIG = 10**9


@pytest.fixture(autouse=True)
def fresh_process_view() -> Iterator[None]:
    forget_unsupported()
    yield
    forget_unsupported()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def odd_record(job: str = "spooled") -> bytes:
    """A valid event record written the way no encoder here writes it (spacing, key order):
    quarantining it re-encoded would change its bytes."""
    body = {
        "eventType": "START",
        "eventTime": "2026-01-01T00:00:00+00:00",
        "run": {"runId": make_event().run.runId},
        "job": {"namespace": "tests", "name": job},
        "producer": "https://example.com/p",
    }
    return json.dumps(body, indent=1, sort_keys=False).replace("\n", " ").encode()


def write_batch(spool_dir: Path, records: list[bytes]) -> None:
    assert Spool(spool_dir, BIG).write(records)


def fill(spool_dir: Path, batches: int, per_batch: int) -> list[str]:
    ids: list[str] = []
    for _ in range(batches):
        events = [make_event(job="spooled") for _ in range(per_batch)]
        write_batch(spool_dir, [json.dumps(_plain(e)).encode() for e in events])
        ids += [e.run.runId for e in events]
    return ids


def _plain(event: Any) -> dict[str, Any]:
    return Serde.to_dict(event)


def quarantined_records(spool_dir: Path) -> list[bytes]:
    found: list[bytes] = []
    for path in sorted((spool_dir / "quarantine").iterdir()):
        found += parse_records(path.read_bytes()).records
    return found


def run_ids(bodies: list[Any]) -> list[str]:
    return [b["run"]["runId"] for b in bodies]


def left_in(spool_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(spool_dir) if n != "quarantine")


# -- the two callers -----------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``run_replay`` in this process, with no Airflow or OpenLineage config of the developer's."""
    for name in list(os.environ):
        if name.startswith(("AIRFLOW", "OPENLINEAGE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_RETRY_ATTEMPTS", "1")


def cli_replay(monkeypatch: pytest.MonkeyPatch, url: str, spool_dir: Path, *, batch: bool) -> tuple[int, str]:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "http", "url": url}))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_HTTP_BATCH", str(batch).lower())
    out = io.StringIO()
    code = run_replay(Console(file=out, width=200), str(spool_dir))
    return code, out.getvalue()


@pytest.fixture
def background(spool_dir: Path) -> Iterator[Any]:
    """Starts a ThreadedTransport on ``url`` that replays ``spool_dir`` in the background."""
    made: list[ThreadedTransport] = []

    def start(url: str, *, batch: bool) -> ThreadedTransport:
        # One lane: its worker delivers the live event before it replays, so the collector's
        # scripted answers meet the requests in a known order (with several lanes the live
        # event's lane and the replaying lane send at once, in either order).
        settings = EmitterSettings(
            spool_dir=str(spool_dir),
            retry=RetryPolicy(attempts=1),
            breaker_cooldown_s=0.2,
            http_batch=batch,
            lanes=1,
        )
        transport = ThreadedTransport.wrap({"type": "http", "url": url}, settings)
        made.append(transport)
        transport.emit(make_event(job="live"))  # starts the worker; it replays when idle
        return transport

    yield start
    for transport in made:
        transport.close(0.5)


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_cli_replay_quarantines_the_raw_bytes_of_a_refused_event(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, collector: Collector, spool_dir: Path, batch: bool
) -> None:
    refused, accepted = odd_record(), odd_record()
    write_batch(spool_dir, [refused, accepted])
    if batch:
        collector.answer(Answer(event_statuses=(400, 200)))
    else:
        collector.script([Answer(status=400)])
    code, out = cli_replay(monkeypatch, collector.url, spool_dir, batch=batch)
    assert code == 1, out
    assert "delivered 1, failed 1 (quarantined), left 0" in out
    assert quarantined_records(spool_dir) == [refused]
    assert run_ids(collector.events) == [json.loads(accepted)["run"]["runId"]]


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_background_replay_quarantines_the_raw_bytes_of_a_refused_event(
    collector: Collector, spool_dir: Path, background: Any, batch: bool
) -> None:
    refused, accepted = odd_record(), odd_record()
    write_batch(spool_dir, [refused, accepted])
    if batch:
        # The live event, then the replayed batch with its first event refused.
        collector.script([Answer(), Answer(event_statuses=(400, 200))])
    else:
        collector.script([Answer(), Answer(status=400)])
    transport = background(collector.url, batch=batch)
    assert wait_until(lambda: left_in(spool_dir) == [] and transport.stats().quarantined == 1)
    assert quarantined_records(spool_dir) == [refused]
    assert json.loads(accepted)["run"]["runId"] in run_ids(collector.events)


def test_cli_replay_drains_through_the_batch_endpoint(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, collector: Collector, spool_dir: Path
) -> None:
    ids = fill(spool_dir, batches=3, per_batch=20)
    code, out = cli_replay(monkeypatch, collector.url, spool_dir, batch=True)
    assert code == 0, out
    assert "delivered 60, failed 0 (quarantined), left 0" in out
    assert collector.batch_requests == 3  # one request per spooled batch of 20
    assert sorted(run_ids(collector.events)) == sorted(ids)
    assert left_in(spool_dir) == []


def test_background_replay_drains_through_the_batch_endpoint(
    collector: Collector, spool_dir: Path, background: Any
) -> None:
    ids = fill(spool_dir, batches=3, per_batch=20)
    transport = background(collector.url, batch=True)
    assert wait_until(lambda: left_in(spool_dir) == [] and transport.stats().replayed == 60)
    replayed = [r for r in collector.received if r.body["job"]["name"] == "spooled"]
    assert sorted(run_ids([r.body for r in replayed])) == sorted(ids)
    assert all(r.batch is not None and r.status == 200 for r in replayed)
    assert len({r.batch for r in replayed}) == 3  # one request per spooled batch of 20


def test_cli_replay_against_a_backend_without_the_endpoint_probes_once_then_sends_singly(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, spool_dir: Path
) -> None:
    ids = fill(spool_dir, batches=3, per_batch=5)
    with Collector(batch_unsupported=404) as collector:
        code, out = cli_replay(monkeypatch, collector.url, spool_dir, batch=True)
        assert collector.batch_requests == 1
        assert sorted(run_ids(collector.events)) == sorted(ids)
    assert code == 0, out
    assert "delivered 15, failed 0 (quarantined), left 0" in out


# -- the engine's rules, one at a time -----------------------------------------------------


class Backend:
    """A SendMany that delivers every event until told to fail from call ``fail_from`` on."""

    def __init__(self, fail_from: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_from = fail_from

    def __call__(self, events: Sequence[Any]) -> list[object]:
        self.calls.append(len(events))
        if self.fail_from is not None and len(self.calls) >= self.fail_from:
            raise ConnectionError("backend down")
        return [None] * len(events)


def test_progress_is_durable_after_every_call_and_a_failure_keeps_the_rest(spool_dir: Path) -> None:
    ids = fill(spool_dir, batches=1, per_batch=25)
    backend = Backend(fail_from=3)
    drained = Replayer(Spool(spool_dir, BIG), Sending(backend, chunk=10)).drain()
    assert backend.calls == [10, 10, 5]
    assert (drained.delivered, drained.batches) == (20, 1)
    assert isinstance(drained.unavailable, ConnectionError)
    fresh = Spool(spool_dir, BIG)  # what a new process reads from disk
    assert fresh.pending() == (1, 5)
    claim = fresh.claim()
    assert claim is not None
    assert run_ids([json.loads(r) for r in claim.records()]) == ids[20:]


def test_stop_is_asked_before_every_call(spool_dir: Path) -> None:
    fill(spool_dir, batches=1, per_batch=6)
    backend = Backend()
    asked: list[int] = []

    def stop() -> bool:
        asked.append(len(backend.calls))
        return len(backend.calls) == 2

    drained = Replayer(Spool(spool_dir, BIG), Sending(backend, chunk=2, stop=stop)).drain()
    assert asked == [0, 1, 2]
    assert (drained.delivered, drained.unavailable) == (4, None)
    assert Spool(spool_dir, BIG).pending() == (1, 2)


def test_each_step_is_reported_before_the_batch_leaves_the_spool(spool_dir: Path) -> None:
    fill(spool_dir, batches=1, per_batch=3)
    seen: list[tuple[int, list[str]]] = []

    def progress(step: Drained) -> None:
        seen.append((step.delivered, left_in(spool_dir)))

    Replayer(Spool(spool_dir, BIG), Sending(Backend(), chunk=2, on_progress=progress)).drain()
    assert [delivered for delivered, _ in seen] == [2, 1]
    assert all(files for _, files in seen)  # the batch was still there when counted
    assert left_in(spool_dir) == []


def test_a_retry_policy_retries_a_call_before_the_replay_stops(spool_dir: Path) -> None:
    fill(spool_dir, batches=1, per_batch=2)
    answers: list[object] = [ConnectionError("once"), None]

    def flaky(events: Sequence[Any]) -> list[object]:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return [None] * len(events)

    retrying = RetryPolicy(attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01).retrying()
    drained = Replayer(Spool(spool_dir, BIG), Sending(flaky, chunk=2), retrying=retrying).drain()
    assert (drained.delivered, drained.unavailable) == (2, None)
    assert left_in(spool_dir) == []
