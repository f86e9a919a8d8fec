"""Run options shared by every section."""

from __future__ import annotations

import time

import attrs

COLLECTOR_DESC = {
    "child": (
        "loopback Collector in a child process (its HTTP handler threads do not take this process's GIL)"
    ),
    "inprocess": (
        "loopback Collector in this process (its handler threads share the GIL with the measured code; "
        "against a hung backend they are blocked and cost nothing)"
    ),
}


@attrs.frozen
class Options:
    quick: bool = False
    collector: str = attrs.field(default="child", validator=attrs.validators.in_(COLLECTOR_DESC))

    def pick(self, *, full: int, quick: int) -> int:
        return quick if self.quick else full

    def deadline(self, seconds: float) -> float:
        """A monotonic deadline for one measured loop (halved in quick mode)."""
        return time.monotonic() + (seconds / 2 if self.quick else seconds)

    @property
    def collector_desc(self) -> str:
        return COLLECTOR_DESC[self.collector]
