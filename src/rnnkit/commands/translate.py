"""``rnnkit translate train|eval|predict``: English→French with a GRU/LSTM encoder–decoder.

    rnnkit translate train --max-time 600 --out runs/translate          # train, then test BLEU + examples
    rnnkit translate eval --checkpoint runs/translate --decode.beam_size 4
    rnnkit translate predict --checkpoint runs/translate "Go." "I lost." "He's calm." "I'm home."
    echo "I'm home." | rnnkit translate predict --checkpoint runs/translate

Data: English-French sentence pairs from the Tatoeba Project (CC BY 2.0 FR), www.manythings.org/anki
and tatoeba.org, as packaged in d2l's fra-eng.zip.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from rnnkit import runner
from rnnkit.atomic import write_json
from rnnkit.commands.common import dispatch
from rnnkit.config import from_dict, parse_config
from rnnkit.runner import RunConfig, Setup, resolve_device, run
from rnnkit.tasks.seq2seq import Seq2SeqConfig
from rnnkit.tasks.translate import ATTRIBUTION, TranslateData

log = logging.getLogger("rnnkit.translate")

#: d2l's example sentences (its seq2seq and attention chapters)
D2L_EXAMPLES = ("go .", "i lost .", "he's calm .", "i'm home .")
D2L_REFERENCES = ("va !", "j'ai perdu .", "il est calme .", "je suis chez moi .")


@dataclass
class DecodeConfig:
    """How translations are searched for."""

    beam_size: int = 4
    "beam width (1 = greedy)"
    length_penalty: float = 0.75
    "rank finished beams by log-probability / length ** this (0 = raw log-probability)"

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"decode.beam_size must be >= 1, got {self.beam_size}")
        if self.length_penalty < 0:
            raise ValueError(f"decode.length_penalty must be >= 0, got {self.length_penalty}")


@dataclass
class TranslateTrainConfig(RunConfig):
    """Everything ``rnnkit translate train`` needs."""

    steps: int = 1_000_000
    "optimisation steps in total; max_time usually ends the run first"
    max_time: float = 600.0
    "training-time budget in seconds, evaluation excluded (0 = none)"
    eval_every: int = 500
    "evaluate (validation loss and greedy BLEU) and checkpoint every N steps, and at the end"
    out: str = "runs/translate"
    "run directory: checkpoints (last/, best/), metrics, curves.png, test.json"
    eval_sentences: int = 500
    "distinct validation sentences decoded for BLEU at each evaluation (0 = all)"
    data: TranslateData = field(default_factory=TranslateData)
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_sentences < 0:
            raise ValueError(f"eval_sentences must be >= 0 (0 = all), got {self.eval_sentences}")


def load_translator(checkpoint: str, prefer: str = "best", device: str = "cpu") -> tuple[Any, Any, Any]:
    """(model, task, checkpoint) rebuilt from a run directory or checkpoint folder of ``translate train``.

    The task is rebuilt lazily: its splits are read only when :meth:`TranslationTask.evaluate` needs them.
    """
    from rnnkit import checkpoint as ckpt
    from rnnkit.tasks.translate import Vocab

    saved = ckpt.load_checkpoint(checkpoint, prefer=prefer)
    meta = saved.state.get("task", {})
    if meta.get("name") != "translate":
        raise ValueError(f"{saved.path} is not a translation checkpoint (task {meta.get('name')!r})")
    cfg = from_dict(TranslateTrainConfig, saved.state["config"])
    src_vocab, tgt_vocab = Vocab(meta["src_vocab"]), Vocab(meta["tgt_vocab"])
    model = cfg.model.build(len(src_vocab), len(tgt_vocab)).to(resolve_device(device))
    ckpt.load_model_weights(model, saved)
    model.eval()
    return model, (cfg, src_vocab, tgt_vocab), saved


def test_report(model: Any, task: Any, decode: DecodeConfig, split: str = "test", limit: int = 0) -> dict[str, Any]:
    """Held-out loss, BLEU greedy and with beam search, and d2l's four example translations."""
    from rnnkit.tasks.bleu import corpus_bleu, d2l_bleu, mean_d2l_bleu

    greedy = task.evaluate(model, split=split, max_sentences=limit)
    data = {"val": task.val_split, "test": task.test_split}[split]
    n = len(data.sources) if limit <= 0 else min(limit, len(data.sources))
    beam = task.translate_tokens(model, data.sources[:n], decode.beam_size, decode.length_penalty)
    examples = task.translate_tokens(model, [s.split() for s in D2L_EXAMPLES], decode.beam_size, decode.length_penalty)
    return {
        "split": split,
        "sentences": n,
        "loss": greedy["loss"],
        "ppl": greedy["ppl"],
        "bleu_greedy": greedy["bleu"],
        "d2l_bleu_greedy": greedy["d2l_bleu"],
        f"bleu_beam{decode.beam_size}": corpus_bleu(beam, data.references[:n]),
        f"d2l_bleu_beam{decode.beam_size}": mean_d2l_bleu(beam, data.references[:n], k=2),
        "examples": [
            {"en": en, "fr": fr, "d2l_bleu": d2l_bleu(fr, ref, k=2)}
            for en, fr, ref in zip(D2L_EXAMPLES, examples, D2L_REFERENCES)
        ],
    }


