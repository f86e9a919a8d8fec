"""``openlineage-emitter replay``: drain a spool to the configured transport."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from openlineage_emitter._caller import TimedCaller
from openlineage_emitter._safefs import UntrustedDirectoryError
from openlineage_emitter._spool_location import locate
from openlineage_emitter.cli.check import CheckFailed, build_transport
from openlineage_emitter.cli.client_config import NO_TRANSPORT, choose_transport, fail
from openlineage_emitter.config import load_config_with_sources
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.retry import classify
from openlineage_emitter.spool import QuarantineError, Spool, SpoolError


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
    # Synchronous per-event delivery (never an enqueue), so a batch is acked only once
    # the backend answered for every record; with the sender's settings, which are a
    # configured ThreadedTransport's own.
    settings = sender.settings
    caller = TimedCaller(sender.send, max_abandoned=1, name="openlineage-emitter-replay")
    retrying = settings.retry.retrying()
    _, total = spool.pending()
    delivered = failed = 0
    stopped = ""
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("replay", total=total)
        while not stopped:
            claim = spool.claim()
            if claim is None:
                break
            try:
                records = claim.records()
                events = [json.loads(r) for r in records]
            except (SpoolError, ValueError) as exc:
                try:
                    claim.quarantine(str(exc)[:200])
                    failed += claim.count
                except QuarantineError as not_set_aside:  # left in the spool; go on with the rest
                    fail(progress.console, str(not_set_aside))
                progress.advance(task, claim.count)
                continue
            done = 0
            for record, event in zip(records, events, strict=True):
                try:
                    retrying(caller.call, event, settings.call_timeout_s)
                except Exception as exc:  # noqa: BLE001 - classified: stop or set aside
                    verdict = classify(exc)
                    if verdict.retryable:
                        stopped = f"backend unavailable ({verdict.reason})"
                        break
                    try:
                        spool.quarantine_records([record], verdict.reason)
                        failed += 1
                    except QuarantineError as not_set_aside:  # kept in the spool; go on with the rest
                        fail(progress.console, str(not_set_aside))
                else:
                    delivered += 1
                done += 1
                claim.mark_done(done)  # durable: a killed replay re-sends at most this event
                progress.advance(task)
            if done < len(records):
                claim.keep_from(records, done)
            else:
                claim.ack()
    _, left = spool.pending()
    failed = max(failed, spool.quarantined)  # also the damaged part of a batch whose intact events went
    left += spool.in_place_records  # not quarantined, still in the spool
    sender.transport.close(0)
    summary = f"delivered {delivered}, failed {failed} (quarantined), left {left}"
    console.print(
        f"{summary}; stopped: {stopped}" if stopped else summary,
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0 if left == 0 and failed == 0 else 1
