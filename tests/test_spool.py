"""The durable spool: the Spool itself, the emitter's backlog on it, and ThreadedTransport
spilling to it and replaying from it against a real loopback collector.

In order: the Spool's writing, size bound, claims, durable replay progress, claim owners
and leases; SpoolBacklog and corrupt batches; ThreadedTransport spilling, replay order
and stats; and, with real processes, spooling and replaying across a kill.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
from openlineage.client.event_v2 import RunState
from openlineage.client.serde import Serde

from openlineage_emitter import BreakerState, EmitterSettings, RetryPolicy, ThreadedTransport
from openlineage_emitter._backlog import SpoolBacklog
from openlineage_emitter._owner import current_owner, host_token, process_start
from openlineage_emitter._records import frame, parse_records
from openlineage_emitter._replayer import Sending
from openlineage_emitter.collector import Answer, Collector, refusing_url
from openlineage_emitter.spool import CLAIM_LEASE_S, Spool
from tests.conftest import make_event, wait_until
from tests.spool_helpers.scenarios import READY, RESULT, spool_is_empty

ROOT = Path(__file__).resolve().parents[1]
BIG = 10**9  # a size bound that is never reached

# -- helpers -------------------------------------------------------------------------------


def record(event: Any) -> bytes:
    """One spool record, as the emitter's backlog writes it."""
    return Serde.to_json(event).encode("utf-8")


def batches(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".jsonl"))


def entries(directory: Path) -> list[str]:
    """Everything in the spool directory but the quarantine folder."""
    return sorted(n for n in os.listdir(directory) if n != "quarantine")


def spooled_run_ids(directory: Path) -> list[str]:
    """runIds of every record in every batch (claimed ones included), sorted."""
    ids = []
    for path in directory.iterdir():
        if ".jsonl" in path.name and path.is_file():
            ids += [json.loads(r)["run"]["runId"] for r in parse_records(path.read_bytes()).records]
    return sorted(ids)


def hand_made(directory: Path, content: bytes, *, count: int, when_ns: int = 1) -> Path:
    """A batch file written without the Spool (e.g. a corrupt one), older than any real batch."""
    path = directory / f"{when_ns:020d}-999999-0-{count}.jsonl"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def damaged_batch(spool_dir: Path, count: int, hit: tuple[int, int]) -> tuple[list[Any], Path, bytes]:
    """A real batch of ``count`` events whose bytes from inside record ``hit[0]`` to inside
    record ``hit[1]`` are overwritten; (events, batch, the damaged span as replay sees it)."""
    events = [make_event(job="spooled") for _ in range(count)]
    assert Spool(spool_dir, BIG).write([record(e) for e in events])
    [batch] = batches(spool_dir)
    starts = [0]
    for event in events:
        starts.append(starts[-1] + len(frame(record(event))))
    data = bytearray(batch.read_bytes())
    first, last = hit
    data[starts[first] + 40 : starts[last] + 20] = b"#" * (starts[last] + 20 - starts[first] - 40)
    batch.write_bytes(bytes(data))
    return events, batch, bytes(data[starts[first] : starts[last + 1]])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_ids(events: list[Any]) -> list[str]:
    return [e["run"]["runId"] for e in events]


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


class Scenario:
    """``python -m tests.spool_helpers.scenarios NAME ARGS`` with deadlines on every read."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.spool_helpers.scenarios", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._out = b""

    def wait_ready(self, timeout_s: float = 15) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while READY.encode() not in self._out:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {READY} within {timeout_s}s"
            readable, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if readable:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"exited before {READY}: {self.stderr()}"
                self._out += chunk

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 30) -> tuple[int, dict[str, Any], str]:
        """(exit code, the RESULT payload, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"scenario did not end within {timeout_s}s") from None
        text = (self._out + out).decode()
        lines = [line for line in text.splitlines() if line.startswith(RESULT)]
        assert len(lines) == 1, f"stdout={text!r} stderr={err.decode()}"
        return self.proc.returncode, json.loads(lines[0][len(RESULT) :]), err.decode()

    def stderr(self) -> str:
        self.kill()
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def scenarios() -> Iterator[list[Scenario]]:
    """Scenario processes the test starts; any still running at teardown are killed."""
    started: list[Scenario] = []
    yield started
    for scenario in started:
        scenario.kill()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


class MakeTransport(Protocol):
    def __call__(self, url: str, spool_dir: Path, **settings: Any) -> ThreadedTransport: ...


