"""The data layer: corpora (named, by path, embedded), tokenisation and vocabularies, and minibatches."""

from rnnkit.data.batches import (
    BatchIterator,
    eval_batches,
    eval_windows,
    random_batches,
    sequential_batches,
    split_ids,
)
from rnnkit.data.corpora import (
    CORPORA,
    DEFAULT_CORPUS,
    Corpus,
    CorpusInfo,
    cache_dir,
    load_corpus,
    read_text_file,
    resolve_corpus_path,
)
from rnnkit.data.vocab import UNK, Vocab, normalize_text, tokenize

__all__ = [
    "CORPORA",
    "DEFAULT_CORPUS",
    "UNK",
    "BatchIterator",
    "Corpus",
    "CorpusInfo",
    "Vocab",
    "cache_dir",
    "eval_batches",
    "eval_windows",
    "load_corpus",
    "normalize_text",
    "random_batches",
    "read_text_file",
    "resolve_corpus_path",
    "sequential_batches",
    "split_ids",
    "tokenize",
]
