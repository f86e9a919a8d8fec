"""Helpers for the Kafka tests: librdkafka's mock cluster, driven through its C API."""
