"""File-system primitives for a directory this process owns but others may have tampered with.

The spool lives on shared hosts. Whoever can write into it (or into a directory it
trusts) could make the package read a file outside it (a symlink), stall on a read
(a FIFO), exhaust memory (a link to ``/dev/zero``) or write outside it (a symlinked
subdirectory). These helpers refuse all of that: directories are trusted only when
owned by this process's effective user and closed to group and others, and files are
opened without following links, without blocking, and read only if regular and small
enough.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from pathlib import Path

#: Open flags for reading a file that must never block, follow a link or become a tty.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CHUNK = 1024 * 1024


class UntrustedDirectoryError(OSError):
    """A directory this process must not use: someone else owns it or can write into it."""


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "of an unknown type"


def _check_private(fd: int, path: Path) -> None:
    """``UntrustedDirectoryError`` unless the open directory ``fd`` is ours and 0700 (made so if possible)."""
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    described = f"{path} (owner {_owner(st.st_uid)}, mode {mode:04o})"
    if st.st_uid != os.geteuid():
        # Its owner can move batches out or plant forged events whatever its mode says.
        raise UntrustedDirectoryError(
            f"{described} is not owned by this process's user {_owner(os.geteuid())}: not trusted"
        )
    if mode == 0o700:
        return
    open_to_others = bool(mode & (stat.S_IWGRP | stat.S_IWOTH))
    if open_to_others and mode & stat.S_ISVTX:
        # A sticky, shared directory (like /tmp) belongs to everyone who uses it:
        # closing it would break them, and using it open lets them tamper.
        raise UntrustedDirectoryError(f"{described} is a shared sticky directory: not trusted")
    try:
        os.fchmod(fd, 0o700)  # mkdir's mode is filtered by the umask; an old directory may be open
    except OSError as exc:
        if open_to_others:
            raise UntrustedDirectoryError(
                f"{described} is writable by group or others and could not be made 0700 ({exc.strerror}): "
                "not trusted"
            ) from exc
        # Readable by others but writable only by us (e.g. a read-only file system):
        # nothing can be planted, so it is still usable.


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (0700) if missing; raise ``UntrustedDirectoryError`` if it cannot be trusted.

    ``path`` itself may be a symlink (the operator chose it); what it points to is checked.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, _DIR_FLAGS)
    try:
        _check_private(fd, path)
    finally:
        os.close(fd)


def open_private_subdir(parent: Path, name: str) -> int:
    """An fd on ``parent/name``, created 0700 if missing; never through a symlink.

    Raises ``UntrustedDirectoryError`` if it is a symlink, not a directory, or not private.
    The caller closes the fd.
    """
    path = parent / name
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        fd = os.open(path, _DIR_FLAGS | os.O_NOFOLLOW)
    except OSError as exc:
        try:
            kind = _kind(os.lstat(path).st_mode)
        except OSError:
            kind = exc.strerror or "unusable"
        raise UntrustedDirectoryError(f"{path} is {kind}, not a directory") from exc
    try:
        _check_private(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def free_name(dir_fd: int, name: str) -> str:
    """``name``, or ``name.1``, ``name.2``, ... : the first that does not exist in ``dir_fd``.

    Moving a file into a directory must not replace what a human has yet to look at.
    """
    candidate = name
    for n in range(1, 1000):
        try:
            os.lstat(candidate, dir_fd=dir_fd)
        except FileNotFoundError:
            return candidate
        candidate = f"{name}.{n}"
    raise FileExistsError(f"{name} and its next 999 numbered names already exist")


def is_regular(entry: os.DirEntry[str]) -> bool:
    """A regular file (from the directory entry's type, never following a symlink)."""
    return entry.is_file(follow_symlinks=False)


def entry_kind(entry: os.DirEntry[str]) -> str:
    try:
        return _kind(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return "gone"


def read_regular(path: Path, limit: int) -> bytes:
    """The whole content of ``path``, if it is a regular file of at most ``limit`` bytes.

    Never follows a symlink, never blocks (a FIFO is refused, not waited on), never reads
    more than ``limit + 1`` bytes. Raises ``OSError`` with a clear message otherwise.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise OSError(exc.errno, "a symlink: not read") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{_kind(st.st_mode)}: not read")
        if st.st_size > limit:
            raise OSError(f"{st.st_size} bytes, over the {limit}-byte limit of one read: not read")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may grow after fstat: read at most limit + 1
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(f"over the {limit}-byte limit of one read: not read")
        return b"".join(chunks)
    finally:
        os.close(fd)
