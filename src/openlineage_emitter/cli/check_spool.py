"""``check``'s spool lines: where the spool of this host's Airflow processes is, why, how full."""

from __future__ import annotations

import time
from collections.abc import Mapping

from openlineage_emitter._spool_location import locate
from openlineage_emitter.config import LoadedConfig
from openlineage_emitter.spool import usage


def spool_lines(loaded: LoadedConfig, environ: Mapping[str, str], *, now_ns: int | None = None) -> list[str]:
    settings = loaded.config.emitter
    location = locate(settings, loaded.sources.get("emitter_spool_dir", "default"), environ)
    if location.directory is None:
        return [f"spool: none ({location.why}); events the backend cannot take are dropped"]
    lines = [f"spool: {location.directory} ({location.why})"]
    cap = f"cap {_size(settings.spool_max_bytes)} (emitter_spool_max_bytes)"
    try:
        held = usage(location.directory)
    except OSError as exc:  # not a directory, not readable by this user, ...
        lines.append(f"spool holds: cannot be read ({exc.strerror or exc}); {cap}")
        return lines
    if held.batches == 0:
        lines.append(f"spool holds: nothing; {cap}")
        return lines
    now_ns = time.time_ns() if now_ns is None else now_ns
    oldest = ""
    if held.oldest_written_ns is not None:
        oldest = f", oldest written {_age(now_ns - held.oldest_written_ns)} ago"
    replaying = f" ({held.claimed} being replayed now)" if held.claimed else ""
    lines.append(
        f"spool holds: {_size(held.bytes)} of {cap}, {held.events} event(s) pending in "
        f"{held.batches} batch(es){replaying}{oldest}"
    )
    return lines


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _age(ns: int) -> str:
    seconds = max(0, ns) // 1_000_000_000
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"
