"""The spool's trust rules: what it refuses to read, to write through, and to use at all.

Real files, FIFOs, symlinks and (as root) a directory owned by another user; the CLI as a
real subprocess, the background replay through a real ThreadedTransport, both against the
loopback collector.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from openlineage.client.serde import Serde

from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport
from openlineage_emitter._records import frame_all
from openlineage_emitter._safefs import UntrustedDirectoryError
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.spool import READ_LIMIT_FLOOR, QuarantineError, Spool, SpoolError
from tests.conftest import isolated_env, make_event, wait_until

BIG = 10**9
#: An unused uid (the conventional 'nobody'): owner of "another user's" directory.
OTHER_UID = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="making a directory owned by another user needs root (CI and dev runs are root)"
)


# -- helpers -------------------------------------------------------------------------------


def record(event: Any) -> bytes:
    return Serde.to_json(event).encode("utf-8")


def batch_name(when_ns: int, count: int) -> str:
    """A batch name older than any the Spool writes now (ordered by ``when_ns``)."""
    return f"{when_ns:020d}-999999-0-{count}.jsonl"


def write_batch(spool_dir: Path, when_ns: int, events: list[Any]) -> Path:
    """A well-formed batch at a chosen place in the order, as an earlier process would leave it."""
    path = spool_dir / batch_name(when_ns, len(events))
    path.write_bytes(b"".join(record(e) + b"\n" for e in events))
    path.chmod(0o600)
    return path


def outside_event_file(tmp_path: Path) -> tuple[Path, str]:
    """A file outside the spool holding a valid event: what a symlink must not leak."""
    event = make_event(job="outside")
    path = tmp_path / "outside" / "secret.jsonl"
    path.parent.mkdir()
    path.write_bytes(record(event) + b"\n")
    return path, event.run.runId


def run_ids(events: list[Any]) -> list[str]:
    return [e["run"]["runId"] for e in events]


def claim_files(spool_dir: Path) -> list[str]:
    return [n for n in os.listdir(spool_dir) if ".claim-" in n]


def kept_records(spool_dir: Path) -> list[bytes]:
    """Every record still in the spool's batches, as a later process would read them."""
    spool = Spool(spool_dir, BIG)
    records: list[bytes] = []
    while (claim := spool.claim()) is not None:
        records += claim.records()
        claim.release()
        spool.left_in_place(claim.name, claim.count)  # claim each batch once
    return records


def replayed(spool_dir: Path, name: str) -> bool:
    """The batch ``name`` was acked (not there, not claimed) and no other claim is open."""
    return not (spool_dir / name).exists() and claim_files(spool_dir) == []


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    spool_dir = tmp_path / "spool"
    Spool(spool_dir, BIG)  # creates it 0700, as the emitter would
    return spool_dir


class MakeTransport(Protocol):
    def __call__(self, url: str, spool_dir: Path) -> ThreadedTransport: ...


@pytest.fixture
def make_transport() -> Iterator[MakeTransport]:
    """ThreadedTransport(http) with a spool and short timings; closed at teardown."""
    made: list[ThreadedTransport] = []

    def make(url: str, spool_dir: Path) -> ThreadedTransport:
        settings = EmitterSettings(
            spool_dir=str(spool_dir),
            call_timeout_s=2.0,
            retry=RetryPolicy(attempts=1),
            breaker_cooldown_s=0.2,
            shutdown_timeout_s=1.0,
        )
        transport = ThreadedTransport.wrap({"type": "http", "url": url}, settings)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close(0.5)


def emit_live(transport: ThreadedTransport) -> str:
    event = make_event(job="live")
    transport.emit(event)
    return event.run.runId


@pytest.fixture
def cli_env(tmp_path: Path, collector: Collector) -> dict[str, str]:
    """An isolated environment whose transport is the loopback collector."""
    return isolated_env(
        tmp_path,
        columns=200,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "http", "url": collector.url}),
        AIRFLOW__OPENLINEAGE__EMITTER_RETRY_ATTEMPTS="1",
    )


