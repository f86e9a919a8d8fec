"""A durable spill directory: batches of records written atomically, claimed exclusively.

Layout (one directory, mode 0700; files 0600 — events can carry SQL and metadata)::

    <time_ns>-<pid>-<seq>-<count>.jsonl          a batch of ``count`` records, one per line
    <name>.claim-<pid>                           being replayed by process <pid>
    .tmp-...                                     being written (never read)
    quarantine/<name>                            unreadable; kept for a human, never retried

Delivery from a spool is at-least-once: a batch is removed only after its records
were delivered, and a process that dies mid-replay leaves a claim that another process
reclaims. This module knows nothing of events or emitters: records are bytes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
_CLAIM = ".claim-"
_QUARANTINE = "quarantine"


class SpoolError(Exception):
    """A spool file could not be read as records."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _count_of(name: str) -> int:
    stem = name.split(_SUFFIX, 1)[0]
    try:
        return int(stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


class Claim:
    """One batch this process owns until it calls ``ack``, ``release``, ``keep_from`` or ``quarantine``."""

    def __init__(self, spool: Spool, path: Path, original: str) -> None:
        self._spool = spool
        self.path = path
        self.name = original

    @property
    def count(self) -> int:
        return _count_of(self.name)

    def records(self) -> list[bytes]:
        """The batch's records; ``SpoolError`` if the file is unreadable."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise SpoolError(f"cannot read {self.path.name}: {exc}") from exc
        lines = [line for line in data.split(b"\n") if line.strip()]
        if not lines:
            raise SpoolError(f"{self.path.name} is empty")
        return lines

    def ack(self) -> None:
        """All records delivered: remove the batch."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def release(self) -> None:
        """Nothing delivered: give the batch back for a later replay."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, self.path.with_name(self.name))

    def keep_from(self, records: Sequence[bytes], index: int) -> None:
        """Records before ``index`` were delivered: keep the rest, drop the batch."""
        rest = list(records[index:])
        if rest:
            self._spool.write(rest, _count_as_spooled=False)
        self.ack()

    def quarantine(self, reason: str) -> None:
        """Move the batch aside for a human; it is never retried."""
        target = self._spool.quarantine_dir / self.name
        with contextlib.suppress(FileNotFoundError):
            self._spool.quarantine_dir.mkdir(mode=0o700, exist_ok=True)
            os.replace(self.path, target)
            self._spool.count_quarantined(self.count or 1)
            log.warning("spool file %s quarantined (%s): %s", self.name, reason, target)


class Spool:
    """``write`` batches of records; ``claim`` the oldest unclaimed batch."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.quarantine_dir = self.directory / _QUARANTINE
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.written = 0
        self.evicted = 0
        self.quarantined = 0
        self._ensure_dir()

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        os.chmod(self.directory, 0o700)

    # -- writing ---------------------------------------------------------------------

    def write(self, records: Sequence[bytes], *, _count_as_spooled: bool = True) -> bool:
        """Write one batch durably (temp file, fsync, atomic rename). Never raises."""
        if not records:
            return True
        pid = os.getpid()
        name = f"{time.time_ns():020d}-{pid}-{next(self._seq)}-{len(records)}{_SUFFIX}"
        tmp = self.directory / f".tmp-{name}"
        try:
            self._ensure_dir()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"\n".join(records) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / name)
            self._fsync_dir()
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("could not write %d event(s) to the spool %s: %s", len(records), self.directory, exc)
            return False
        if _count_as_spooled:
            with self._lock:
                self.written += len(records)
        self._enforce_bound()
        return True

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _enforce_bound(self) -> None:
        files = self._batches()
        total = 0
        sizes: list[tuple[Path, int]] = []
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                sizes.append((path, size))
                total += size
        evicted = 0
        for path, size in sizes:  # oldest first
            if total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
                evicted += _count_of(path.name)
        if evicted:
            with self._lock:
                self.evicted += evicted
            log.warning(
                "spool %s is over emitter_spool_max_bytes (%d): deleted the %d oldest event(s)",
                self.directory,
                self.max_bytes,
                evicted,
            )

    # -- reading ---------------------------------------------------------------------

    def _batches(self) -> list[Path]:
        try:
            names = sorted(
                n for n in os.listdir(self.directory) if n.endswith(_SUFFIX) and not n.startswith(".")
            )
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names]

    def pending(self) -> tuple[int, int]:
        """(batches, records) waiting to be replayed, claimed ones excluded."""
        batches = self._batches()
        return len(batches), sum(_count_of(p.name) for p in batches)

    def claim(self) -> Claim | None:
        """Claim the oldest unclaimed batch by atomic rename; None if there is none."""
        for attempt in range(2):
            for path in self._batches():
                claimed = path.with_name(f"{path.name}{_CLAIM}{os.getpid()}")
                try:
                    os.replace(path, claimed)  # only one process wins this rename
                except FileNotFoundError:
                    continue  # another process claimed it first
                return Claim(self, claimed, path.name)
            if attempt == 0 and not self.reclaim_orphans():
                return None
        return None

    def reclaim_orphans(self) -> int:
        """Give back claims whose owning process is dead. Returns how many."""
        reclaimed = 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        for name in names:
            if _CLAIM not in name:
                continue
            original, _, pid_text = name.rpartition(_CLAIM)
            if not pid_text.isdigit() or _pid_alive(int(pid_text)):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.directory / name, self.directory / original)
                reclaimed += 1
        return reclaimed

    def quarantine_records(self, records: Sequence[bytes], reason: str) -> None:
        """Set single records aside (e.g. ones the backend rejects) for a human."""
        if not records:
            return
        self.quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq)}-{len(records)}{_SUFFIX}"
        fd = os.open(self.quarantine_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\n".join(records) + b"\n")
        finally:
            os.close(fd)
        self.count_quarantined(len(records))
        log.warning("%d spooled event(s) quarantined (%s): %s", len(records), reason, name)

    def count_quarantined(self, records: int) -> None:
        with self._lock:
            self.quarantined += records
