"""The exceptions rnnkit's layers and cells raise for a tensor that does not fit them.

torch.nn raises ``RuntimeError`` for most of these mistakes (a wrong feature count, batch size or state
shape, a tensor on another device), ``ValueError`` for some (an input dtype that differs from the
weights') and rnnkit has always raised ``ValueError`` (``TypeError`` for dtypes). Each class below
derives from every type either library uses for the same mistake, so ``except RuntimeError`` written
for torch.nn and ``except ValueError`` written for rnnkit both catch it, while the message stays
rnnkit's one line naming what was expected and what came.
"""

from __future__ import annotations


class ShapeError(ValueError, RuntimeError):
    """A tensor's shape does not fit (its number of dimensions, features, batch size, sequence length, or the
    number of state tensors), or a size argument is out of range (torch: ``ValueError`` for a layer's sizes,
    ``RuntimeError`` for a cell's negative size)."""


class DeviceError(ValueError, RuntimeError):
    """A tensor is on another device than the module's parameters."""


class DtypeError(ValueError, TypeError, RuntimeError):
    """A tensor's dtype differs from the module's parameters' (torch: ``ValueError`` for a layer's input,
    ``RuntimeError`` for states and cells; rnnkit before: ``TypeError``)."""


def torchscript_unsupported(module: object) -> RuntimeError:
    """What ``torch.jit.script`` raises for an rnnkit layer or cell: TorchScript is deprecated in torch and
    rnnkit's forward (keyword-only options, engines chosen at run time) is not written for it."""
    return RuntimeError(
        f"torch.jit.script does not support rnnkit's {type(module).__name__}: script rnnkit.to_torch(model) "
        "(torch.nn peers sharing the parameters), or use torch.jit.trace, torch.export or torch.compile"
    )
