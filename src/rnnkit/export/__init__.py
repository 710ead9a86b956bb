"""Deploy a trained model: ONNX (:func:`to_onnx`), one-token generation models (``rnnkit export``), torch.export.

Needs the ``deploy`` extra (``pip install 'rnnkit[deploy]'``: onnx, and onnxruntime to run the files).
See docs/deploy.md.
"""

from rnnkit.export.model import to_onnx

__all__ = ["to_onnx"]
