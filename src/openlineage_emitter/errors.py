"""Exceptions raised to callers of the public API."""

from __future__ import annotations

from openlineage_emitter._secrets import MASK, mask, mask_text


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed.

    The value is shown masked (``_secrets.mask``: credential-looking keys, URL user-info, query
    tokens); with ``secret=True`` it is not shown at all. ``value`` holds what the message shows.
    """

    def __init__(
        self, key: str, value: object, allowed: str, *, source: str = "", secret: bool = False
    ) -> None:
        self.key = key
        self.value = MASK if secret else mask(value)
        self.allowed = allowed
        self.source = source
        where = f" (from {source})" if source else ""
        shown = mask_text(repr(self.value))
        super().__init__(f"invalid [openlineage] {key} = {shown}{where}: expected {allowed}")

    def with_source(self, source: str) -> ConfigError:
        """The same error, saying where the bad value came from."""
        return ConfigError(self.key, self.value, self.allowed, source=source)
