"""Fixtures for the active-learning tests (no Django, tiny data, one CPU thread)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors on a shared 2-core machine: oversubscribed threads are much slower
    n = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_pkg(tmp_path_factory):
    """A small SYNTHETIC package (30 blocks, 64 px chips) from the real generator."""
    from fixtures.synthetic_package import write_synthetic_package

    out = tmp_path_factory.mktemp("alpkg") / "synthetic-30"
    return write_synthetic_package(out, n_blocks=30, seed=5, test_fraction=0.3, size=64)
