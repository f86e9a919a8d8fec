"""A durable spill directory: batches of records written atomically, claimed exclusively.

Layout (one directory, mode 0700; files 0600 — events can carry SQL and metadata)::

    <time_ns>-<pid>-<seq>-<count>.jsonl          a batch of ``count`` records, one per line
    <name>.claim-<pid>                           being replayed by process <pid>
    .tmp-...                                     being written (never read)
    quarantine/<name>                            unreadable or rejected; kept for a human

Delivery from a spool is at-least-once: a batch is removed only after its records
were delivered, and a process that dies mid-replay leaves a claim that another process
reclaims. This module knows nothing of events or emitters: records are bytes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import stat
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from openlineage_emitter._secrets import masked_logger

log = masked_logger(__name__)

_SUFFIX = ".jsonl"
_CLAIM = ".claim-"
_QUARANTINE = "quarantine"
#: A temporary file this old was left by a writer that died mid-write.
STALE_TMP_S = 60.0
#: Writes between two full rescans of the directory size (other processes write too).
RESCAN_EVERY = 256
#: Seconds between looks for claims whose owner died.
RECLAIM_EVERY_S = 30.0


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


def _write_file(path: Path, records: Sequence[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"\n".join(records) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


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
        """Records before ``index`` were delivered: give back the rest, in the batch's place."""
        rest = list(records[index:])
        if not rest:
            self.ack()
            return
        # Same name (same place in the order), fewer records: a later START must not
        # overtake the rest of this batch. Written aside first, then swapped in.
        base = self.name.rsplit("-", 1)[0]
        tmp = self.path.with_name(f".tmp-rest-{os.getpid()}-{self.name}")
        try:
            _write_file(tmp, rest)
            os.replace(tmp, self.path)
            self.name = f"{base}-{len(rest)}{_SUFFIX}"
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            # Delivered records will be delivered again: at-least-once beats losing the rest.
            log.warning("could not shorten spool batch %s (%s); keeping it whole", self.name, exc)
        self.release()

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
        self._bytes_estimate = 0
        self._writes_since_scan = 0
        self._next_reclaim = 0.0
        self._ensure_dir()
        self._remove_stale_tmp()
        self._rescan_and_evict(keep=None)
        os.register_at_fork(after_in_child=functools.partial(_reinit_child, weakref.ref(self)))

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time would never be released in the child.
        self._lock = threading.Lock()

    def _ensure_dir(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode != 0o700:
            # mkdir's mode is filtered by the umask. A directory owned by someone else
            # cannot be changed; that is the operator's choice, not an error.
            with contextlib.suppress(PermissionError):
                os.chmod(self.directory, 0o700)

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
        """Write one batch durably (temp file, fsync, atomic rename). Never raises."""
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
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
                evicted += _count_of(path.name)
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
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(_SUFFIX) and n[0] != ".")
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names]

    def pending(self) -> tuple[int, int]:
        """(batches, records) waiting to be replayed, claimed ones excluded."""
        batches = self._batches()
        return len(batches), sum(_count_of(p.name) for p in batches)

    def claim(self) -> Claim | None:
        """Claim the oldest unclaimed batch by atomic rename; None if there is none."""
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + RECLAIM_EVERY_S
            self.reclaim_orphans()
        for path in self._batches():
            claimed = path.with_name(f"{path.name}{_CLAIM}{os.getpid()}")
            try:
                os.replace(path, claimed)  # only one process wins this rename
            except FileNotFoundError:
                continue  # another process claimed it first
            return Claim(self, claimed, path.name)
        return None

    def reclaim_orphans(self) -> int:
        """Give back claims whose owning process is dead. Returns how many."""
        reclaimed = 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        for name in names:
            if _CLAIM not in name or name.startswith("."):
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
        try:
            self.quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_file(self.quarantine_dir / self._name(len(records)), records)
        except OSError as exc:
            log.warning("could not quarantine %d spooled event(s): %s", len(records), exc)
            return
        self.count_quarantined(len(records))
        log.warning("%d spooled event(s) quarantined (%s) in %s", len(records), reason, self.quarantine_dir)

    def count_quarantined(self, records: int) -> None:
        with self._lock:
            self.quarantined += records


def _reinit_child(ref: weakref.ref[Spool]) -> None:
    spool = ref()
    if spool is not None:
        spool._after_fork()
