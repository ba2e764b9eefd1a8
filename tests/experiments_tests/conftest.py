"""Fixtures for the experiments' tests (no Django, tiny data, one CPU thread)."""
from __future__ import annotations

import pytest

from tests.torch_threads import one_torch_thread  # noqa: F401  (autouse: one seeded thread)


@pytest.fixture(scope="session")
def tiny_pkg(tmp_path_factory):
    """A small SYNTHETIC package (30 blocks, 64 px chips) from the real generator."""
    from fixtures.synthetic_package import write_synthetic_package

    out = tmp_path_factory.mktemp("alpkg") / "synthetic-30"
    return write_synthetic_package(out, n_blocks=30, seed=5, test_fraction=0.3, size=64)
