"""The ``openlineage-emitter`` command: ``check``, ``replay``, ``demo``."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openlineage-emitter", description="Safe, fast OpenLineage emission for Airflow."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check", help="show the effective [openlineage] config (secrets masked) and build the transport"
    )
    check.add_argument("--send", action="store_true", help="send one test event and report latency")
    replay = sub.add_parser("replay", help="drain a spool directory to the configured transport")
    replay.add_argument(
        "--spool-dir",
        help=(
            "default: [openlineage] emitter_spool_dir; unset, $AIRFLOW_HOME/openlineage-spool (the default "
            "inside Airflow)"
        ),
    )
    demo = sub.add_parser("demo", help="thread vs fork strategies against loopback backends")
    demo.add_argument("--tasks", type=int, default=5, help="simulated tasks per scenario (default 5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        # Piped without a stated width (a CI log): wider than rich's 80, so the tables fit.
        console = Console(highlight=False, width=max(console.width, 110))
    if args.command == "check":
        from openlineage_emitter.cli.check import run_check

        return run_check(console, send=args.send)
    if args.command == "replay":
        from openlineage_emitter.cli.replay import run_replay

        return run_replay(console, args.spool_dir)
    from openlineage_emitter.cli.demo import run_demo

    return run_demo(tasks=args.tasks, console=console)


if __name__ == "__main__":
    sys.exit(main())
