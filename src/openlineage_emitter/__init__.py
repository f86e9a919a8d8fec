"""Safe, fast OpenLineage event emission: one bounded, retrying daemon thread per process."""

from openlineage_emitter.config import (
    LoadedConfig,
    OpenLineageConfig,
    load_config,
    load_config_with_sources,
)
from openlineage_emitter.emitter import ThreadEmitter
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.retry import BreakerState, RetryPolicy
from openlineage_emitter.settings import EmitterSettings, Overflow
from openlineage_emitter.stats import EmitterStats
from openlineage_emitter.transport import ThreadedTransport, ThreadedTransportConfig

__version__ = "0.1.0"

__all__ = [
    "BreakerState",
    "ConfigError",
    "EmitterSettings",
    "EmitterStats",
    "LoadedConfig",
    "OpenLineageConfig",
    "Overflow",
    "RetryPolicy",
    "ThreadEmitter",
    "ThreadedTransport",
    "ThreadedTransportConfig",
    "__version__",
    "load_config",
    "load_config_with_sources",
]