def print_report(r: dict[str, Any]) -> None:
    beam = next(k for k in r if k.startswith("bleu_beam"))
    print(f"{r['split']} ({r['sentences']} English sentences, all their references): loss {r['loss']:.3f} | "
          f"ppl {r['ppl']:.2f} | corpus BLEU greedy {r['bleu_greedy']:.1f}, {beam.split('_')[1]} {r[beam]:.1f} | "
          f"d2l BLEU greedy {r['d2l_bleu_greedy']:.3f}, {beam.split('_')[1]} {r['d2l_' + beam]:.3f}")  # fmt: skip
    for ex in r["examples"]:
        print(f"  {ex['en']} => {ex['fr']}, bleu {ex['d2l_bleu']:.3f}")


# ------------------------------------------------------------------------------------------------
def train_translator(cfg: TranslateTrainConfig, *, resume: bool = False, overwrite: bool = False,
                     progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Train on the pairs, then score the best checkpoint on the test split; also writes ``out/test.json``."""
    return run(cfg, _setup, _report, resume=resume, overwrite=overwrite, progress=progress)


def _setup(cfg: TranslateTrainConfig, device: str, dtype: Any) -> Setup:
    from rnnkit.tasks.translate import TranslationTask

    log.info(ATTRIBUTION)
    task = TranslationTask(cfg.data, eval_sentences=cfg.eval_sentences)
    model = cfg.model.build(len(task.src_vocab), len(task.tgt_vocab)).to(device, dtype)
    describe = (f"model: {cfg.model.cell.upper()} {cfg.model.num_layers}×{cfg.model.hidden_size}"
                f"{' with Bahdanau attention' if cfg.model.attention else ''}, "
                f"{sum(p.numel() for p in model.parameters()):,} parameters")  # fmt: skip
    return Setup(model, task, describe)


def _report(cfg: TranslateTrainConfig, s: Setup, best: Any, result: Any) -> dict[str, Any]:
    from pathlib import Path

    report = {"steps": result.step, "train_time": result.train_time, "best_step": best.step,
              "units_per_s": result.units_per_s, **test_report(s.model, s.task, cfg.decode)}  # fmt: skip
    write_json(Path(cfg.out) / "test.json", report, indent=1)
    return report


def _train(argv: list[str]) -> int:
    def show(cfg: TranslateTrainConfig, r: dict[str, Any]) -> None:
        print(f"{r['steps']} steps, {r['train_time']:.0f}s of training, best checkpoint of step {r['best_step']} | "
              f"{cfg.out}")  # fmt: skip
        print_report(r)

    return runner.main("rnnkit translate train", TranslateTrainConfig, argv, train_translator, show,
                       description=f"Train an English→French encoder–decoder. {ATTRIBUTION}.")  # fmt: skip


@dataclass
class EvalCommand:
    checkpoint: str = "runs/translate"
    "a run directory of rnnkit translate train, or a checkpoint folder"
    which: str = "best"
    "in a run directory: best (by validation loss) or last"
    split: str = "test"
    "val or test (the split is rebuilt from the run's data settings)"
    limit: int = 0
    "score only the first N distinct sentences (0 = all)"
    device: str = "cpu"
    "cpu, cuda or auto"
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        if self.split not in ("val", "test") or self.which not in ("best", "last") or self.limit < 0:
            raise ValueError("split must be val or test, which best or last, limit >= 0")


def _eval(argv: list[str]) -> int:
    def extra(p: Any) -> None:
        p.add_argument("--json", action="store_true", help="print the scores as one JSON object")

    cfg, ns = parse_config(EvalCommand, argv, prog="rnnkit translate eval", extra=extra,
                           description=f"BLEU of a translation checkpoint on held-out data. {ATTRIBUTION}")  # fmt: skip
    try:
        from rnnkit.tasks.translate import TranslationTask

        model, (run, src_vocab, tgt_vocab), saved = load_translator(cfg.checkpoint, cfg.which, cfg.device)
        task = TranslationTask(run.data, vocabs=(src_vocab, tgt_vocab))
        r = test_report(model, task, cfg.decode, cfg.split, cfg.limit)
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnkit translate: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r)) if ns.json else print_report(r)
    return 0


@dataclass
class PredictCommand:
    checkpoint: str = "runs/translate"
    "a run directory of rnnkit translate train, or a checkpoint folder"
    device: str = "cpu"
    "cpu, cuda or auto"
    strict: bool = False
    "refuse sentences with words the model never saw (default: translate them as <unk> with a warning)"
    show_attention: bool = False
    "after each translation, print its attention weights (% per source word, one row per output word)"
    decode: DecodeConfig = field(default_factory=DecodeConfig)


def _predict(argv: list[str]) -> int:
    def extra(p: Any) -> None:
        p.add_argument("sentences", nargs="*", help="English sentences (none: one per line from stdin)")

    cfg, ns = parse_config(PredictCommand, argv, prog="rnnkit translate predict", extra=extra,
                           description="Translate English sentences to French (d2l's preprocessing).")  # fmt: skip
    try:
        from rnnkit.tasks.translate import preprocess, tokenize

        sentences = ns.sentences or [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not sentences:
            raise ValueError("no sentence to translate: pass sentences as arguments or one per line on stdin")
        model, (run, src_vocab, tgt_vocab), _ = load_translator(cfg.checkpoint, device=cfg.device)
        if cfg.show_attention and not model.use_attention:
            raise ValueError("--show_attention: this model has no attention (trained with --model.attention false)")
        tokens = [tokenize(preprocess(s)) for s in sentences]
        for s, t in zip(sentences, tokens):
            unknown = src_vocab.unknown(t)
            if unknown and cfg.strict:
                raise ValueError(f"{s!r} has words the model never saw: {', '.join(unknown)} (drop --strict to "
                                 "translate them as <unk>)")  # fmt: skip
            if unknown:
                log.warning("%r: unknown word(s) %s translated as <unk>", s, ", ".join(unknown))
        from rnnkit.tasks.translate import translate_tokens

        out = translate_tokens(model, tokens, src_vocab, tgt_vocab, beam_size=cfg.decode.beam_size,
                               length_penalty=cfg.decode.length_penalty, max_len=run.data.max_len + 5)  # fmt: skip
        tables = [attention_table(model, src_vocab, tgt_vocab, s, o.split()) if cfg.show_attention else ""
                  for s, o in zip(tokens, out)]  # fmt: skip
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnkit translate: error: {e}", file=sys.stderr)
        return 1
    for line, table in zip(out, tables):
        print(line)
        if cfg.show_attention:
            print(table)
    return 0


def attention_table(model: Any, src_vocab: Any, tgt_vocab: Any, src: list[str], out: list[str]) -> str:
    """Where the decoder looked: for each output word (and the final <eos>), its attention in % per source word."""
    import torch

    if not model.use_attention:
        raise ValueError("this model has no attention (trained with --model.attention false)")
    src = src or [src_vocab.itos[src_vocab.unk]]  # an empty sentence is read as one <unk>
    device = next(model.parameters()).device
    src_ids = torch.tensor([src_vocab.encode(src) or [src_vocab.unk]], device=device)
    tgt_in = torch.tensor([[tgt_vocab.bos, *tgt_vocab.encode(out)]], device=device)
    with torch.no_grad():
        _, weights = model(src_ids, torch.tensor([src_ids.shape[1]], device=device), tgt_in, return_attention=True)
    rows, width = [*out, "<eos>"], max(len(w) for w in [*out, "<eos>"])
    lines = [" " * width + " | " + " ".join(f"{w:>6}" for w in src)]
    for word, row in zip(rows, weights[0].tolist()):
        lines.append(f"{word:>{width}} | " + " ".join(f"{100 * a:6.0f}" for a in row))
    return "\n".join(lines)


SUBCOMMANDS = {"train": _train, "eval": _eval, "predict": _predict}


def main(argv: list[str] | None = None) -> int:
    return dispatch("rnnkit translate", __doc__, SUBCOMMANDS, argv)
