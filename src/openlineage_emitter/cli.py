"""The ``openlineage-emitter`` command (``demo`` for now; ``check`` and ``replay`` follow)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="openlineage-emitter", description="Safe, fast OpenLineage emission for Airflow."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="side-by-side run against loopback backends")
    demo.add_argument("--events", type=int, default=40, help="events per scenario (default 40)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from openlineage_emitter._demo import run_demo

        return int(run_demo(events=args.events, out=sys.stdout))
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
