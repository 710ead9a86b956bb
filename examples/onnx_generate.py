"""Generate text from an exported language model with onnxruntime and numpy only: no torch, no rnnkit.

    rnnkit export runs/lm                                    # writes runs/lm.onnx
    python examples/onnx_generate.py runs/lm.onnx --prefix "def " --num-tokens 200

Greedy decoding, token for token what ``rnnkit generate --strategy greedy`` prints for the same checkpoint and
prefix (tests/test_export_lm.py checks it). The file carries its vocabulary (metadata key ``rnnkit``), and
maps ``(token, h_0[, c_0])`` to ``(logits, h_n[, c_n])``: the loop feeds each new state back in.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np
import onnxruntime as ort

WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")  # a word (inner apostrophes kept) or one other non-space character
NO_SPACE_BEFORE, NO_SPACE_AFTER = set(",.!?;:)]}"), set("([{")


def tokenize(text: str, level: str, normalize: str) -> list[str]:
    """The training text's tokenisation: characters or words, after d2l's normalisation if it was used."""
    if normalize == "d2l":
        text = re.sub(r"[^A-Za-z]+", " ", text).lower()
    if level == "char":
        return list(text)
    return text.split() if normalize == "d2l" else WORD.findall(text)


def separator(previous: str, token: str, level: str) -> str:
    """What goes between two tokens when decoding: nothing for characters, a space between words except
    before closing punctuation and after opening brackets."""
    if level == "char" or token in NO_SPACE_BEFORE or previous in NO_SPACE_AFTER:
        return ""
    return " "


class Generator:
    def __init__(self, path: str, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one thread is fastest for batch-1 steps of small models
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = json.loads(self.session.get_modelmeta().custom_metadata_map["rnnkit"])
        self.vocab = meta["vocab"]
        self.tokens = self.vocab["idx_to_token"]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.unk = meta["unk"]
        self.state_spec = meta["state"]
        self.prompt = meta["prompt"]

    def zero_state(self) -> dict[str, np.ndarray]:
        return {s["input"]: np.zeros((s["shape"][0], 1, s["shape"][2]), np.float32) for s in self.state_spec}

    def step(self, token: int, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One token in, the next token's logits (V,) and the new state out."""
        outputs = self.session.run(None, {"token": np.array([token], np.int64), **state})
        new_state = {s["input"]: value for s, value in zip(self.state_spec, outputs[1:])}
        return outputs[0][0], new_state

    def greedy(self, prefix: str, num_tokens: int) -> str:
        """The ``num_tokens`` most likely next tokens after ``prefix``, as the text that continues it."""
        level, normalize = self.vocab["level"], self.vocab["normalize"]
        tokens = tokenize(prefix, level, normalize)
        unknown = sorted({t for t in tokens if t not in self.ids})
        if not tokens or unknown:
            raise SystemExit(f"the prefix must hold known tokens only (unknown: {unknown or 'empty prefix'})")
        state = self.zero_state()
        for t in tokens:  # read the prefix: its last step gives the first prediction
            logits, state = self.step(self.ids[t], state)
        text, previous = "", tokens[-1]
        for i in range(num_tokens):
            logits = logits.astype(np.float64)
            logits[self.unk] = -np.inf  # <unk> is never generated (as in rnnkit generate)
            nxt = int(np.argmax(logits))
            text += separator(previous, self.tokens[nxt], level) + self.tokens[nxt]
            previous = self.tokens[nxt]
            if i + 1 < num_tokens:  # the last token's successor is never needed
                logits, state = self.step(nxt, state)
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a file written by `rnnkit export` (ONNX format)")
    parser.add_argument("--prefix", default="", help="text to continue (default: the prompt stored at training)")
    parser.add_argument("--num-tokens", type=int, default=200)
    args = parser.parse_args()
    gen = Generator(args.model)
    prefix = args.prefix or gen.prompt or "the "
    print(prefix + gen.greedy(prefix, args.num_tokens))  # as rnnkit generate prints it


if __name__ == "__main__":
    sys.exit(main())
