"""Fixtures for the several-process training tests (no Django, tiny data, CPU + gloo)."""
from __future__ import annotations

import pytest

from tests.torch_threads import one_torch_thread  # noqa: F401  (autouse: one seeded thread)


@pytest.fixture(scope="session")
def synthetic_pkg(tmp_path_factory):
    """A small SYNTHETIC package (24 blocks: 18 train, 6 test; 64 px chips), the real generator."""
    from fixtures.synthetic_package import write_synthetic_package

    out = tmp_path_factory.mktemp("pkg") / "synthetic-v1"
    return write_synthetic_package(out, n_blocks=24, seed=3, test_fraction=0.25, size=64)
