"""Load the plugin against a provider that lacks what it patches; print what happened (JSON).

Run with an Airflow venv's python, with an OpenLineage transport configured (else the
provider counts as disabled and the plugin has nothing to check).
"""

from __future__ import annotations

import json
import logging

from airflow.providers.openlineage import __version__ as provider_version
from airflow.providers.openlineage.plugins.listener import OpenLineageListener

from openlineage_emitter.airflow import patch, plugin


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


def main() -> None:
    capture = Capture()
    logging.getLogger("openlineage_emitter").addHandler(capture)
    # As in an older (or newer) provider release: the hook is not there.
    del OpenLineageListener._on_task_instance_manual_state_change
    plugin.OpenLineageEmitterPlugin.on_load()
    plugin.OpenLineageEmitterPlugin.on_load()  # a second plugin manager in the same process
    print(
        json.dumps(
            {
                "provider_version": provider_version,
                "attached": plugin.activate(),
                "patched": bool(getattr(OpenLineageListener, patch.MARK, False)),
                "warnings": capture.messages,
            }
        )
    )


if __name__ == "__main__":
    main()