def _one_gib_of_memory() -> None:
    # A reader that slurps /dev/zero fails fast with MemoryError instead of eating the host.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def replay(env: dict[str, str], spool_dir: Path, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """``openlineage-emitter replay`` through its real entry point, memory-capped and time-bounded."""
    return subprocess.run(
        [sys.executable, "-m", "openlineage_emitter", "replay", "--spool-dir", str(spool_dir)],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        preexec_fn=_one_gib_of_memory,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


# -- reading: symlinks ---------------------------------------------------------------------


@pytest.mark.integration
def test_cli_replay_never_sends_a_file_a_symlink_in_the_spool_points_to(
    spool_dir: Path, tmp_path: Path, collector: Collector, cli_env: dict[str, str]
) -> None:
    outside, secret_id = outside_event_file(tmp_path)
    (spool_dir / batch_name(1, 1)).symlink_to(outside)
    good = make_event()
    write_batch(spool_dir, 2, [good])
    result = replay(cli_env, spool_dir)
    assert "delivered 1," in result.stdout, result.stdout + result.stderr
    assert run_ids(collector.events) == [good.run.runId]
    assert secret_id not in json.dumps(collector.events)
    assert outside.read_bytes().startswith(b"{")  # the target is left alone


def test_background_replay_never_sends_a_file_a_symlink_in_the_spool_points_to(
    spool_dir: Path, tmp_path: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    outside, secret_id = outside_event_file(tmp_path)
    (spool_dir / batch_name(1, 1)).symlink_to(outside)  # the oldest: replayed first if it were read
    good = make_event()
    write_batch(spool_dir, 2, [good])
    transport = make_transport(collector.url, spool_dir)
    live = emit_live(transport)
    assert collector.wait_for(2, timeout_s=5)
    assert wait_until(lambda: replayed(spool_dir, batch_name(2, 1)))
    assert sorted(run_ids(collector.events)) == sorted([live, good.run.runId])
    assert secret_id not in json.dumps(collector.events)


def test_a_claimed_batch_swapped_for_a_symlink_is_not_read(spool_dir: Path, tmp_path: Path) -> None:
    """The race the listing cannot see: the open itself refuses to follow the link."""
    outside, _ = outside_event_file(tmp_path)
    spool = Spool(spool_dir, BIG)
    spool.write([record(make_event())])
    claim = spool.claim()
    assert claim is not None
    claim.path.unlink()
    claim.path.symlink_to(outside)
    with pytest.raises(SpoolError, match="symlink"):
        claim.records()


# -- reading: FIFOs and devices --------------------------------------------------------------


@pytest.fixture
def fifo_in_spool(spool_dir: Path) -> Iterator[Path]:
    """A FIFO named like the oldest batch; opened for writing at teardown so no reader stays stuck."""
    fifo = spool_dir / batch_name(1, 1)
    os.mkfifo(fifo, 0o600)
    yield fifo
    # Unblock a reader stuck on the FIFO (only the unfixed code gets stuck).
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.integration
def test_cli_replay_with_a_fifo_in_the_spool_finishes_and_delivers_the_rest(
    spool_dir: Path, fifo_in_spool: Path, collector: Collector, cli_env: dict[str, str]
) -> None:
    good = make_event()
    write_batch(spool_dir, 2, [good])
    started = time.monotonic()
    try:
        result = replay(cli_env, spool_dir, timeout_s=20)
    except subprocess.TimeoutExpired:
        pytest.fail("replay blocked on the FIFO")
    assert time.monotonic() - started < 20
    assert "delivered 1," in result.stdout, result.stdout + result.stderr
    assert run_ids(collector.events) == [good.run.runId]


def test_background_replay_with_a_fifo_in_the_spool_keeps_delivering(
    spool_dir: Path, fifo_in_spool: Path, collector: Collector, make_transport: MakeTransport
) -> None:
    good = make_event()
    write_batch(spool_dir, 2, [good])
    transport = make_transport(collector.url, spool_dir)
    first = emit_live(transport)
    assert collector.wait_for(2, timeout_s=5), "the spooled batch behind the FIFO was not replayed"
    second = emit_live(transport)  # the worker must not be stuck on the FIFO
    assert collector.wait_for(3, timeout_s=5), "a live event stayed queued"
    assert sorted(run_ids(collector.events)) == sorted([first, good.run.runId, second])


def test_a_claimed_batch_swapped_for_a_fifo_is_refused_without_blocking(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([record(make_event())])
    claim = spool.claim()
    assert claim is not None
    claim.path.unlink()
    os.mkfifo(claim.path, 0o600)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            claim.records()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock it before failing
        os.close(os.open(claim.path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], SpoolError)
    assert "FIFO" in str(outcome[0])


def test_a_fifo_planted_as_a_progress_file_does_not_block_replay(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    event = record(make_event())
    spool.write([event])
    [batch] = [p for p in spool_dir.iterdir() if p.name.endswith(".jsonl")]
    fifo = batch.with_name(batch.name + ".progress")
    os.mkfifo(fifo, 0o600)
    outcome: list[Any] = []

    def replay_it() -> None:
        claim = spool.claim()
        assert claim is not None
        outcome.append(claim.records())

    reader = threading.Thread(target=replay_it, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock it before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading the progress FIFO blocked")
    assert outcome == [[event]]  # no usable progress: the whole batch, at-least-once


def test_replay_progress_is_never_written_through_a_symlink(spool_dir: Path, tmp_path: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([record(make_event()), record(make_event())])
    [batch] = [p for p in spool_dir.iterdir() if p.name.endswith(".jsonl")]
    outside = tmp_path / "victim"
    outside.write_bytes(b"keep me\n")
    batch.with_name(batch.name + ".progress").symlink_to(outside)
    claim = spool.claim()
    assert claim is not None
    assert len(claim.records()) == 2
    claim.mark_done(1)
    assert outside.read_bytes() == b"keep me\n"


@pytest.mark.integration
def test_cli_replay_with_a_symlink_to_dev_zero_is_bounded(
    spool_dir: Path, collector: Collector, cli_env: dict[str, str]
) -> None:
    (spool_dir / batch_name(1, 1)).symlink_to("/dev/zero")
    good = make_event()
    write_batch(spool_dir, 2, [good])
    result = replay(cli_env, spool_dir, timeout_s=20)
    assert "MemoryError" not in result.stderr
    assert "delivered 1," in result.stdout, result.stdout + result.stderr
    assert run_ids(collector.events) == [good.run.runId]


def test_a_batch_over_the_read_limit_is_refused_unread(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    spool.write([record(make_event())])
    claim = spool.claim()
    assert claim is not None
    os.truncate(claim.path, spool.read_limit + 1)  # sparse: no disk, no memory
    with pytest.raises(SpoolError, match="limit"):
        claim.records()


def test_one_read_may_take_the_size_bound_but_never_less_than_the_floor(spool_dir: Path) -> None:
    assert Spool(spool_dir, 1000).read_limit == READ_LIMIT_FLOOR
    assert Spool(spool_dir, 4 * READ_LIMIT_FLOOR).read_limit == 4 * READ_LIMIT_FLOOR


# -- writing: quarantine/ ------------------------------------------------------------------


def corrupt_claim(spool: Spool, spool_dir: Path) -> tuple[Any, str]:
    (spool_dir / batch_name(1, 2)).write_bytes(b"\xff not json\n")
    claim = spool.claim()
    assert claim is not None
    return claim, batch_name(1, 2)


def test_a_symlinked_quarantine_directory_is_never_written_through(spool_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (spool_dir / "quarantine").symlink_to(outside)
    spool = Spool(spool_dir, BIG)
    claim, name = corrupt_claim(spool, spool_dir)
    with pytest.raises(QuarantineError, match="symlink"):
        claim.quarantine("corrupt")
    with pytest.raises(QuarantineError, match="symlink"):
        spool.quarantine_records([record(make_event())], "rejected")
    assert os.listdir(outside) == []
    assert (spool_dir / name).is_file()  # given back, not claimed, not lost


def test_damaged_bytes_are_never_quarantined_through_a_symlink(spool_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (spool_dir / "quarantine").symlink_to(outside)
    intact = [record(make_event()), record(make_event())]
    damaged = frame_all(intact[:1]) + b"damaged bytes\n" + frame_all(intact[1:])
    (spool_dir / batch_name(1, 3)).write_bytes(damaged)
    claim = Spool(spool_dir, BIG).claim()
    assert claim is not None
    assert claim.records() == intact  # the intact events still go out
    assert os.listdir(outside) == []


def test_a_batch_that_cannot_be_quarantined_is_given_back_and_not_claimed_again(spool_dir: Path) -> None:
    (spool_dir / "quarantine").write_bytes(b"")  # a file where the directory should be
    spool = Spool(spool_dir, BIG)
    claim, name = corrupt_claim(spool, spool_dir)
    with pytest.raises(QuarantineError, match=f"cannot quarantine spool file {name}.*regular file"):
        claim.quarantine("corrupt")
    assert claim_files(spool_dir) == []
    assert (spool_dir / name).is_file()
    assert spool.claim() is None  # no endless loop over the same batch
    assert spool.in_place_records == 2


def test_records_that_cannot_be_quarantined_stay_in_the_spool(spool_dir: Path) -> None:
    (spool_dir / "quarantine").write_bytes(b"")
    spool = Spool(spool_dir, BIG)
    rejected = record(make_event())
    with pytest.raises(QuarantineError, match="left them in"):
        spool.quarantine_records([rejected], "non_retryable")
    assert spool.claim() is None
    assert Spool(spool_dir, BIG).pending() == (1, 1)  # a later replay tries again
    assert kept_records(spool_dir) == [rejected]


def test_quarantine_never_replaces_what_is_already_there(spool_dir: Path) -> None:
    spool = Spool(spool_dir, BIG)
    claim, name = corrupt_claim(spool, spool_dir)
    (spool_dir / "quarantine").mkdir(mode=0o700)
    (spool_dir / "quarantine" / name).mkdir()  # the target exists (here: a directory)
    claim.quarantine("corrupt")
    assert (spool_dir / "quarantine" / f"{name}.1").read_bytes() == b"\xff not json\n"
    assert (spool_dir / "quarantine" / name).is_dir()
    assert claim_files(spool_dir) == []
    assert spool.quarantined == 2


@pytest.mark.integration
def test_cli_replay_with_a_failed_quarantine_says_so_once_and_delivers_every_good_event(
    spool_dir: Path, collector: Collector, cli_env: dict[str, str]
) -> None:
    (spool_dir / "quarantine").write_bytes(b"")
    before = [make_event() for _ in range(2)]
    after = [make_event() for _ in range(2)]
    write_batch(spool_dir, 1, before)
    corrupt = spool_dir / batch_name(2, 3)
    corrupt.write_bytes(b"\xff not json\n")
    write_batch(spool_dir, 3, after)
    result = replay(cli_env, spool_dir)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in error_lines(result) if line.startswith("error:")]
    assert len(errors) == 1, result.stdout
    assert corrupt.name in errors[0]
    assert "quarantine" in errors[0]
    assert "delivered 4, failed 0 (quarantined), left 3" in result.stdout
    assert result.returncode == 1
    assert sorted(run_ids(collector.events)) == sorted(e.run.runId for e in before + after)
    assert claim_files(spool_dir) == []
    assert corrupt.read_bytes() == b"\xff not json\n"


@pytest.mark.integration
def test_cli_replay_keeps_a_rejected_event_it_cannot_quarantine(
    spool_dir: Path, collector: Collector, cli_env: dict[str, str]
) -> None:
    (spool_dir / "quarantine").write_bytes(b"")
    events = [make_event() for _ in range(3)]
    write_batch(spool_dir, 1, events)
    collector.script([Answer(status=200), Answer(status=400), Answer(status=200)])
    result = replay(cli_env, spool_dir)
    errors = [line for line in error_lines(result) if line.startswith("error:")]
    assert len(errors) == 1, result.stdout
    assert "cannot quarantine 1 spooled event(s)" in errors[0]
    assert "delivered 2, failed 0 (quarantined), left 1" in result.stdout
    assert claim_files(spool_dir) == []
    assert run_ids([json.loads(r) for r in kept_records(spool_dir)]) == [events[1].run.runId]


def test_background_replay_with_a_failed_quarantine_logs_one_error_and_delivers_the_rest(
    spool_dir: Path, collector: Collector, make_transport: MakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    (spool_dir / "quarantine").write_bytes(b"")
    before, after = make_event(), make_event()
    write_batch(spool_dir, 1, [before])
    corrupt = spool_dir / batch_name(2, 3)
    corrupt.write_bytes(b"\xff not json\n")
    write_batch(spool_dir, 3, [after])
    with caplog.at_level(logging.WARNING):
        transport = make_transport(collector.url, spool_dir)
        live = emit_live(transport)
        assert collector.wait_for(3, timeout_s=5)
        assert wait_until(lambda: replayed(spool_dir, batch_name(3, 1)))
    assert sorted(run_ids(collector.events)) == sorted([live, before.run.runId, after.run.runId])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert corrupt.name in errors[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    assert claim_files(spool_dir) == []
    assert corrupt.is_file()


# -- the directory itself ------------------------------------------------------------------


@pytest.fixture
def foreign_dir(tmp_path: Path) -> Path:
    """A world-writable directory owned by another user (as left by someone else on a shared host)."""
    directory = tmp_path / "foreign"
    directory.mkdir()
    os.chown(directory, OTHER_UID, OTHER_UID)
    directory.chmod(0o777)
    return directory


@needs_root
def test_a_directory_owned_by_another_user_is_refused_and_left_unchanged(foreign_dir: Path) -> None:
    with pytest.raises(UntrustedDirectoryError, match=rf"{foreign_dir}.*uid {OTHER_UID}.*0777"):
        Spool(foreign_dir, BIG)
    assert stat.S_IMODE(foreign_dir.stat().st_mode) == 0o777


@needs_root
def test_the_emitter_runs_without_a_spool_it_cannot_trust(
    foreign_dir: Path, collector: Collector, make_transport: MakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        transport = make_transport(collector.url, foreign_dir)
    assert transport.spool is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    for part in (str(foreign_dir), f"uid {OTHER_UID}", "0777"):
        assert part in warnings[0]
    live = emit_live(transport)
    assert collector.wait_for(1, timeout_s=5)
    assert run_ids(collector.events) == [live]
    assert os.listdir(foreign_dir) == []


@needs_root
@pytest.mark.integration
def test_cli_replay_refuses_a_directory_owned_by_another_user(
    foreign_dir: Path, collector: Collector, cli_env: dict[str, str]
) -> None:
    planted = write_batch(foreign_dir, 1, [make_event(job="forged")])
    result = replay(cli_env, foreign_dir)
    assert result.returncode == 1
    assert error_lines(result) == [
        next(line for line in error_lines(result) if line.startswith("error: refusing the spool directory"))
    ], result.stdout + result.stderr
    assert f"uid {OTHER_UID}" in result.stdout
    assert "0777" in result.stdout
    assert collector.events == []
    assert planted.is_file()


def test_a_shared_sticky_directory_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """Like /tmp (root-owned 1777 as root; any 1777 directory): closing it would break its other users."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(UntrustedDirectoryError, match="sticky"):
        Spool(shared, BIG)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
