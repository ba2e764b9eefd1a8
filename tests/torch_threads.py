"""The one-thread fixture of the torch-only test packages (import it into their conftest.py).

Their tensors are tiny and the test machine is shared: oversubscribed torch threads made steps
much slower there, so each test runs on one thread (seeded), and the count is restored after."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    n = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
