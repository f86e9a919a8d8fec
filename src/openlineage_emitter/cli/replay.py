"""``openlineage-emitter replay``: drain a spool to the configured transport."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from openlineage_emitter._batching import SendMany, batch_sender_for, events_per_call
from openlineage_emitter._caller import TimedCaller
from openlineage_emitter._replayer import Replayer, Sending
from openlineage_emitter._safefs import UntrustedDirectoryError
from openlineage_emitter._spool_location import locate
from openlineage_emitter.cli.check import CheckFailed, build_transport
from openlineage_emitter.cli.client_config import NO_TRANSPORT, choose_transport, fail
from openlineage_emitter.config import load_config_with_sources
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.retry import classify
from openlineage_emitter.settings import EmitterSettings
from openlineage_emitter.spool import Spool


def run_replay(console: Console, spool_dir: str | None) -> int:
    try:
        loaded = load_config_with_sources()
        choice = choose_transport(loaded)
    except (ConfigError, ValueError) as exc:
        return fail(console, str(exc))
    settings = loaded.config.emitter
    # Without --spool-dir: where this host's Airflow processes spool (the default too).
    location = locate(settings, loaded.sources.get("emitter_spool_dir", "default"), os.environ)
    directory = spool_dir or location.directory
    if not directory:
        return fail(console, f"no spool ({location.why}): pass --spool-dir")
    if not Path(directory).is_dir():
        if not spool_dir and location.default:
            # Nothing was ever spooled on this host: not an error.
            console.print(f"nothing to replay: {directory} does not exist", markup=False, highlight=False)
            return 0
        return fail(console, f"spool directory {directory} does not exist")
    if choice.config is None:
        return fail(console, NO_TRANSPORT)
    try:
        sender = build_transport(choice.config, settings)
    except CheckFailed as exc:
        return fail(console, str(exc))

    try:
        spool = Spool(directory, settings.spool_max_bytes)
    except UntrustedDirectoryError as exc:
        sender.transport.close(0)
        return fail(console, f"refusing the spool directory: {exc}")
    spool.reclaim_orphans()
    # Synchronous delivery (never an enqueue), so a batch is acked only once the backend
    # answered for every record; with the sender's settings, which are a configured
    # ThreadedTransport's own, its full retry policy included. Through the http batch
    # endpoint when ``emitter_http_batch`` is on (``batch_sender_for``), else one by one.
    settings = sender.settings
    many = batch_sender_for(sender.transport, settings)
    send, chunk = _sending(sender.send, many, settings)
    _, total = spool.pending()
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("replay", total=total)
        drained = Replayer(
            spool,
            Sending(
                send,
                chunk,
                on_progress=lambda step: progress.advance(
                    task, step.delivered + step.rejected + step.set_aside
                ),
            ),
            retrying=settings.retry.retrying(),
            on_error=lambda message: fail(progress.console, message),
        ).drain()
    _, left = spool.pending()
    # Every record set aside: refused ones and the unreadable part of damaged batches.
    failed = spool.quarantined
    left += spool.in_place_records  # not quarantined, still in the spool
    delivered = drained.delivered
    unavailable = drained.unavailable
    stopped = f"backend unavailable ({classify(unavailable).reason})" if unavailable is not None else ""
    sender.transport.close(0)
    summary = f"delivered {delivered}, failed {failed} (quarantined), left {left}"
    console.print(
        f"{summary}; stopped: {stopped}" if stopped else summary,
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0 if left == 0 and failed == 0 else 1


def _sending(
    send: Callable[[Any], object], many: SendMany | None, settings: EmitterSettings
) -> tuple[SendMany, int]:
    """How replay sends (and how many events per call): each call bounded by the call timeout."""
    if many is None:
        one = TimedCaller(send, max_abandoned=1, name="openlineage-emitter-replay")
        return (lambda events: [one.call(events[0], settings.call_timeout_s)]), 1
    batch = TimedCaller(many, max_abandoned=1, name="openlineage-emitter-replay")

    def send_many(events: Sequence[Any]) -> Sequence[object]:
        outcomes = batch.call(events, settings.call_timeout_s)
        assert isinstance(outcomes, Sequence)
        return outcomes

    return send_many, events_per_call(settings, many)
