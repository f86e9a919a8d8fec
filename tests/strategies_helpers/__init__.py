"""Scenarios that need a fresh, single-threaded process (real ``os.fork``), run by test_strategies."""
