"""Exceptions raised to callers of the public API."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""

    def __init__(
        self, key: str, value: object, allowed: str, *, source: str = "", secret: bool = False
    ) -> None:
        self.key = key
        self.value = "***" if secret else value
        self.allowed = allowed
        self.source = source
        where = f" (from {source})" if source else ""
        super().__init__(f"invalid [openlineage] {key} = {self.value!r}{where}: expected {allowed}")

    def with_source(self, source: str) -> ConfigError:
        """The same error, saying where the bad value came from."""
        err = ConfigError(self.key, self.value, self.allowed, source=source)
        return err
