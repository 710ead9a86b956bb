"""A trained language model as one self-contained file that generates text one token per call.

Two formats, one contract: ``(token (B,) int64, state) -> (logits (B, V), new state)``, the state being each
state tensor of the recurrent stack, (num_layers, B, S) (``h``; ``h`` and ``c`` for LSTMs), zeros to start.

* ``onnx`` — :func:`rnnkit.export.step.lm_step_graph`, run by onnxruntime or any ONNX runtime; inputs
  ``token``, ``h_0`` (``c_0``), outputs ``logits``, ``h_n`` (``c_n``).
* ``torch-export`` — a ``torch.export`` program of :class:`StepModule`, traced through the layer's public
  forward on the engine named: ``"reference"`` gives plain torch operators (``torch.export.load(path).module()``
  runs it wherever torch is installed); an engine whose kernels are torch operators (``"fused"``:
  ``rnnkit::sequence``) gives a program calling them, which :func:`load_program` loads after importing the
  modules that define them (recorded in the file). Nothing here depends on which engine it is.

Both files carry, as JSON under the key ``rnnkit``, what a generator needs besides the weights: the
vocabulary (tokens, level, normalisation), the state layout and a default prompt. Before a file is written,
it is loaded back and run against :meth:`LanguageModel.step <rnnkit.models.LanguageModel.step>` on random
tokens and states; the file appears only if it matches (to 1e-4).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.data import Vocab
from rnnkit.export.graph import save_atomic
from rnnkit.export.model import state_names
from rnnkit.models import LanguageModel

Format = Literal["onnx", "torch-export"]
FORMATS = ("onnx", "torch-export")
SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}
META_KEY = "rnnkit"
#: largest difference to LanguageModel.step a written file may show on the check (float32 logits)
TOLERANCE = 1e-4


def metadata(model: LanguageModel, vocab: Vocab, prompt: str = "") -> dict[str, Any]:
    """What a generator needs beside the weights (stored in the file as JSON)."""
    layer = model.rnn
    return {
        "format": 1,
        "vocab": {"level": vocab.level, "normalize": vocab.normalize, "idx_to_token": vocab.idx_to_token},
        "unk": vocab.unk,
        "state": [
            {"input": f"{n}_0", "output": f"{n}_n", "shape": [layer.num_layers, "batch", s]}
            for n, s in zip(state_names(layer), layer.cells[0].state_sizes)
        ],
        "prompt": prompt,
        "model": {"cell": layer.describe_cell(), "num_layers": layer.num_layers, "vocab_size": model.vocab_size},
    }


class StepModule(nn.Module):
    """``LanguageModel.step`` with the state as separate tensors: what ``torch.export`` traces."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, new = self.model(token[:, None], state[0] if len(state) == 1 else state)
        return (logits[:, 0], *((new,) if isinstance(new, Tensor) else new))


