"""Where a process spools, and why: a configured directory, the Airflow default, or none.

Inside Airflow processes the spool is on by default, in ``$AIRFLOW_HOME/openlineage-spool``
(the Airflow plugin gives it to the transports it builds, and makes it the default of one
openlineage-python builds from config: ``transport.PROCESS_DEFAULTS``),
so a dead backend costs no events. ``emitter_spool_dir = off`` turns it off. Outside
Airflow an unset ``emitter_spool_dir`` means no spool. The CLI (``check``, ``replay``)
runs on Airflow hosts, so it looks where the Airflow processes there spool.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from openlineage_emitter.settings import SPOOL_OFF, EmitterSettings

#: The default spool directory's name under ``AIRFLOW_HOME``.
DEFAULT_DIR_NAME = "openlineage-spool"


def airflow_default_spool_dir(environ: Mapping[str, str]) -> str:
    """``$AIRFLOW_HOME/openlineage-spool``; ``AIRFLOW_HOME`` defaults to ``~/airflow`` as in Airflow."""
    home = environ.get("AIRFLOW_HOME") or "~/airflow"
    return str(Path(home).expanduser() / DEFAULT_DIR_NAME)


@attrs.frozen
class SpoolLocation:
    """The spool directory Airflow processes use (None: no spool), and why."""

    directory: str | None
    why: str
    default: bool = False


def locate(settings: EmitterSettings, source: str, environ: Mapping[str, str]) -> SpoolLocation:
    """Where Airflow processes with these settings spool.

    ``source``: where ``emitter_spool_dir`` came from, for the reason shown.
    """
    if settings.spool_dir == SPOOL_OFF:
        return SpoolLocation(None, f"off: emitter_spool_dir = off ({source})")
    if settings.spool_dir:
        return SpoolLocation(settings.spool_dir, f"configured: emitter_spool_dir ({source})")
    return SpoolLocation(
        airflow_default_spool_dir(environ),
        f"default in Airflow processes: $AIRFLOW_HOME/{DEFAULT_DIR_NAME} (emitter_spool_dir unset)",
        default=True,
    )


def make_private_dir(directory: str) -> None:
    """Create ``directory`` (mode 0700 whatever the umask) unless it exists; raises OSError.

    An existing directory is left as it is: whether it can be trusted is the spool's call.
    """
    path = Path(directory)
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process of the host made it first
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
