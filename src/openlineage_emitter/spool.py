"""A durable spill directory: batches of records written atomically, claimed exclusively.

Layout (one directory, mode 0700; files 0600 — events can carry SQL and metadata)::

    <time_ns>-<pid>-<seq>-<count>.jsonl          a batch of ``count`` framed records (see _records)
    <name>.claim-<pid>.<start>.<host>            being replayed by that process (see _owner)
    <name>.progress                              how many of its records are finished with
    .tmp-...                                     being written (never read)
    quarantine/<name>                            unreadable or rejected; kept for a human

The directory is trusted only if this process's user owns it and nobody else can write
into it; only regular files are read, never through a symlink, never blocking, never
more than ``read_limit`` bytes at once (see ``_safefs``).

Delivery from a spool is at-least-once: a batch is removed only after its records
were delivered; replay progress is fsynced after every record, so a process killed
mid-replay leaves a claim that another process reclaims and resumes after the last
finished record. This module knows nothing of events or emitters: records are bytes.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from openlineage_emitter import _safefs
from openlineage_emitter._forksafe import reinit_in_child
from openlineage_emitter._owner import current_owner, owner_is_dead
from openlineage_emitter._records import frame, frame_all, parse_records
from openlineage_emitter._secrets import masked_logger

log = masked_logger(__name__)

_SUFFIX = ".jsonl"
_CLAIM = ".claim-"
_PROGRESS = ".progress"
_QUARANTINE = "quarantine"
#: A temporary file this old was left by a writer that died mid-write.
STALE_TMP_S = 60.0
#: Writes between two full rescans of the directory size (other processes write too).
RESCAN_EVERY = 256
#: Seconds between looks for claims whose owner died.
RECLAIM_EVERY_S = 30.0
#: One batch read takes at most max(max_bytes, this) bytes: the spool never holds more than
#: ``max_bytes`` but for the one batch just written, and a bigger file is not one of ours.
READ_LIMIT_FLOOR = 64 * 1024 * 1024
#: A claim with no replay progress for this long is reclaimed even if its owner looks
#: alive (a hung process, or an owner on another host sharing the directory).
CLAIM_LEASE_S = 600.0


class SpoolError(Exception):
    """A spool file could not be read as records."""


class QuarantineError(OSError):
    """Records could not be set aside in ``quarantine/``: they were left in the spool instead.

    The batch keeps its place in the directory (a later replay, once a human fixed
    ``quarantine/``, tries again) but this ``Spool`` does not claim it again.
    """


def _count_of(name: str) -> int:
    stem = name.split(_SUFFIX, 1)[0]
    try:
        return int(stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte: ``os.write`` may write fewer (a nearly full disk, a signal)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "the disk took no more bytes")
        view = view[written:]


def _write_file(path: Path, records: Sequence[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, frame_all(records))
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_progress(path: Path) -> tuple[int, int]:
    """(byte offset, records) finished with in a batch, per its progress file; (0, 0) if none.

    Entries are framed ``<offset> <records>``. The largest intact entry counts: progress
    only grows, a torn last entry falls back to the one before (the record in flight is
    sent again), and two owners of one claim (a lease ran out) cannot move it backwards.
    The offset, not the record number, says where to resume: it stays right even if
    bytes before it are damaged later.
    """
    try:
        data = _safefs.read_regular(path, READ_LIMIT_FLOOR)
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:  # a symlink, FIFO, ... planted under its name: start over, never block
        log.warning("spool progress file %s ignored: %s", path, exc)
        return 0, 0
    entries = []
    for entry in parse_records(data).records:
        offset, _, done = entry.partition(b" ")
        if offset.isdigit() and done.isdigit():
            entries.append((int(offset), int(done)))
    return max(entries, default=(0, 0))


class Claim:
    """One batch this process owns until it calls ``ack``, ``release``, ``keep_from`` or ``quarantine``."""

    def __init__(self, spool: Spool, path: Path, original: str) -> None:
        self._spool = spool
        self.path = path
        self.name = original
        self._progress_path = path.with_name(original + _PROGRESS)
        self._progress_fd: int | None = None
        self._ends: list[int] = []  # where each record of records() ends in the file
        self._skipped = 0  # records finished with before this claim (durable progress)
        self._marked = 0  # records of records() whose progress is on disk

    @property
    def count(self) -> int:
        return _count_of(self.name)

    def records(self) -> list[bytes]:
        """The batch's records not yet finished with; ``SpoolError`` if none is readable.

        Damaged bytes between intact records are copied to the quarantine and skipped.
        """
        try:
            data = _safefs.read_regular(self.path, self._spool.read_limit)
        except OSError as exc:
            raise SpoolError(f"cannot read {self.path.name}: {exc}") from exc
        parsed = parse_records(data)
        if not parsed.records:
            raise SpoolError(f"{self.path.name} {'has no intact record' if data.strip() else 'is empty'}")
        if parsed.damaged:
            lost = max(self.count - len(parsed.records), len(parsed.damaged))
            self._spool.quarantine_damaged(self.name, parsed.damaged_bytes(data), lost)
        offset, self._skipped = _read_progress(self._progress_path)
        first = next((i for i, end in enumerate(parsed.ends) if end > offset), len(parsed.ends))
        self._ends = parsed.ends[first:]
        self._marked = 0
        return parsed.records[first:]

    def mark_done(self, finished: int) -> None:
        """The first ``finished`` records of :meth:`records` are finished with: say so durably.

        Fsynced before it returns, so a process killed now sends at most the record in
        flight again. Never raises: without progress, at-least-once still holds.
        """
        if finished <= self._marked or finished > len(self._ends):
            return
        entry = frame(b"%d %d" % (self._ends[finished - 1], self._skipped + finished))
        try:
            if self._progress_fd is None:
                # Never through a planted symlink, never blocking on a FIFO.
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                self._progress_fd = os.open(self._progress_path, flags, 0o600)
                self._spool._fsync_dir()  # the new name must survive a crash too
            _write_all(self._progress_fd, entry)
            os.fsync(self._progress_fd)
            self._marked = finished
        except OSError as exc:
            log.warning("could not record replay progress for %s: %s", self.name, exc)

    def _close_progress(self, *, remove: bool) -> None:
        if self._progress_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._progress_fd)
            self._progress_fd = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self._progress_path.unlink()

    def ack(self) -> None:
        """All records delivered: remove the batch (then its progress: a crash between
        leaves only a stray progress file, which is cleaned up later)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._close_progress(remove=True)

    def release(self) -> None:
        """Give the batch back for a later replay, with its progress so far."""
        self._close_progress(remove=False)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, self.path.with_name(self.name))

    def keep_from(self, records: Sequence[bytes], index: int) -> None:
        """Records before ``index`` were finished with: give back the rest, in the batch's place.

        The file stays as it is (same name, same place in the order: a later START must
        not overtake the rest); its progress says where the next replay starts.
        """
        if index >= len(records):
            self.ack()
            return
        if index > 0:
            self.mark_done(index)
        self.release()

    def quarantine(self, reason: str) -> None:
        """Move the batch aside for a human; it is never retried.

        ``QuarantineError`` if ``quarantine/`` cannot take it: the batch is then given back
        under its name (never left claimed, never deleted) and this spool skips it.
        """
        spool = self._spool
        try:
            dir_fd = _safefs.open_private_subdir(spool.directory, _QUARANTINE)
            try:
                target = _safefs.free_name(dir_fd, self.name)
                os.replace(self.path, target, dst_dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
            self._close_progress(remove=True)
        except FileNotFoundError:
            return  # the claim is gone (a human removed it): nothing left to set aside
        except OSError as exc:
            self.release()
            spool.left_in_place(self.name, self.count)
            raise QuarantineError(
                f"cannot quarantine spool file {self.name} ({reason}): {_explain(exc)}; "
                f"left it in {spool.directory}"
            ) from exc
        spool.count_quarantined(self.count or 1)
        log.warning("spool file %s quarantined (%s): %s", self.name, reason, spool.quarantine_dir / target)


class Spool:
    """``write`` batches of records; ``claim`` the oldest unclaimed batch."""

    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, *, lease_s: float = CLAIM_LEASE_S
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.lease_s = lease_s
        self.quarantine_dir = self.directory / _QUARANTINE
        self.read_limit = max(max_bytes, READ_LIMIT_FLOOR)
        #: Batches that could not be quarantined: never claimed again by this object.
        self._in_place: set[str] = set()
        self.in_place_records = 0
        self._ignored: set[str] = set()  # non-regular entries already warned about
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.written = 0
        self.evicted = 0
        self.quarantined = 0
        self._bytes_estimate = 0
        self._writes_since_scan = 0
        self._next_reclaim = 0.0
        self._ensure_dir()
        self._remove_stale_tmp()
        self._rescan_and_evict(keep=None)
        reinit_in_child(self._after_fork)

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time would never be released in the child.
        self._lock = threading.Lock()

    def _ensure_dir(self) -> None:
        # Whoever else can write here could move batches out or plant forged events:
        # _safefs.UntrustedDirectoryError (an OSError) rather than a spool nobody can vouch for.
        _safefs.ensure_private_dir(self.directory)

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.directory):
                if not name.startswith(".tmp-"):
                    continue
                path = self.directory / name
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime > STALE_TMP_S:
                        path.unlink()

    # -- writing ---------------------------------------------------------------------

    def _name(self, count: int) -> str:
        return f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):08d}-{count}{_SUFFIX}"

    def write(self, records: Sequence[bytes]) -> bool:
        """Write one batch durably; True only once it is whole and fsynced. Never raises.

        Temp file (every byte written, fsynced), atomic rename, directory fsynced: a
        crash at any point leaves the whole batch or none of it.
        """
        if not records:
            return True
        name = self._name(len(records))
        tmp = self.directory / f".tmp-{name}"
        try:
            try:
                _write_file(tmp, records)
            except FileNotFoundError:  # the directory was removed under us
                self._ensure_dir()
                _write_file(tmp, records)
            os.replace(tmp, self.directory / name)
            self._fsync_dir()
            size = (self.directory / name).stat().st_size
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("could not write %d event(s) to the spool %s: %s", len(records), self.directory, exc)
            return False
        with self._lock:
            self.written += len(records)
            self._bytes_estimate += size
            self._writes_since_scan += 1
            rescan = self._bytes_estimate > self.max_bytes or self._writes_since_scan >= RESCAN_EVERY
        if rescan:
            self._rescan_and_evict(keep=name)
        return True

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rescan_and_evict(self, keep: str | None) -> None:
        """Re-measure the spool and delete the oldest batches past the bound.

        The batch just written (``keep``) is never evicted, even if it alone exceeds
        the bound: evicting what was just saved would make the write a lie.
        """
        sizes: list[tuple[Path, int]] = []
        total = 0
        for path in self._batches():
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                sizes.append((path, size))
                total += size
        evicted = 0
        for path, size in sizes:  # oldest first
            if total <= self.max_bytes:
                break
            if path.name == keep:
                continue
            # Gone either way: deleted here, or by another writer evicting at the same time
            # (lanes, other processes). Not counting it as gone would evict newer batches.
            total -= size
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                evicted += _count_of(path.name)
            with contextlib.suppress(FileNotFoundError):
                path.with_name(path.name + _PROGRESS).unlink()
        with self._lock:
            self._bytes_estimate = total
            self._writes_since_scan = 0
            self.evicted += evicted
        if evicted:
            log.warning(
                "spool %s is over emitter_spool_max_bytes (%d): deleted the %d oldest event(s)",
                self.directory,
                self.max_bytes,
                evicted,
            )

    # -- reading ---------------------------------------------------------------------

    def _batches(self) -> list[Path]:
        """Batch files, oldest first: regular files only (a symlink, FIFO or device is never a batch)."""
        names = []
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.endswith(_SUFFIX) or name[0] == "." or name in self._in_place:
                        continue
                    if _safefs.is_regular(entry):
                        names.append(name)
                    elif name not in self._ignored:
                        self._ignored.add(name)
                        log.warning(
                            "spool entry %s is %s: ignored, never read",
                            self.directory / name,
                            _safefs.entry_kind(entry),
                        )
        except FileNotFoundError:
            return []
        return [self.directory / n for n in sorted(names)]

    def pending(self) -> tuple[int, int]:
        """(batches, records) waiting to be replayed, claimed ones and finished records excluded."""
        batches = self._batches()
        records = 0
        for path in batches:
            count = _count_of(path.name)
            progress = path.with_name(path.name + _PROGRESS)
            # Most batches have no progress file: only interrupted replays leave one.
            records += max(0, count - _read_progress(progress)[1])
        return len(batches), records

    def claim(self) -> Claim | None:
        """Claim the oldest unclaimed batch by atomic rename; None if there is none."""
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + RECLAIM_EVERY_S
            self.reclaim_orphans()
        for path in self._batches():
            claimed = path.with_name(f"{path.name}{_CLAIM}{current_owner()}")
            try:
                os.replace(path, claimed)  # only one process wins this rename
            except FileNotFoundError:
                continue  # another process claimed it first
            # The lease runs from now (the batch's own mtime is when it was written).
            with contextlib.suppress(OSError):
                os.utime(claimed)
            return Claim(self, claimed, path.name)
        return None

    def _lease_expired(self, claim_name: str, original: str, now: float) -> bool:
        latest = 0.0
        for name in (claim_name, original + _PROGRESS):
            with contextlib.suppress(FileNotFoundError):
                latest = max(latest, (self.directory / name).stat().st_mtime)
        return now - latest > self.lease_s

    def reclaim_orphans(self) -> int:
        """Give back claims whose owner is dead or whose lease ran out. Returns how many."""
        reclaimed = 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        now = time.time()
        for name in names:
            if _CLAIM not in name or name.startswith("."):
                continue
            original, _, owner = name.rpartition(_CLAIM)
            if owner_is_dead(owner):
                why = ""
            elif self._lease_expired(name, original, now):
                why = f"no progress for {self.lease_s:g}s"
            else:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.directory / name, self.directory / original)
                reclaimed += 1
                if why:
                    log.warning("spool claim on %s by %s reclaimed: %s", original, owner, why)
        self._remove_stray_progress(names, now)
        return reclaimed

    def _remove_stray_progress(self, names: list[str], now: float) -> None:
        """Progress files whose batch is gone (a crash between ack's two unlinks)."""
        batches = {n.rpartition(_CLAIM)[0] if _CLAIM in n else n for n in names}
        for name in names:
            if not name.endswith(_PROGRESS) or name[: -len(_PROGRESS)] in batches:
                continue
            path = self.directory / name
            # Old enough that no replayer can still be writing it.
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > self.lease_s:
                    path.unlink()

    def quarantine_records(self, records: Sequence[bytes], reason: str) -> None:
        """Set single records aside (e.g. ones the backend rejects) for a human.

        ``QuarantineError`` if ``quarantine/`` cannot take them: they are then written
        back to the spool as a batch of their own that this spool does not claim again
        (lost only if that write fails too, and the error says so).
        """
        if not records:
            return
        name = self._name(len(records))
        try:
            dir_fd = _safefs.open_private_subdir(self.directory, _QUARANTINE)
            os.close(dir_fd)
            # Checked just above: a real directory of ours, so the path cannot lead outside
            # (nobody else can write into the spool to swap it), and O_EXCL never follows a link.
            _write_file(self.quarantine_dir / name, records)
        except OSError as exc:
            kept = self._keep_in_place(name, records)
            where = f"left them in {self.directory}" if kept else "could not keep them in the spool: lost"
            raise QuarantineError(
                f"cannot quarantine {len(records)} spooled event(s) ({reason}): {_explain(exc)}; {where}"
            ) from exc
        self.count_quarantined(len(records))
        log.warning("%d spooled event(s) quarantined (%s) in %s", len(records), reason, self.quarantine_dir)

    def _keep_in_place(self, name: str, records: Sequence[bytes]) -> bool:
        # Written like a batch (temporary name, then rename) so that a later replay, once
        # quarantine/ is fixed, retries them; but not counted as spooled events.
        tmp = self.directory / f".tmp-{name}"
        try:
            _write_file(tmp, records)
            os.replace(tmp, self.directory / name)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        self.left_in_place(name, len(records))
        return True

    def left_in_place(self, name: str, records: int) -> None:
        """``name`` could not be quarantined and stays in the spool: do not claim it again."""
        with self._lock:
            self._in_place.add(name)
            self.in_place_records += records

    def quarantine_damaged(self, name: str, damaged: bytes, records: int) -> None:
        """Keep the damaged bytes of batch ``name`` for a human, once (a batch read again
        after a crash does not copy them twice)."""
        target = f"{name}.damaged"
        try:
            dir_fd = _safefs.open_private_subdir(self.directory, _QUARANTINE)
        except OSError as exc:
            log.warning("could not quarantine the damaged part of spool batch %s: %s", name, _explain(exc))
            return
        try:
            # O_EXCL|O_NOFOLLOW in a directory checked to be ours: never written through a link.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            return
        except OSError as exc:
            log.warning("could not quarantine the damaged part of spool batch %s: %s", name, exc)
            return
        finally:
            os.close(dir_fd)
        try:
            _write_all(fd, damaged)
            os.fsync(fd)
        except OSError as exc:
            log.warning("could not quarantine the damaged part of spool batch %s: %s", name, exc)
        finally:
            os.close(fd)
        self.count_quarantined(records)
        log.warning(
            "spool batch %s is damaged: %d byte(s) quarantined in %s, its intact events are replayed",
            name,
            len(damaged),
            self.quarantine_dir / target,
        )

    def count_quarantined(self, records: int) -> None:
        with self._lock:
            self.quarantined += records