def export_language_model(
    model: LanguageModel,
    vocab: Vocab,
    path: str | Path,
    format: Format = "onnx",
    *,
    prompt: str = "",
    engine: str = "reference",
) -> Path:
    """Write ``model``'s one-token step to ``path`` in ``format`` (checked first; see the module docstring).

    ``engine`` is the layer engine that ``torch-export`` traces (ignored for ONNX, which is built from the
    weights).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    if not isinstance(model, LanguageModel):
        raise TypeError(f"export_language_model needs an rnnkit LanguageModel, got {type(model).__name__}")
    if model.rnn.bidirectional:
        raise ValueError("a bidirectional language model cannot generate one token at a time")
    if model.head.weight.dtype != torch.float32:
        raise ValueError(f"export writes float32 models, this one is {model.head.weight.dtype}: export model.float()")
    was_training = model.training
    model.eval()  # the exported step is inference: no dropout
    try:
        meta = metadata(model, vocab, prompt)
        data = _onnx_bytes(model, meta) if format == "onnx" else _program_bytes(model, meta, engine)
    finally:
        model.train(was_training)
    return save_atomic(data, path, "rnnkit export")


# ------------------------------------------------------------------------------------------------
def _random_calls(model: LanguageModel) -> list[tuple[Tensor, tuple[Tensor, ...]]]:
    """(tokens, state) pairs of batch 1 and 3 with random states, for the check."""
    g = torch.Generator().manual_seed(0)
    L, sizes = model.rnn.num_layers, model.rnn.cells[0].state_sizes
    calls = []
    for B in (1, 3):
        tokens = torch.randint(0, model.vocab_size, (B,), generator=g)
        calls.append((tokens, tuple(0.5 * torch.randn(L, B, s, generator=g) for s in sizes)))
    return calls


def _reference(model: LanguageModel, tokens: Tensor, state: tuple[Tensor, ...]) -> list[Tensor]:
    with torch.no_grad():
        logits, new = model.step(tokens, state[0] if len(state) == 1 else state)
    return [logits, *((new,) if isinstance(new, Tensor) else new)]


def _compare(what: str, got: list[Any], want: list[Tensor]) -> None:
    err = max(float((torch.as_tensor(g) - w).abs().max()) for g, w in zip(got, want))
    if not err <= TOLERANCE:
        raise RuntimeError(
            f"rnnkit export: the {what} differs from the model by {err:.2e} (> {TOLERANCE}); nothing was written"
        )


def _onnx_bytes(model: LanguageModel, meta: dict[str, Any]) -> bytes:
    from rnnkit.export.step import lm_step_graph

    data = lm_step_graph(model, {META_KEY: json.dumps(meta)}).SerializeToString()
    try:
        import onnxruntime as ort
    except ImportError:  # the graph passed onnx.checker; without a runtime there is nothing more to run
        return data
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for tokens, state in _random_calls(model):
        feeds = {"token": tokens.numpy(), **{s["input"]: t.numpy() for s, t in zip(meta["state"], state)}}
        _compare("ONNX graph", session.run(None, feeds), _reference(model, tokens, state))
    return data


def _program_bytes(model: LanguageModel, meta: dict[str, Any], engine: str) -> bytes:
    from rnnkit.engines import check_engine_name

    check_engine_name(engine)
    layer, saved = model.rnn, model.rnn.engine
    layer.engine = engine
    try:
        tokens, state = _random_calls(model)[1]  # batch 3: torch.export would specialise on a batch of 1
        batch = torch.export.Dim("batch")
        shapes = {"token": {0: batch}, "state": tuple({1: batch} for _ in state)}
        step = StepModule(model)
        with torch.no_grad():
            step(tokens, *state)  # once eagerly: one-time set-up (building kernels) stays out of the trace
            program = torch.export.export(step, (tokens, *state), dynamic_shapes=shapes)
    except Exception as e:  # torch.export reports untraceable code in many exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"rnnkit export: torch.export cannot trace the model on engine={engine!r}: {first}") from None
    finally:
        layer.engine = saved
    meta = {**meta, "engine": engine, "imports": _operator_modules(program)}
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={META_KEY: json.dumps(meta)})
    loaded = torch.export.load(io.BytesIO(buffer.getvalue())).module()
    for tokens, state in _random_calls(model):
        with torch.no_grad():
            _compare("exported program", list(loaded(tokens, *state)), _reference(model, tokens, state))
    return buffer.getvalue()


def _operator_modules(program: Any) -> list[str]:
    """The Python modules defining the program's operators beyond torch's own (an engine's kernels registered
    as torch operators): they must be imported before ``torch.export.load`` can resolve those operators."""
    from torch._library.custom_ops import OPDEFS  # where torch.library.custom_op keeps each definition

    modules = set()
    for node in program.graph.nodes:
        target = node.target
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload):
            if target.namespace not in ("aten", "prims"):
                definition = OPDEFS.get(target._schema.name)
                if definition is None:
                    raise ValueError(
                        f"rnnkit export: the traced program calls {target._schema.name}, whose defining "
                        "module is unknown, so the file could not be loaded elsewhere"
                    )
                modules.add(definition._init_fn.__module__)
    return sorted(modules)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``rnnkit`` JSON of a file written by :func:`export_language_model` (either format), read without
    loading the model."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):  # a .pt2 archive: torch.export.save's extra files live under extra/
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith(f"/extra/{META_KEY}"))
                return json.loads(archive.read(name))
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[META_KEY])
    except (OSError, StopIteration, KeyError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is not a file written by rnnkit export ({type(e).__name__}: {e})") from None


def load_program(path: str | Path) -> nn.Module:
    """The step module of a ``torch-export`` file: ``step(token, *state) -> (logits, *new_state)``.

    Imports first the modules that define the program's non-torch operators (recorded at export; none for
    the reference engine, whose program torch alone can load with ``torch.export.load(path).module()``).
    """
    import importlib

    modules = read_metadata(path).get("imports", [])
    for module in modules:
        importlib.import_module(module)
    if "rnnkit.engines.fused.ops" in modules:
        # rnnkit::sequence calls kernels from a library that the engine loads (building it if need be) on its
        # first use, not the operator itself: load it here, for a process that has not run the engine yet
        from rnnkit.engines.fused.build import unavailable

        reason = unavailable()
        if reason is not None:
            raise ValueError(
                f"{str(path)!r} calls rnnkit's fused kernels, which cannot load here ({reason}); "
                "export it with --engine reference"
            )
    return torch.export.load(str(path)).module()
