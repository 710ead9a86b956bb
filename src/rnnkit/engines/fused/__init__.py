"""The ``"fused"`` engine: rnnkit's own whole-sequence kernels, as torch operators, for every built-in cell.

* :mod:`.build` — compiles ``csrc/`` (plain C kernels per instruction set + ``ops.cpp``) through
  ``torch.utils.cpp_extension`` on first use, picks the instruction set at load time, and announces the
  fallback where it cannot build;
* :mod:`.specs` — per cell (LSTM and peephole LSTM with or without projection, GRU in both forms, Elman,
  Jordan): the parameters, buffers, forward and backward the kernels take;
* :mod:`.ops` — the public operators ``rnnkit::sequence`` (with fake tensors and autograd, so
  ``torch.compile``/``torch.export`` see one node) and ``rnnkit::dropout``;
* :mod:`.engine` — the engine itself: one direction of one layer = one operator call;
* :mod:`.stepper` — one token at a time for generation, weights packed once.

This package's ``__init__`` imports nothing, so that :mod:`rnnkit.dropout` can use :mod:`.build` without
pulling in the engine registry.
"""
