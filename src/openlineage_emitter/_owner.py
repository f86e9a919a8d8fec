"""Who holds a spool claim, in a form that survives PID reuse and shared directories.

An owner is ``<pid>.<start>.<host>``: the process id, the process's start time in clock
ticks since boot (``/proc/<pid>/stat`` field 22; ``0`` where there is no ``/proc``) and a
host token (host name and PID namespace). A PID reused by an unrelated process has
another start time; a PID from another host or container is not ours to test, so only
the claim's lease can free it.
"""

from __future__ import annotations

import functools
import os
import re
import socket

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = text[text.rfind(b")") + 2 :].split()
    try:
        return fields[19].decode("ascii")  # field 22 of the whole line
    except (IndexError, UnicodeDecodeError):
        return None


@functools.cache
def host_token() -> str:
    """This host (and PID namespace): PIDs are only comparable within one."""
    name = _UNSAFE.sub("_", socket.gethostname())[:40] or "host"
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return name
    digits = "".join(c for c in namespace if c.isdigit())
    return f"{name}_{digits}" if digits else name


@functools.cache
def _owner_of(pid: int) -> str:
    return f"{pid}.{process_start(pid) or '0'}.{host_token()}"


def current_owner() -> str:
    """This process's owner token (recomputed after a fork: the PID differs)."""
    return _owner_of(os.getpid())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_is_dead(owner: str) -> bool:
    """True only when the owner is known to be gone: unknown owners are left to the lease."""
    pid_text, _, rest = owner.partition(".")
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if not rest:  # the old format: a bare PID on this host
        return not _pid_alive(pid)
    start, _, host = rest.partition(".")
    if host != host_token():
        return False
    if not _pid_alive(pid):
        return True
    now = process_start(pid)
    return start != "0" and now is not None and now != start
