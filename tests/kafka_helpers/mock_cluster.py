"""librdkafka's built-in mock cluster as a standalone, controllable Kafka broker on loopback.

librdkafka ships a mock Kafka cluster (``rdkafka_mock.h``) that speaks the real Kafka
protocol on 127.0.0.1: producers and consumers connect to it over TCP like to any
broker. confluent-kafka's Python API can start one inside a client
(``test.mock.num.brokers``), but exposes none of its controls (broker down/up, error
injection). So this module calls the C API of the librdkafka that the confluent-kafka
wheel bundles, through ctypes: a cluster that outlives any client, whose broker can be
taken down and brought back while a producer is using it.

The clients under test never see this handle: they only get ``bootstrap_servers``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from collections.abc import Sequence
from typing import Any

#: Kafka protocol API keys (for error injection).
PRODUCE_API_KEY = 0

_RD_KAFKA_PRODUCER = 0
_CONF_OK = 0


class MockClusterUnavailable(RuntimeError):
    """The librdkafka shared library (or its mock API) cannot be loaded."""


def _find_librdkafka() -> str:
    import confluent_kafka

    site = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    # Linux wheels (auditwheel): confluent_kafka.libs/; macOS wheels (delocate): confluent_kafka/.dylibs/.
    patterns = [
        os.path.join(site, "confluent_kafka.libs", "librdkafka*"),
        os.path.join(os.path.dirname(confluent_kafka.__file__), ".dylibs", "librdkafka*"),
    ]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    system = ctypes.util.find_library("rdkafka")
    if system:
        return system
    raise MockClusterUnavailable("librdkafka not found next to confluent_kafka nor on the system")


def _load() -> ctypes.CDLL:
    path = _find_librdkafka()
    try:
        lib = ctypes.CDLL(path)
        p, c, i, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
        signatures: dict[str, tuple[Any, list[Any]]] = {
            "rd_kafka_conf_new": (p, []),
            "rd_kafka_conf_set": (i, [p, c, c, c, sz]),
            "rd_kafka_new": (p, [i, p, c, sz]),
            "rd_kafka_destroy": (None, [p]),
            "rd_kafka_mock_cluster_new": (p, [p, i]),
            "rd_kafka_mock_cluster_destroy": (None, [p]),
            "rd_kafka_mock_cluster_bootstraps": (c, [p]),
            "rd_kafka_mock_broker_set_down": (i, [p, ctypes.c_int32]),
            "rd_kafka_mock_broker_set_up": (i, [p, ctypes.c_int32]),
            "rd_kafka_mock_broker_set_rtt": (i, [p, ctypes.c_int32, i]),
            "rd_kafka_mock_topic_create": (i, [p, c, i, i]),
            "rd_kafka_mock_push_request_errors_array": (None, [p, ctypes.c_int16, sz, ctypes.POINTER(i)]),
            "rd_kafka_mock_clear_request_errors": (None, [p, ctypes.c_int16]),
        }
        for name, (restype, argtypes) in signatures.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
    except (OSError, AttributeError) as exc:
        raise MockClusterUnavailable(f"{path}: {exc}") from exc
    return lib


class MockCluster:
    """A running mock Kafka cluster; ``stop()`` (or the context manager) destroys it."""

    def __init__(self, brokers: int = 1) -> None:
        self._lib = _load()
        errstr = ctypes.create_string_buffer(512)
        conf = self._lib.rd_kafka_conf_new()
        # The handle only hosts the cluster: keep it from logging to stderr.
        for key, value in {"log_level": "0", "client.id": "mock-cluster-host"}.items():
            if self._lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, 512) != _CONF_OK:
                raise MockClusterUnavailable(errstr.value.decode())
        self._rk = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, 512)  # takes conf
        if not self._rk:
            raise MockClusterUnavailable(f"rd_kafka_new: {errstr.value.decode()}")
        self._mcluster = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mcluster:
            self._lib.rd_kafka_destroy(self._rk)
            raise MockClusterUnavailable("rd_kafka_mock_cluster_new failed")
        self.brokers = brokers
        self._down: set[int] = set()  # brokers set down or slowed: put back by reset()
        self._slow: set[int] = set()
        self.bootstrap_servers: str = self._lib.rd_kafka_mock_cluster_bootstraps(self._mcluster).decode()

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _check(self, err: int, what: str) -> None:
        if err:
            raise RuntimeError(f"{what} failed with rd_kafka_resp_err_t {err}")

    def create_topic(self, topic: str, partitions: int) -> None:
        self._check(
            self._lib.rd_kafka_mock_topic_create(self._mcluster, topic.encode(), partitions, 1), "topic"
        )

    def broker_down(self, broker_id: int = 1) -> None:
        """Disconnect the broker's clients and refuse new connections until ``broker_up``."""
        self._check(self._lib.rd_kafka_mock_broker_set_down(self._mcluster, broker_id), "set_down")
        self._down.add(broker_id)

    def broker_up(self, broker_id: int = 1) -> None:
        self._check(self._lib.rd_kafka_mock_broker_set_up(self._mcluster, broker_id), "set_up")
        self._down.discard(broker_id)

    def broker_rtt(self, rtt_ms: int, broker_id: int = 1) -> None:
        """Delay every response of the broker by ``rtt_ms`` (0: answer at once): a hung broker."""
        self._check(self._lib.rd_kafka_mock_broker_set_rtt(self._mcluster, broker_id, rtt_ms), "set_rtt")
        (self._slow.add if rtt_ms else self._slow.discard)(broker_id)

    def reset(self) -> None:
        """Every broker up and answering at once again. Only touches brokers a test changed:
        each control call waits for the cluster's thread, up to ~1 s while clients are connected."""
        for broker_id in sorted(self._slow):
            self.broker_rtt(0, broker_id)
        for broker_id in sorted(self._down):
            self.broker_up(broker_id)

    def push_produce_errors(self, errors: Sequence[int]) -> None:
        """The next ``len(errors)`` Produce requests fail with these Kafka error codes, in order."""
        array = (ctypes.c_int * len(errors))(*errors)
        self._lib.rd_kafka_mock_push_request_errors_array(self._mcluster, PRODUCE_API_KEY, len(errors), array)

    def clear_produce_errors(self) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._mcluster, PRODUCE_API_KEY)

    def stop(self) -> None:
        if self._mcluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._mcluster)
            self._mcluster = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None
