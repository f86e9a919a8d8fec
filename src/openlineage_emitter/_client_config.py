"""Which transport the CLI uses: ``[openlineage] transport``, else openlineage-python's config."""

from __future__ import annotations

import os
from typing import Any

import attrs

from openlineage_emitter.config import LoadedConfig


@attrs.frozen
class TransportChoice:
    """The transport config dict and where it came from."""

    config: dict[str, Any] | None
    source: str


def choose_transport(loaded: LoadedConfig) -> TransportChoice:
    if loaded.config.transport:
        return TransportChoice(dict(loaded.config.transport), loaded.sources.get("transport", "default"))
    url = os.environ.get("OPENLINEAGE_URL")
    if url:
        config: dict[str, Any] = {"type": "http", "url": url}
        if os.environ.get("OPENLINEAGE_ENDPOINT"):
            config["endpoint"] = os.environ["OPENLINEAGE_ENDPOINT"]
        if os.environ.get("OPENLINEAGE_API_KEY"):
            config["auth"] = {"type": "api_key", "apiKey": os.environ["OPENLINEAGE_API_KEY"]}
        return TransportChoice(config, "env OPENLINEAGE_URL")
    from openlineage.client import OpenLineageClient

    client_config = OpenLineageClient().config  # openlineage.yml, OPENLINEAGE__TRANSPORT__*
    transport = getattr(client_config, "transport", None)
    if transport:
        return TransportChoice(dict(transport), "openlineage-python config (openlineage.yml / env)")
    return TransportChoice(None, "none configured")
