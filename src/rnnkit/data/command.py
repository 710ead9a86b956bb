"""``rnnkit data``: list the named corpora, fetch one into the cache, or describe any corpus as a model sees it.

rnnkit data --list                                  # named corpora, licences, where each one resolves
rnnkit data --data timemachine --normalize d2l      # size, sha1, vocabulary, split sizes, top tokens
rnnkit data --data tinyshakespeare                  # downloads into the cache if it is nowhere else
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Literal

from rnnkit.config import parse_config

PROG = "rnnkit data"


@dataclass
class DataConfig:
    data: str = "stdlib"
    """corpus name (stdlib, timemachine, tinyshakespeare, fra-eng) or path to a UTF-8 text file"""
    level: Literal["char", "word"] = "char"
    """tokenisation: characters, or words and punctuation marks"""
    normalize: Literal["none", "d2l"] = "none"
    """none keeps the text; d2l keeps letters only (runs of other characters -> one space), lower-cased"""
    min_freq: int = 0
    """tokens seen fewer times map to <unk>"""
    split: tuple[float, ...] = (0.9, 0.05, 0.05)
    """train,val,test fractions of the token stream, contiguous, in this order"""
    download: bool = True
    """download a named corpus into the cache when it is not on this machine"""

    def __post_init__(self) -> None:
        if self.min_freq < 0:
            raise ValueError(f"--min_freq must be >= 0, got {self.min_freq}")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"--split must be three fractions >= 0 summing to 1, e.g. 0.9,0.05,0.05; got {self.split}")


def describe(cfg: DataConfig) -> dict[str, Any]:
    """Facts about a corpus as the language model would see it (JSON-ready)."""
    from rnnkit.data import CORPORA, Vocab, load_corpus, split_ids

    corpus = load_corpus(cfg.data, download=cfg.download)
    vocab = Vocab.from_text(corpus.text, cfg.level, cfg.normalize, cfg.min_freq)
    ids = vocab.encode(corpus.text)
    train, val, test = split_ids(ids, cfg.split)
    info = CORPORA.get(corpus.name)
    return {
        "corpus": corpus.metadata(),
        "licence": info.licence if info else ("Python Software Foundation License" if corpus.name == "stdlib" else ""),
        "level": cfg.level,
        "normalize": cfg.normalize,
        "tokens": len(ids),
        "unknown": sum(1 for i in ids if i == 0),
        "vocab_size": len(vocab),
        "split": [len(train), len(val), len(test)],
        "top_tokens": vocab.token_freqs[:10],
    }


def list_corpora() -> list[dict[str, Any]]:
    """Every named corpus with its licence and the file it resolves to here (None: would be downloaded)."""
    from rnnkit.data import CORPORA, DEFAULT_CORPUS, resolve_corpus_path

    rows = [{"name": DEFAULT_CORPUS, "file": "embedded", "licence": "Python Software Foundation License", "url": ""}]
    for name, info in CORPORA.items():
        try:
            found: str | None = str(resolve_corpus_path(name, download=False))
        except ValueError:
            found = None
        rows.append({"name": name, "file": found, "licence": info.licence, "url": info.url, "sha1": info.sha1})
    return rows


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true", help="list the named corpora and where each one is found")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(
        DataConfig,
        argv,
        prog=PROG,
        description="Describe a corpus (size, sha1, vocabulary, split) or list the named corpora.",
        extra=_extra,
    )
    try:
        if ns.list:
            rows = list_corpora()
            if ns.json:
                print(json.dumps(rows, indent=2))
            for r in [] if ns.json else rows:
                where = r["file"] or f"not here: downloaded on first use from {r['url']}"
                print(f"{r['name']:<16} {where}\n{'':<16} licence: {r['licence']}")
            if not ns.json:
                from rnnkit.data import cache_dir

                print(
                    f"searched: $RNNKIT_DATA_DIR ({os.environ.get('RNNKIT_DATA_DIR') or 'unset'}), cache {cache_dir()}"
                )
            return 0
        facts = describe(cfg)
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(facts, indent=2))
        return 0
    c = facts["corpus"]
    train, val, test = facts["split"]
    top = ", ".join(f"{t!r} {n:,}" for t, n in facts["top_tokens"])
    print(f"corpus {c['name']} | {c['source']} | {c['size']:,} bytes | sha1 {c['sha1']}")
    if facts["licence"]:
        print(f"licence: {facts['licence']}")
    print(
        f"tokens {facts['tokens']:,} ({facts['level']}, normalize={facts['normalize']}) "
        f"| vocab {facts['vocab_size']:,} | <unk> {facts['unknown']:,} | split {train:,} / {val:,} / {test:,}"
    )
    print(f"most frequent: {top}")
    return 0
