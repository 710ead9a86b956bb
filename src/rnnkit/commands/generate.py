"""``rnnkit generate``: continue a prefix with a trained language model, streamed to the terminal.

rnnkit generate --checkpoint runs/lm --prefix "time traveller" --num-tokens 200 --temperature 0.8 --seed 1
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from rnnkit.config import parse_config

log = logging.getLogger("rnnkit.generate")


@dataclass
class SampleConfig:
    """How to continue a prefix."""

    prefix: str = ""
    """text to start from (empty: the first characters of the validation split)"""
    num_tokens: int = 200
    """tokens to generate"""
    strategy: Literal["greedy", "sample"] = "sample"
    """greedy (d2l's predict: argmax) or sample"""
    temperature: float = 0.8
    """sampling temperature (lower = more conservative; 0 = greedy)"""
    top_k: int = 0
    """sample among the k most likely tokens only (0 = all)"""
    top_p: float = 1.0
    """sample from the smallest set of tokens holding this probability (1 = all)"""
    seed: int | None = None
    """sampling seed (none: a fresh one each call, printed so that the sample can be repeated)"""

    def __post_init__(self) -> None:
        if self.num_tokens < 0 or self.top_k < 0 or self.temperature < 0:
            raise ValueError("num_tokens, top_k and temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class GenerateCommand:
    checkpoint: str = "runs/lm"
    """a run directory of rnnkit train (its best checkpoint) or a checkpoint folder"""
    device: str = "cpu"
    """cpu, cuda or auto"""
    sample: SampleConfig = field(default_factory=SampleConfig)


def sample_text(
    model: Any, vocab: Any, cfg: SampleConfig, default_prefix: str = "", stream: TextIO | None = None,
    seed: int | None = None,
) -> str:  # fmt: skip
    """Generate with ``cfg``; ``stream`` (a text file) receives the prefix and then each token as it comes.

    ``seed`` (else ``cfg.seed``) seeds sampling; with neither, a fresh seed is drawn and logged, so that two
    prompts never share one random stream by default and any sample can still be repeated with ``--seed``.
    """
    import secrets

    import torch

    from rnnkit.generate import generate, prefix_tokens

    prefix = cfg.prefix or default_prefix
    prefix_tokens(vocab, prefix)  # refuse a bad prefix before anything is written
    seed = cfg.seed if seed is None else seed
    sampling = cfg.strategy == "sample" and cfg.temperature > 0
    if seed is None:
        seed = secrets.randbelow(2**31)
        if sampling and cfg.num_tokens:
            log.info("sampling seed %d (--seed %d repeats this sample)", seed, seed)
    if stream is not None:
        stream.write(prefix)
        stream.flush()

    def on_token(piece: str) -> None:
        stream.write(piece)
        stream.flush()

    strategy = "greedy" if cfg.strategy == "greedy" or cfg.temperature == 0 else "sample"
    knobs = {} if strategy == "greedy" else {"temperature": cfg.temperature, "top_k": cfg.top_k, "top_p": cfg.top_p}
    text = generate(model, vocab, prefix, cfg.num_tokens, strategy=strategy, **knobs,
                    generator=torch.Generator().manual_seed(seed),
                    on_token=on_token if stream is not None else None)  # fmt: skip
    if stream is not None:
        stream.write("\n")
    return text


def _flat_aliases(argv: list[str]) -> list[str]:
    """``--prefix`` for ``--sample.prefix`` and so on: the sampling flags without their section."""
    names = {"--" + n for n in SampleConfig.__dataclass_fields__} | {
        "--" + n.replace("_", "-") for n in SampleConfig.__dataclass_fields__
    }
    return ["--sample." + a[2:] if a.split("=", 1)[0] in names else a for a in argv]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, _ = parse_config(GenerateCommand, _flat_aliases(argv), prog="rnnkit generate",
                          description="Continue a prefix with a trained language model (sampling flags may be "
                          "given with or without 'sample.', e.g. --prefix, --num-tokens, --temperature).")  # fmt: skip
    try:
        import torch

        from rnnkit.tasks.lm import load_language_model

        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        model, vocab, saved = load_language_model(cfg.checkpoint, device=device)
        default = "" if cfg.sample.prefix else _default_prefix(saved)
        sample_text(model, vocab, cfg.sample, default, stream=sys.stdout)
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnkit generate: error: {e}", file=sys.stderr)
        return 1
    return 0


def _default_prefix(saved) -> str:  # noqa: ANN001
    """A prefix when none is given: the start of the training corpus' validation split (stored at training)."""
    return str(saved.state.get("task", {}).get("prompt") or "the ")
