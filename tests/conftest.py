"""Shared test setup.

One intra-op thread: the suite runs on small shared CPUs, where two threads per process oversubscribe
the cores and make tiny ops many times slower.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)
    yield
