"""Fixtures for the lcz_model data + training pipeline tests (no Django, tiny data)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_pkg(tmp_path_factory):
    """A small SYNTHETIC package (24 blocks, 64 px chips) made with the real generator."""
    from fixtures.synthetic_package import write_synthetic_package

    out = tmp_path_factory.mktemp("pkg") / "synthetic-v1"
    return write_synthetic_package(out, n_blocks=24, seed=3, test_fraction=0.25, size=64)


