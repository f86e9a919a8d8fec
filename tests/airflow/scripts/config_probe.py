"""Print, as one JSON line, the ``[openlineage]`` config this package loads inside Airflow.

Run with an Airflow venv's python. It imports Airflow's ``conf`` and loads the providers'
configuration (as every Airflow process does before plugins load), then calls
``load_config_with_sources()``, which then reads Airflow's ``conf``.
"""

from __future__ import annotations

import json

from airflow.configuration import conf
from airflow.providers_manager import ProvidersManager

from openlineage_emitter.config import load_config_with_sources


def main() -> None:
    ProvidersManager().initialize_providers_configuration()
    loaded = load_config_with_sources()
    config = loaded.config
    section = conf.as_dict(display_source=True, display_sensitive=True).get("openlineage", {})
    print(
        json.dumps(
            {
                "execute_in_thread": config.execute_in_thread,
                "execution_timeout_s": config.execution_timeout_s,
                "call_timeout_s": config.emitter.call_timeout_s,
                "queue_size": config.emitter.queue_size,
                "sources": dict(loaded.sources),
                "airflow_execute_in_thread": list(section.get("execute_in_thread", ())),
            }
        )
    )


if __name__ == "__main__":
    main()
