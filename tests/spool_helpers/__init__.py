"""Spool scenarios that need a process of their own (claim races, SIGKILL, concurrent replay)."""
