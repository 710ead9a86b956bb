"""The ``"triton"`` engine: every built-in cell on the GPU, as Triton kernels behind rnnkit's operators.

* :mod:`.jit` — what the kernels share: activations, block products, the two ways of walking the steps;
* :mod:`.lstm`, :mod:`.gru`, :mod:`.simple` (Elman, Jordan) — forward and backward kernels per cell, with
  the host code that allocates the fused engine's buffers and computes the weight gradients;
* :mod:`.impl` — ``rnnkit::sequence`` and ``rnnkit::sequence_backward`` in Triton;
* :mod:`.dispatch` — registers them as the operators' CUDA kernels, and runs them on CPU tensors under
  Triton's interpreter (``TRITON_INTERPRET=1``) for the tests;
* :mod:`.engine` — the engine; :mod:`.stepper` — one token at a time on the GPU.

This package's ``__init__`` imports nothing, and only :mod:`.impl` and the kernel modules import Triton: the
engine registers (and says why it cannot run) on machines without it.
"""
