"""Which transport the CLI uses: ``[openlineage] transport``, else openlineage-python's config."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs

from openlineage_emitter._secrets import mask_text, masked_repr
from openlineage_emitter.config import LoadedConfig

if TYPE_CHECKING:
    from rich.console import Console

NO_TRANSPORT = "no transport configured: set [openlineage] transport or OPENLINEAGE_URL"


def fail(console: Console, message: str) -> int:
    """Print the command's one-line reason (masked: it may quote an exception) and return 1."""
    console.print(f"error: {mask_text(message)}", markup=False, highlight=False, soft_wrap=True)
    return 1


@attrs.frozen
class TransportChoice:
    """The transport config dict and where it came from."""

    config: dict[str, Any] | None = attrs.field(repr=masked_repr)
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
    from openlineage.client.transport.noop import NoopConfig, NoopTransport

    # Only its config is wanted (openlineage.yml, OPENLINEAGE__TRANSPORT__*): given a
    # transport, the client does not resolve one, nor warn that it found none.
    client_config = OpenLineageClient(transport=NoopTransport(NoopConfig())).config
    transport = getattr(client_config, "transport", None)
    if transport:
        return TransportChoice(dict(transport), "openlineage-python config (openlineage.yml / env)")
    return TransportChoice(None, "none configured")