def _explain(exc: OSError) -> str:
    if isinstance(exc, _safefs.UntrustedDirectoryError) or not exc.strerror:
        return str(exc)
    return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror


class Usage(NamedTuple):
    """What waits in a spool directory (see :func:`usage`)."""

    bytes: int  #: size of the batch files, claimed ones included
    batches: int  #: batches not yet delivered, claimed (being replayed) ones included
    events: int  #: their records not yet finished with
    claimed: int  #: of ``batches``, being replayed by some process now
    oldest_written_ns: int | None  #: when the oldest of them was written (epoch ns)


def usage(directory: str | os.PathLike[str]) -> Usage:
    """What waits in ``directory``, read only: nothing is created, claimed or evicted.

    For ``openlineage-emitter check``. A directory that does not exist holds nothing.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return Usage(0, 0, 0, 0, None)
    size = batches = events = claimed = 0
    oldest: int | None = None
    for name in names:
        if name.startswith("."):
            continue
        original = name.rpartition(_CLAIM)[0] if _CLAIM in name else name
        if not original.endswith(_SUFFIX):
            continue
        path = Path(directory, name)
        with contextlib.suppress(FileNotFoundError):
            size += path.stat().st_size
            batches += 1
            claimed += original != name
            finished = _read_progress(path.with_name(original + _PROGRESS))[1]
            events += max(0, _count_of(original) - finished)
            written = original.split("-", 1)[0]
            if written.isdigit():
                oldest = int(written) if oldest is None else min(oldest, int(written))
    return Usage(size, batches, events, claimed, oldest)
