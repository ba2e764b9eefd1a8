"""Fixtures for the active-learning tests (no Django, tiny data, one CPU thread)."""
from tests.torch_threads import one_torch_thread  # noqa: F401  (autouse: one seeded thread)
