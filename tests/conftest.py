"""Shared test setup.

One intra-op thread: the suite runs on small shared CPUs, where two threads per process oversubscribe
the cores and make tiny ops many times slower.

Without a GPU, Triton's interpreter runs the ``"triton"`` engine's kernels on CPU tensors
(tests/test_triton.py). Triton reads ``TRITON_INTERPRET`` when it decorates a kernel — its own library's
included, at its first import, which ``torch.compile`` may trigger in any test — so it is set here, before
anything imports Triton, for the whole session. Nothing else on a CPU-only machine uses Triton.
"""

import os

import pytest
import torch

torch.set_num_threads(1)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)
    yield