@pytest.fixture
def make_transport() -> Iterator[MakeTransport]:
    """ThreadedTransport(http) with a spool and short retry/breaker timings; closed at teardown."""
    made: list[ThreadedTransport] = []

    def make(url: str, spool_dir: Path, **settings: Any) -> ThreadedTransport:
        given: dict[str, Any] = {
            "call_timeout_s": 2.0,
            "retry": RetryPolicy(attempts=1),
            "breaker_threshold": 2,
            "breaker_cooldown_s": 0.2,
            "shutdown_timeout_s": 1.0,
            **settings,
        }
        transport = ThreadedTransport.wrap(
            {"type": "http", "url": url}, EmitterSettings(spool_dir=str(spool_dir), **given)
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close(0.5)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def emit_all(transport: ThreadedTransport, count: int, job: str = "job") -> list[str]:
    events = [make_event(job=job) for _ in range(count)]
    for event in events:
        transport.emit(event)
    return [e.run.runId for e in events]


def prefill(spool_dir: Path, batches_of: list[int], job: str = "spooled") -> list[str]:
    """Write batches of events to the spool as an earlier process would have; their runIds."""
    spool = Spool(spool_dir, BIG)
    ids: list[str] = []
    for count in batches_of:
        events = [make_event(job=job) for _ in range(count)]
        assert spool.write([record(e) for e in events])
        ids += [e.run.runId for e in events]
    return ids


# -- Spool: writing ------------------------------------------------------------------------


def test_write_leaves_exactly_one_batch_and_no_temporary_file(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    assert spool.write([b'{"a": 1}', b'{"a": 2}']) is True
    names = os.listdir(spool_dir)
    assert len(names) == 1
    assert names[0].endswith(".jsonl")
    assert not names[0].startswith(".tmp-")
    assert spool.written == 2


def test_write_fsyncs_the_data_before_the_name_appears_and_then_the_directory(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(spool_dir, BIG)
    real_fsync = os.fsync
    synced: list[tuple[str, list[str]]] = []

    def spy(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, sorted(os.listdir(spool_dir))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    assert spool.write([b'{"a": 1}'])
    monkeypatch.undo()
    [(first, seen_then), (second, _)] = synced
    assert first == "file"
    assert len(seen_then) == 1
    assert seen_then[0].startswith(".tmp-")  # only the temporary name existed while syncing
    assert second == "dir"  # the rename itself is made durable


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077], ids=["umask000", "umask022", "umask077"])
def test_directory_is_0700_and_batches_0600_whatever_the_umask(spool_dir: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        spool = Spool(spool_dir, BIG)
        assert spool.write([b'{"a": 1}'])
    finally:
        os.umask(previous)
    assert mode(spool_dir) == 0o700
    [batch] = batches(spool_dir)
    assert mode(batch) == 0o600


def test_an_existing_open_directory_is_tightened_to_0700(spool_dir: Path) -> None:
    spool_dir.mkdir()
    spool_dir.chmod(0o777)
    Spool(spool_dir, BIG).write([b'{"a": 1}'])
    assert mode(spool_dir) == 0o700


def test_records_round_trip_through_a_claim(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    events = [make_event() for _ in range(3)]
    spool.write([record(e) for e in events])
    claim = spool.claim()
    assert claim is not None
    assert claim.count == 3
    assert [json.loads(r) for r in claim.records()] == [json.loads(record(e)) for e in events]


def test_a_temporary_file_is_never_claimed(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    (spool_dir / f".tmp-{1:020d}-1-0-1.jsonl").write_bytes(b'{"half": "written"}\n')
    assert spool.claim() is None
    assert spool.pending() == (0, 0)


def half_writes(monkeypatch: pytest.MonkeyPatch, *, then_full_after: int | None = None) -> None:
    """``os.write`` writes at most half of what it is given, as on a nearly full disk; with
    ``then_full_after``, it raises ENOSPC once that many calls were made."""
    real_write = os.write
    calls = 0

    def half(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if then_full_after is not None and calls > then_full_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        view = memoryview(data)
        return real_write(fd, view[: max(1, len(view) // 2)])

    monkeypatch.setattr(os, "write", half)


def test_a_short_write_is_continued_until_the_batch_is_whole(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(spool_dir, BIG)
    records = [b'{"i": %d}' % i for i in range(50)]
    half_writes(monkeypatch)
    assert spool.write(records)
    monkeypatch.undo()
    [batch] = batches(spool_dir)
    parsed = parse_records(batch.read_bytes())
    assert (parsed.records, parsed.damaged) == (records, [])
    assert spool.written == 50


def test_a_disk_that_fills_up_mid_batch_fails_the_write_and_leaves_nothing(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(spool_dir, BIG)
    half_writes(monkeypatch, then_full_after=3)
    assert spool.write([b'{"i": %d}' % i for i in range(50)]) is False
    monkeypatch.undo()
    assert entries(spool_dir) == []
    assert spool.written == 0


def test_events_spooled_while_the_disk_writes_short_are_all_on_disk_intact(
    spool_dir: Path, make_transport: MakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = make_transport(refusing_url(), spool_dir)
    half_writes(monkeypatch)
    ids = spool_an_outage(transport, 300)
    monkeypatch.undo()
    assert spooled_run_ids(spool_dir) == sorted(ids)


def test_events_are_counted_dropped_not_spooled_when_the_disk_is_full(
    spool_dir: Path, make_transport: MakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = make_transport(refusing_url(), spool_dir, breaker_threshold=0)
    half_writes(monkeypatch, then_full_after=0)
    emit_all(transport, 5)
    assert wait_until(lambda: transport.stats().dropped_total == 5), transport.stats()
    monkeypatch.undo()
    assert transport.stats().spooled == 0
    assert entries(spool_dir) == []


# -- Spool: size bound ---------------------------------------------------------------------


def test_writing_past_max_bytes_evicts_the_oldest_batches_and_counts_their_records(
    spool_dir: Path,
) -> None:
    line = 100 - len(frame(b""))  # each record is 100 bytes on disk with its frame
    spool = Spool(spool_dir, max_bytes=450)

    def batch(tag: str, count: int) -> list[bytes]:
        return [f"{tag}{i}".ljust(line, "x").encode() for i in range(count)]

    for tag, count in [("a", 1), ("b", 2), ("c", 3), ("d", 1)]:  # 100, 200, 300, 100 bytes
        assert spool.write(batch(tag, count))
    kept = [parse_records(p.read_bytes()).records[0][:1] for p in batches(spool_dir)]
    assert kept == [b"c", b"d"]  # the newest, 400 bytes <= 450
    assert spool.evicted == 3  # a (1) and b (2)
    assert spool.written == 7


def test_the_bound_is_not_enforced_below_max_bytes(spool_dir: Path) -> None:
    spool = Spool(spool_dir, max_bytes=10_000)
    for i in range(5):
        spool.write([b'{"i": %d}' % i])
    assert len(batches(spool_dir)) == 5
    assert spool.evicted == 0


# -- Spool: claims -------------------------------------------------------------------------


def test_a_claim_renames_the_batch_to_a_claim_of_this_process(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"a": 1}'])
    [batch] = batches(spool_dir)
    claim = spool.claim()
    assert claim is not None
    assert claim.name == batch.name
    assert entries(spool_dir) == [f"{batch.name}.claim-{current_owner()}"]
    assert spool.pending() == (0, 0)


def test_claims_take_the_oldest_batch_first(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    for i in range(3):
        spool.write([b'{"i": %d}' % i])
    order = []
    while (claim := spool.claim()) is not None:
        order.append(claim.records())
        claim.ack()
    assert order == [[b'{"i": 0}'], [b'{"i": 1}'], [b'{"i": 2}']]


def test_a_claimed_batch_is_not_claimed_again_by_another_spool(spool_dir: Path) -> None:
    first, second = Spool(spool_dir, BIG), Spool(spool_dir, BIG)
    first.write([b'{"a": 1}'])
    assert first.claim() is not None
    assert second.claim() is None


def test_two_spools_racing_on_one_directory_never_claim_the_same_batch(spool_dir: Path) -> None:
    writer = Spool(spool_dir, BIG)
    for i in range(100):
        writer.write([b'{"i": %d}' % i])
    claimed: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def drain(slot: int) -> None:
        spool = Spool(spool_dir, BIG)
        start.wait(5)
        while (claim := spool.claim()) is not None:
            claimed[slot].append(claim.name)
            claim.ack()

    threads = [threading.Thread(target=drain, args=(slot,)) for slot in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 100
    assert entries(spool_dir) == []


def test_release_gives_the_batch_back_under_its_name(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"a": 1}'])
    [batch] = batches(spool_dir)
    claim = spool.claim()
    assert claim is not None
    claim.release()
    assert entries(spool_dir) == [batch.name]
    again = spool.claim()
    assert again is not None
    assert again.records() == [b'{"a": 1}']


def test_ack_removes_the_batch(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"a": 1}'])
    claim = spool.claim()
    assert claim is not None
    claim.ack()
    assert entries(spool_dir) == []
    assert spool.claim() is None


def test_keep_from_gives_back_only_the_records_not_yet_delivered(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"i": 0}', b'{"i": 1}', b'{"i": 2}', b'{"i": 3}'])
    claim = spool.claim()
    assert claim is not None
    claim.keep_from(claim.records(), 2)
    assert not [n for n in entries(spool_dir) if ".claim-" in n]
    assert spool.pending() == (1, 2)
    again = spool.claim()
    assert again is not None
    assert again.records() == [b'{"i": 2}', b'{"i": 3}']
    assert spool.written == 4  # giving back is not a new spill


def test_keep_from_keeps_the_rest_ahead_of_newer_batches(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"i": 0}', b'{"i": 1}'])
    spool.write([b'{"i": 2}'])
    claim = spool.claim()
    assert claim is not None
    claim.keep_from(claim.records(), 1)
    order = []
    while (next_claim := spool.claim()) is not None:
        order += next_claim.records()
        next_claim.ack()
    assert order == [b'{"i": 1}', b'{"i": 2}']


def test_keep_from_that_cannot_record_progress_loses_nothing(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"i": 0}', b'{"i": 1}'])
    claim = spool.claim()
    assert claim is not None
    real_open = os.open

    def disk_full(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if os.path.basename(path).endswith(".progress"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", disk_full)
    claim.keep_from(claim.records(), 1)
    monkeypatch.undo()
    spool.reclaim_orphans()
    left = []
    while (next_claim := spool.claim()) is not None:
        left += next_claim.records()
        next_claim.ack()
    assert left == [b'{"i": 0}', b'{"i": 1}']  # sent again rather than lost


# -- Spool: durable replay progress -----------------------------------------------------------


def age(path: Path, seconds: float) -> None:
    """Set a file's mtime ``seconds`` into the past (the lease runs on mtimes)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def take_over(spool_dir: Path) -> list[bytes]:
    """What another process gets once the current claim's lease ran out."""
    for path in spool_dir.iterdir():
        if path.is_file():
            age(path, 2 * CLAIM_LEASE_S)
    other = Spool(spool_dir, BIG)
    assert other.reclaim_orphans() == 1
    claim = other.claim()
    assert claim is not None
    return claim.records()


def test_a_claim_taken_over_resumes_after_the_last_record_marked_done(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"i": %d}' % i for i in range(5)])
    claim = spool.claim()
    assert claim is not None
    claim.records()
    claim.mark_done(3)  # then the owner vanishes without a word, as under SIGKILL
    assert take_over(spool_dir) == [b'{"i": 3}', b'{"i": 4}']


def test_a_torn_progress_entry_falls_back_to_the_one_before(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"i": %d}' % i for i in range(5)])
    claim = spool.claim()
    assert claim is not None
    claim.records()
    claim.mark_done(2)
    [progress] = [p for p in spool_dir.iterdir() if p.name.endswith(".progress")]
    with progress.open("ab") as f:
        f.write(frame(b"999 3")[:9])  # killed in the middle of the next entry
    assert take_over(spool_dir) == [b'{"i": 2}', b'{"i": 3}', b'{"i": 4}']


def test_progress_never_moves_backwards(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"i": %d}' % i for i in range(5)])
    claim = spool.claim()
    assert claim is not None
    claim.records()
    claim.mark_done(4)
    [progress] = [p for p in spool_dir.iterdir() if p.name.endswith(".progress")]
    with progress.open("ab") as f:
        f.write(frame(b"1 1"))  # a late write by a former owner whose lease ran out
    assert take_over(spool_dir) == [b'{"i": 4}']


def test_ack_removes_the_batch_and_its_progress(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"i": 0}', b'{"i": 1}'])
    claim = spool.claim()
    assert claim is not None
    claim.records()
    claim.mark_done(1)
    claim.ack()
    assert entries(spool_dir) == []


def test_a_progress_file_left_without_its_batch_is_removed_after_the_lease(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    stray = spool_dir / f"{1:020d}-1-00000000-2.jsonl.progress"
    stray.write_bytes(frame(b"10 1"))
    spool.reclaim_orphans()
    assert stray.exists()  # a replayer may still be writing it
    age(stray, 2 * CLAIM_LEASE_S)
    spool.reclaim_orphans()
    assert not stray.exists()


# -- Spool: claim owners and leases --------------------------------------------------------


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


def held_by(spool_dir: Path, owner: str) -> Path:
    """Write one batch and make it a claim of ``owner``."""
    Spool(spool_dir, BIG).write([b'{"a": 1}'])
    [batch] = batches(spool_dir)
    held = batch.with_name(f"{batch.name}.claim-{owner}")
    os.replace(batch, held)
    return held


@pytest.mark.integration
def test_a_claim_held_by_a_reused_pid_is_reclaimed(
    spool_dir: Path, live_process: subprocess.Popen[bytes]
) -> None:
    start = process_start(live_process.pid)
    assert start is not None
    # The PID is alive, but it started at another time: not the process that claimed.
    held_by(spool_dir, f"{live_process.pid}.{int(start) - 1}.{host_token()}")
    assert Spool(spool_dir, BIG).reclaim_orphans() == 1
    assert len(batches(spool_dir)) == 1


@pytest.mark.integration
def test_a_claim_held_by_a_live_owner_is_kept_within_its_lease(
    spool_dir: Path, live_process: subprocess.Popen[bytes]
) -> None:
    held = held_by(spool_dir, f"{live_process.pid}.{process_start(live_process.pid)}.{host_token()}")
    assert Spool(spool_dir, BIG).reclaim_orphans() == 0
    assert entries(spool_dir) == [held.name]


@pytest.mark.integration
def test_a_claim_held_by_a_live_owner_is_reclaimed_once_its_lease_runs_out(
    spool_dir: Path, live_process: subprocess.Popen[bytes]
) -> None:
    held = held_by(spool_dir, f"{live_process.pid}.{process_start(live_process.pid)}.{host_token()}")
    age(held, CLAIM_LEASE_S + 5)
    assert Spool(spool_dir, BIG).reclaim_orphans() == 1
    assert len(batches(spool_dir)) == 1


def test_a_claim_from_another_host_is_kept_until_its_lease_runs_out(spool_dir: Path) -> None:
    held = held_by(spool_dir, "1.12345.other-container_4026531836")
    spool = Spool(spool_dir, BIG, lease_s=60)
    assert spool.reclaim_orphans() == 0  # PID 1 here says nothing about PID 1 there
    age(held, 61)
    assert spool.reclaim_orphans() == 1


def test_replay_progress_renews_the_lease(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG, lease_s=60)
    spool.write([b'{"i": 0}', b'{"i": 1}'])
    claim = spool.claim()
    assert claim is not None
    claim.records()
    [held] = [p for p in spool_dir.iterdir() if ".claim-" in p.name]
    age(held, 120)  # claimed long ago ...
    claim.mark_done(1)  # ... but still making progress
    assert Spool(spool_dir, BIG, lease_s=60).reclaim_orphans() == 0


@pytest.mark.integration
def test_a_claim_is_kept_while_its_process_lives_and_reclaimed_once_it_is_killed(
    spool_dir: Path, scenarios: list[Scenario]
) -> None:
    Spool(spool_dir, BIG).write([b'{"a": 1}'])
    holder = Scenario("claim-and-hold", str(spool_dir))
    scenarios.append(holder)
    holder.wait_ready()
    spool = Spool(spool_dir, BIG)
    assert spool.reclaim_orphans() == 0
    assert spool.claim() is None
    holder.kill()
    assert spool.reclaim_orphans() == 1
    claim = spool.claim()
    assert claim is not None
    assert claim.records() == [b'{"a": 1}']


@pytest.mark.integration
def test_a_claim_whose_owner_is_dead_is_reclaimed(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"a": 1}'])
    [batch] = batches(spool_dir)
    owner = dead_pid()
    os.replace(batch, batch.with_name(f"{batch.name}.claim-{owner}"))
    claim = spool.claim()
    assert claim is not None
    assert claim.name == batch.name
    assert claim.records() == [b'{"a": 1}']
    assert entries(spool_dir) == [f"{batch.name}.claim-{current_owner()}"]


@pytest.mark.integration
def test_an_old_format_claim_whose_owner_is_alive_is_not_reclaimed(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([b'{"a": 1}'])
    [batch] = batches(spool_dir)
    owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        held = batch.with_name(f"{batch.name}.claim-{owner.pid}")
        os.replace(batch, held)
        assert spool.claim() is None
        assert spool.reclaim_orphans() == 0
        assert entries(spool_dir) == [held.name]
    finally:
        assert owner.stdin is not None
        owner.stdin.close()
        owner.wait(10)


@pytest.mark.integration
def test_two_processes_racing_on_one_directory_never_claim_the_same_batch(
    spool_dir: Path, scenarios: list[Scenario]
) -> None:
    writer = Spool(spool_dir, BIG)
    for i in range(100):
        writer.write([b'{"i": %d}' % i])
    written = {p.name for p in batches(spool_dir)}
    racers = [Scenario("claim-all", str(spool_dir)) for _ in range(2)]
    scenarios += racers
    for racer in racers:
        racer.wait_ready()
    for racer in racers:
        racer.go()
    results = [racer.finish() for racer in racers]
    for code, _, err in results:
        assert code == 0, err
    first, second = (set(payload["claimed"]) for _, payload, _ in results)
    assert not first & second
    assert first | second == written
    assert entries(spool_dir) == []


# -- SpoolBacklog: corrupt files -----------------------------------------------------------

CORRUPT = {
    "garbage-bytes": b"\x00\xff\xfe\x80 not json at all \x81\n",
    "invalid-json-line": b'{"eventType": "START"}\n{"eventType": "COMPL\n',
    "empty": b"",
    "blank-lines": b"\n \n\n",
}


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_a_corrupt_batch_is_quarantined_and_replay_goes_on_to_the_next(
    spool_dir: Path, content: bytes
) -> None:
    spool = Spool(spool_dir, BIG)
    backlog = SpoolBacklog(spool)
    corrupt = hand_made(spool_dir, content, count=2)
    good = make_event()
    spool.write([record(good)])
    sent: list[Any] = []

    def deliver(events: Sequence[Any]) -> list[object]:
        sent.extend(events)
        return [None] * len(events)

    drained = backlog.replay(Sending(deliver))
    assert (drained.batches, drained.delivered, drained.set_aside) == (1, 1, 2)
    assert run_ids(sent) == [good.run.runId]
    assert (spool_dir / "quarantine" / corrupt.name).read_bytes() == content
    assert mode(spool_dir / "quarantine") == 0o700
    assert backlog.counts() == (2, 0)  # the records its name declares

    assert backlog.replay(Sending(lambda events: [None] * len(events))).batches == 0
    assert entries(spool_dir) == []
    assert backlog.counts() == (2, 0)


def test_a_batch_corrupted_in_the_middle_delivers_every_intact_event_and_quarantines_only_the_damage(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    events, batch, damaged = damaged_batch(spool_dir, 20, (7, 9))
    transport = make_transport(collector.url, spool_dir)
    [live] = emit_all(transport, 1, job="live")
    assert collector.wait_for(18, timeout_s=5)
    assert wait_until(lambda: entries(spool_dir) == [])
    intact = [e.run.runId for i, e in enumerate(events) if i not in (7, 8, 9)]
    assert sorted(run_ids(collector.events)) == sorted([live, *intact])
    assert (spool_dir / "quarantine" / f"{batch.name}.damaged").read_bytes() == damaged
    assert transport.stats().quarantined == 3


def test_a_batch_of_json_that_is_not_events_is_quarantined(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    backlog = SpoolBacklog(spool)
    hand_made(spool_dir, b'42\n"text"\n', count=2)
    assert backlog.replay(Sending(lambda events: [None] * len(events))).batches == 0
    assert backlog.counts() == (2, 0)


# -- ThreadedTransport: spilling ---------------------------------------------------------


def spool_an_outage(transport: ThreadedTransport, count: int) -> list[str]:
    """Emit ``count`` events to a dead backend and wait until all of them are on disk."""
    ids = emit_all(transport, count)
    assert wait_until(lambda: transport.stats().spooled == count), transport.stats()
    return ids


def test_events_a_dead_backend_refuses_are_spooled_not_dropped(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(refusing_url(), spool_dir)
    ids = spool_an_outage(transport, 20)
    stats = transport.stats()
    assert (stats.delivered, stats.dropped_total, stats.spooled) == (0, 0, 20)
    assert stats.breaker_state != BreakerState.CLOSED.value  # some were spilled as breaker_open
    assert spooled_run_ids(spool_dir) == sorted(ids)


def test_after_an_outage_every_event_is_delivered_exactly_once(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    url = refusing_url()
    transport = make_transport(url, spool_dir)
    ids = spool_an_outage(transport, 20)
    with Collector(port=port_of(url)) as back:
        # The replay's probe closes the breaker. A live event sent while it is half-open
        # may find the probe taken by the replay and be spooled behind it: delivered once
        # all the same, but counted replayed, not delivered.
        assert wait_until(lambda: transport.stats().breaker_state == BreakerState.CLOSED.value, timeout_s=10)
        [live] = emit_all(transport, 1, job="live")
        assert back.wait_for(21, timeout_s=5)
        assert wait_until(lambda: entries(spool_dir) == [])
        delivered = run_ids(back.events)
    assert sorted(delivered) == sorted([*ids, live])
    assert len(set(delivered)) == len(delivered) == 21
    stats = transport.stats()
    assert (stats.delivered, stats.replayed, stats.spooled, stats.dropped_total) == (1, 20, 20, 0)


def test_spool_drains_by_itself_when_the_backend_answers_again(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    """With the breaker still closed, replay retries every cooldown without a new event."""
    with Collector(Answer(status=503)) as collector:
        transport = make_transport(collector.url, spool_dir, breaker_threshold=0)
        ids = spool_an_outage(transport, 10)
        collector.answer(Answer(status=200))
        assert collector.wait_for(10, timeout_s=5)
        assert wait_until(lambda: entries(spool_dir) == [])
        delivered = run_ids(collector.events)
    assert sorted(delivered) == sorted(ids)
    assert len(set(delivered)) == 10
    assert transport.stats().replayed == 10


def test_spool_drains_after_the_breaker_opened_without_a_new_live_event(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    with Collector(Answer(status=503)) as collector:
        transport = make_transport(collector.url, spool_dir, breaker_threshold=1)
        spool_an_outage(transport, 3)
        assert transport.stats().breaker_state != BreakerState.CLOSED.value
        collector.answer(Answer(status=200))
        assert collector.wait_for(3, timeout_s=3)


def test_a_full_queue_spills_refused_events_to_the_spool(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(
            hung.url, spool_dir, queue_size=4, call_timeout_s=1.0, breaker_threshold=0, lanes=1
        )
        emit_all(transport, 1)
        assert hung.wait_for(1, timeout_s=5, delivered=False)  # the worker is stuck on it
        emit_all(transport, 4)  # queued
        refused = emit_all(transport, 4)  # the queue is full: each emit returns at once
        assert transport.stats().queue_depth == 8
        # The refused four and the timed-out first one; the counter follows the write.
        assert wait_until(lambda: transport.stats().spooled >= 5)
        assert set(refused) <= set(spooled_run_ids(spool_dir))
        assert transport.stats().dropped_total == 0


def test_a_full_queue_with_a_spool_drops_nothing_while_a_call_hangs(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(hung.url, spool_dir, queue_size=4, call_timeout_s=5)
        emit_all(transport, 1)
        assert hung.wait_for(1, timeout_s=5, delivered=False)
        emit_all(transport, 4 + 12)
        assert transport.stats().dropped["queue_full"] == 0


def test_close_writes_what_is_still_pending_at_its_deadline_to_the_spool(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(hung.url, spool_dir, call_timeout_s=30, breaker_threshold=0)
        ids = emit_all(transport, 20)
        assert hung.wait_for(1, timeout_s=5, delivered=False)
        start = time.monotonic()
        assert transport.close(0.5) is False
        took = time.monotonic() - start
        stats = transport.stats()
    assert took < 0.5 + 2.0  # slack for a loaded machine; the hung call would cost 30 s
    assert (stats.spooled, stats.dropped_total, stats.delivered) == (20, 0, 0)
    assert spooled_run_ids(spool_dir) == sorted(ids)  # the in-flight one too


def test_an_unserialisable_event_is_counted_as_dropped_not_spooled(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(refusing_url(), spool_dir, breaker_threshold=1, breaker_cooldown_s=30)
    spool_an_outage(transport, 1)
    assert transport.stats().breaker_state == BreakerState.OPEN.value
    bad = make_event()
    assert bad.run.facets is not None
    bad.run.facets["bad"] = {(1, 2): "tuple keys are not JSON"}  # type: ignore[assignment]
    transport.emit(bad)  # refused by the open breaker, so spilled
    assert wait_until(lambda: transport.stats().spooled + transport.stats().dropped_total == 2)
    stats = transport.stats()
    assert (stats.spooled, stats.dropped["non_retryable"]) == (1, 1)


# -- ThreadedTransport: replay order -------------------------------------------------------


def test_a_live_event_is_delivered_before_the_spooled_backlog(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    spooled = prefill(spool_dir, [5, 5, 5])
    # One lane: the replaying lane's own queue comes first (live events on other lanes are
    # sent beside the replay, in either order).
    transport = make_transport(collector.url, spool_dir, lanes=1)
    [live] = emit_all(transport, 1, job="live")  # starts the worker: the queue comes first
    assert collector.wait_for(16, timeout_s=5)
    assert wait_until(lambda: entries(spool_dir) == [])
    delivered = run_ids(collector.events)
    assert delivered[0] == live
    assert sorted(delivered[1:]) == sorted(spooled)
    assert transport.stats().replayed == 15


def test_a_live_event_overtakes_the_rest_of_a_batch_being_replayed(
    spool_dir: Path, make_transport: MakeTransport
) -> None:
    """Deterministic bound: when the live event is queued, at most the one replayed call
    already in flight can still land before it; the rest of the batch waits."""
    spooled = prefill(spool_dir, [20])
    with Collector(Answer(delay_s=0.05)) as slow:
        # One lane: live events on the replaying lane's queue are the ones replay yields to
        # (on other lanes they are delivered beside the replay, never behind it).
        transport = make_transport(slow.url, spool_dir, lanes=1)
        [first] = emit_all(transport, 1, job="live")
        assert slow.wait_for(4, timeout_s=5)  # the first live event, then replay under way
        [second] = emit_all(transport, 1, job="live")
        seen_at_submit = len(slow.events)
        assert slow.wait_for(22, timeout_s=10)
        assert wait_until(lambda: entries(spool_dir) == [])
        delivered = run_ids(slow.events)
    assert delivered[0] == first
    assert delivered.index(second) <= seen_at_submit + 1
    assert sorted(d for d in delivered if d not in (first, second)) == sorted(spooled)
    assert len(set(delivered)) == 22
    assert transport.stats().replayed == 20


def test_a_run_whose_start_went_to_the_spool_gets_its_complete_after_it(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    """Live events go before the replay; a run with events in the spool is the exception:
    its next events are written behind them, so START still arrives first."""
    transport = make_transport(collector.url, spool_dir, breaker_threshold=0)
    start = make_event(RunState.START)
    complete = make_event(RunState.COMPLETE, run_id=start.run.runId)
    collector.script([Answer(status=503)])  # START's one attempt fails: it is spooled
    transport.emit(start)
    assert wait_until(lambda: transport.stats().spooled == 1)

    transport.emit(complete)  # the backend answers again, but START is still in the spool

    assert collector.wait_for(2, timeout_s=5)
    assert [e["eventType"] for e in collector.events] == ["START", "COMPLETE"]
    assert wait_until(lambda: transport.stats().replayed == 2)  # counted once the call returned
    assert (transport.stats().spooled, transport.stats().dropped_total) == (2, 0)


def spooled_in_replay_order(directory: Path) -> list[tuple[str, str]]:
    """(runId, eventType) of every record, in the order a replay sends them (batch names)."""
    found = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if ".jsonl" in path.name and path.is_file():
            bodies = [json.loads(r) for r in parse_records(path.read_bytes()).records]
            found += [(body["run"]["runId"], body["eventType"]) for body in bodies]
    return found


def test_when_the_breaker_opens_the_events_being_sent_are_spooled_before_the_queue_behind_them(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url, spool_dir, breaker_threshold=1, breaker_cooldown_s=60, lanes=1)
    # A first answer slow enough to queue a hand-off behind it; that hand-off's first event refused.
    collector.script([Answer(delay_s=0.3), Answer(status=503, delay_s=0.3)])
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().in_flight == 1)
    refused, start = make_event(RunState.START), make_event(RunState.START)
    transport.emit(refused)
    transport.emit(start)  # handed over with the refused one, behind it
    assert wait_until(lambda: transport.stats().in_flight == 2)
    transport.emit(make_event(RunState.COMPLETE, run_id=start.run.runId))  # queued behind them
    assert wait_until(lambda: transport.stats().spooled == 3)  # the breaker opened: all spooled
    assert spooled_in_replay_order(spool_dir) == [
        (refused.run.runId, "START"),
        (start.run.runId, "START"),
        (start.run.runId, "COMPLETE"),
    ]


def test_flush_gives_the_replay_time_for_events_spilled_only_to_keep_order(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    """A task runner flushes and exits: its COMPLETE, written behind its spooled START,
    must not be left to a later process (in a pod, none comes)."""
    transport = make_transport(collector.url, spool_dir, breaker_threshold=0, breaker_cooldown_s=0.05)
    start = make_event(RunState.START)
    collector.script([Answer(status=503)])
    transport.emit(start)
    assert wait_until(lambda: transport.stats().spooled == 1)
    transport.emit(make_event(RunState.COMPLETE, run_id=start.run.runId))

    assert transport.flush(5)

    assert [e["eventType"] for e in collector.events] == ["START", "COMPLETE"]


def test_other_runs_are_not_held_behind_the_spool(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url, spool_dir, breaker_threshold=0)
    collector.script([Answer(status=503)])
    [spooled] = emit_all(transport, 1)
    assert wait_until(lambda: transport.stats().spooled == 1)

    others = emit_all(transport, 10, job="other")

    assert collector.wait_for(11, timeout_s=5)
    assert sorted(run_ids(collector.events)) == sorted([spooled, *others])
    assert transport.stats().spooled == 1  # only the spooled run's own event went there


def test_a_spooled_event_the_backend_rejects_on_replay_is_quarantined_not_deleted(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    rejected, accepted = prefill(spool_dir, [2])
    collector.script([Answer(status=200), Answer(status=400)])  # the live event, then the first replayed
    # One lane: the live event goes before the replay (with several, in either order).
    transport = make_transport(collector.url, spool_dir, lanes=1)
    emit_all(transport, 1, job="live")
    assert collector.wait_for(2, timeout_s=5)
    assert wait_until(lambda: entries(spool_dir) == [])
    assert accepted in run_ids(collector.events)
    assert transport.stats().quarantined == 1
    assert spooled_run_ids(spool_dir / "quarantine") == [rejected]


# -- ThreadedTransport: stats --------------------------------------------------------------


def test_stats_count_events_evicted_by_the_size_bound(spool_dir: Path, make_transport: MakeTransport) -> None:
    size = len(frame(record(make_event())))
    transport = make_transport(
        # One lane: "the newest" is the order events failed in, which parallel lanes do not fix.
        refusing_url(),
        spool_dir,
        breaker_threshold=0,
        spool_max_bytes=3 * size + size // 2,
        lanes=1,
    )
    ids: list[str] = []

    def spooled(count: int) -> Callable[[], bool]:
        return lambda: transport.stats().spooled == count

    for count in range(1, 9):  # one at a time: one batch per event, each failed on its own
        ids += emit_all(transport, 1)
        assert wait_until(spooled(count))
    stats = transport.stats()
    assert (stats.spooled, stats.spool_evicted, stats.dropped_total) == (8, 5, 0)
    assert spooled_run_ids(spool_dir) == sorted(ids[-3:])  # the newest are kept


def test_stats_count_quarantined_events_and_replay_goes_on(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    spool_dir.mkdir(mode=0o700)
    corrupt = hand_made(spool_dir, b"\xff garbage\n", count=3)
    spooled = prefill(spool_dir, [2])
    transport = make_transport(collector.url, spool_dir)
    [live] = emit_all(transport, 1, job="live")
    assert collector.wait_for(3, timeout_s=5)
    assert wait_until(lambda: entries(spool_dir) == [])
    stats = transport.stats()
    assert (stats.quarantined, stats.replayed, stats.delivered) == (3, 2, 1)
    assert (spool_dir / "quarantine" / corrupt.name).exists()
    assert sorted(run_ids(collector.events)) == sorted([live, *spooled])


# -- across processes ----------------------------------------------------------------------


@pytest.mark.integration
def test_events_spooled_by_a_process_killed_after_close_are_delivered_by_the_next(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport, scenarios: list[Scenario]
) -> None:
    with Collector(Answer(hang=True)) as hung:
        killed = Scenario("spill-and-die", hung.url, str(spool_dir), "10")
        scenarios.append(killed)
        killed.wait_ready()
        killed.go()
        code, result, err = killed.finish()
    assert code == -signal.SIGKILL, err
    assert (result["closed"], result["spooled"], result["dropped"]) == (False, 10, 0)
    assert spooled_run_ids(spool_dir) == sorted(result["run_ids"])

    transport = make_transport(collector.url, spool_dir)
    [live] = emit_all(transport, 1, job="live")
    assert collector.wait_for(11, timeout_s=5)
    assert wait_until(lambda: entries(spool_dir) == [])
    delivered = run_ids(collector.events)
    assert sorted(delivered) == sorted([*result["run_ids"], live])
    assert len(set(delivered)) == 11


@pytest.mark.integration
def test_two_processes_replaying_one_spool_deliver_every_event_once(
    spool_dir: Path, scenarios: list[Scenario]
) -> None:
    spooled = prefill(spool_dir, [2] * 50)
    with Collector(Answer(delay_s=0.002)) as collector:
        replayers = [Scenario("replay-until-empty", collector.url, str(spool_dir)) for _ in range(2)]
        scenarios += replayers
        for replayer in replayers:
            replayer.wait_ready()
        for replayer in replayers:
            replayer.go()
        results = [replayer.finish() for replayer in replayers]
        delivered = run_ids(collector.events)
    for code, result, err in results:
        assert code == 0, err
        assert (result["empty"], result["closed"], result["dropped"], result["delivered"]) == (
            True,
            True,
            0,
            1,
        )
    assert sum(result["replayed"] for _, result, _ in results) == 100
    lives = [result["live"] for _, result, _ in results]
    assert sorted(delivered) == sorted([*spooled, *lives])
    assert len(set(delivered)) == len(delivered) == 102
    assert spool_is_empty(spool_dir)


def replay_command(spool_dir: Path, url: str, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """``openlineage-emitter replay`` to ``url``, in an environment with no config leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW_CONFIG=str(tmp_path / "airflow.cfg"),
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "http", "url": url}),
    )
    return [sys.executable, "-m", "openlineage_emitter", "replay", "--spool-dir", str(spool_dir)], env


@pytest.mark.integration
def test_a_replay_command_killed_mid_batch_resends_at_most_the_event_in_flight(
    spool_dir: Path, tmp_path: Path
) -> None:
    spooled = prefill(spool_dir, [40])
    with Collector(Answer(delay_s=0.02)) as collector:
        command, env = replay_command(spool_dir, collector.url, tmp_path)
        killed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert collector.wait_for(10, timeout_s=15)
        finally:
            killed.kill()
            killed.wait(5)
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        delivered = run_ids(collector.events)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(set(delivered)) == sorted(spooled)
    assert len(delivered) - len(spooled) <= 1


@pytest.mark.integration
def test_the_replay_command_delivers_the_intact_events_of_a_damaged_batch_and_reports_the_rest(
    spool_dir: Path, collector: Collector, tmp_path: Path
) -> None:
    events, batch, damaged = damaged_batch(spool_dir, 20, (3, 5))
    command, env = replay_command(spool_dir, collector.url, tmp_path)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "delivered 17, failed 3 (quarantined), left 0" in result.stdout
    intact = [e.run.runId for i, e in enumerate(events) if i not in (3, 4, 5)]
    assert sorted(run_ids(collector.events)) == sorted(intact)
    assert (spool_dir / "quarantine" / f"{batch.name}.damaged").read_bytes() == damaged


@pytest.mark.integration
def test_a_background_replay_killed_mid_batch_resends_at_most_the_event_in_flight(
    spool_dir: Path, make_transport: MakeTransport, scenarios: list[Scenario]
) -> None:
    spooled = prefill(spool_dir, [40])
    with Collector(Answer(delay_s=0.02)) as collector:
        killed = Scenario("replay-until-empty", collector.url, str(spool_dir))
        scenarios.append(killed)
        killed.wait_ready()
        killed.go()
        assert collector.wait_for(10, timeout_s=15)  # its live event, then replayed ones
        killed.kill()
        transport = make_transport(collector.url, spool_dir)
        emit_all(transport, 1, job="live")
        assert wait_until(lambda: entries(spool_dir) == [], timeout_s=15)
        assert transport.flush(5)
        delivered = [i for i in run_ids(collector.events) if i in set(spooled)]
    assert sorted(set(delivered)) == sorted(spooled)
    assert len(delivered) - len(spooled) <= 1
