"""Tokenisation and the vocabulary: text <-> token ids.

Character level is the char-rnn / d2l default; word level splits words and punctuation marks. d2l's
normalisation (``normalize="d2l"``) turns every run of non-letters into one space and lower-cases, which
on *The Time Machine* leaves 26 letters + space: with ``<unk>`` that is d2l's 28-token vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

Level = Literal["char", "word"]
Normalize = Literal["none", "d2l"]

UNK = "<unk>"
_NON_LETTERS = re.compile(r"[^A-Za-z]+")
# a word (letters/digits/underscore, inner apostrophes kept: "don't") or a single other non-space character
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
# word-level decoding: no space before closing punctuation, none after an opening bracket
_NO_SPACE_BEFORE = frozenset(",.!?;:)]}")
_NO_SPACE_AFTER = frozenset("([{")


def normalize_text(text: str, normalize: Normalize = "none") -> str:
    """Apply a normalisation: ``"none"`` keeps the text, ``"d2l"`` keeps only letters (runs of others -> one space)."""
    if normalize == "none":
        return text
    if normalize == "d2l":
        return _NON_LETTERS.sub(" ", text).lower()
    raise ValueError(f"unknown normalize={normalize!r}; use 'none' or 'd2l'")


def tokenize(text: str, level: Level = "char", normalize: Normalize = "none") -> list[str]:
    """Split ``text`` into tokens: characters (``"char"``) or words and punctuation marks (``"word"``).

    >>> tokenize("It's 4 o'clock!", "word")
    ["It's", '4', "o'clock", '!']
    >>> tokenize("It's 4 o'clock!", "word", normalize="d2l")
    ['it', 's', 'o', 'clock']
    """
    text = normalize_text(text, normalize)
    if level == "char":
        return list(text)
    if level == "word":
        return text.split() if normalize == "d2l" else _WORD.findall(text)
    raise ValueError(f"unknown level={level!r}; use 'char' or 'word'")


def _flatten(tokens: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for t in tokens:
        if isinstance(t, str):
            out.append(t)
        elif isinstance(t, (list, tuple)):  # d2l passes lists of lines' tokens
            out.extend(_flatten(t))
        else:
            raise TypeError(f"tokens must be strings or lists of strings, got {type(t).__name__}")
    return out


def char_codes(text: str) -> np.ndarray:
    """The code points of ``text`` as a uint32 array (a view of its UTF-32 encoding: no Python list)."""
    return np.frombuffer(bytearray(text.encode("utf-32-le")), dtype=np.int32)  # writable: torch can share it


class Vocab:
    """Token <-> id map: ``<unk>`` is id 0, ``reserved`` tokens follow, then tokens by descending frequency.

    Ties in frequency are broken by code point order, so the same token multiset always gives the same ids.
    Tokens seen fewer than ``min_freq`` times map to ``<unk>``. ``level`` and ``normalize`` record how the
    text was tokenised, so :meth:`tokenize` and :meth:`decode` treat new text (a generation prefix) the same way.
    """

    def __init__(
        self,
        tokens: Iterable[Any] = (),
        min_freq: int = 0,
        reserved: Sequence[str] = (),
        *,
        level: Level | None = None,
        normalize: Normalize = "none",
    ) -> None:
        if min_freq < 0:
            raise ValueError(f"min_freq must be >= 0, got {min_freq}")
        flat = _flatten(tokens)
        if level is None:  # infer: char vocabularies hold single characters only
            level = "char" if all(len(t) == 1 for t in flat) else "word"
        if level not in ("char", "word"):
            raise ValueError(f"unknown level={level!r}; use 'char' or 'word'")
        if normalize not in ("none", "d2l"):
            raise ValueError(f"unknown normalize={normalize!r}; use 'none' or 'd2l'")
        self.level: Level = level
        self.normalize: Normalize = normalize
        self.min_freq = min_freq
        self.reserved: tuple[str, ...] = tuple(dict.fromkeys(r for r in reserved if r != UNK))
        self._index(Counter(flat))

    def _index(self, counts: Mapping[str, int]) -> None:
        min_freq = self.min_freq
        #: (token, count) for every token seen, most frequent first (ties: code point order)
        self.token_freqs: list[tuple[str, int]] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        special = [UNK, *self.reserved]
        taken = set(special)
        kept = [t for t, n in self.token_freqs if n >= min_freq and t not in taken]
        self.idx_to_token: list[str] = special + kept
        self.token_to_idx: dict[str, int] = {t: i for i, t in enumerate(self.idx_to_token)}

    @classmethod
    def from_char_codes(cls, codes: np.ndarray, min_freq: int = 0, normalize: Normalize = "none") -> Vocab:
        """The character vocabulary of a text given as code points (:func:`char_codes`): the same as
        ``Vocab(list(text), level="char")``, counted in one pass (a 10^8-character corpus in about a second)."""
        import torch

        vocab = cls((), min_freq, level="char", normalize=normalize)
        counts = torch.bincount(torch.from_numpy(codes)).numpy()  # ~10x NumPy's, which copies to int64 first
        present = np.flatnonzero(counts)
        vocab._index({chr(c): int(counts[c]) for c in present})
        return vocab

    def encode_char_codes(self, codes: np.ndarray) -> np.ndarray:
        """Ids (uint8 for up to 256 tokens, else int32) of a character-level text given as code points; unknown
        characters -> ``<unk>``. Widen with torch (``torch.from_numpy(ids).long()``): NumPy's astype is far slower."""
        if self.level != "char":
            raise ValueError("encode_char_codes needs a character-level vocabulary")
        top = int(codes.max()) + 1 if len(codes) else 1
        # code point -> id (0 = <unk>) in the narrowest type: gathering into int64 directly is several times slower
        lut = np.zeros(top, dtype=np.uint8 if len(self) <= 256 else np.int32)
        for token, i in self.token_to_idx.items():
            if len(token) == 1 and ord(token) < top:
                lut[ord(token)] = i
        return lut[codes]

    @classmethod
    def from_text(
        cls,
        text: str,
        level: Level = "char",
        normalize: Normalize = "none",
        min_freq: int = 0,
        reserved: Sequence[str] = (),
    ) -> Vocab:
        """Tokenise ``text`` and build its vocabulary, remembering ``level`` and ``normalize``."""
        return cls(tokenize(text, level, normalize), min_freq, reserved, level=level, normalize=normalize)

    # --- lookups -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __contains__(self, token: object) -> bool:
        return token in self.token_to_idx

    def __getitem__(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Id of a token (``<unk>``'s for unknown ones), or a list of ids for a list of tokens (as d2l)."""
        if isinstance(tokens, str):
            return self.token_to_idx.get(tokens, 0)
        return [self.token_to_idx.get(t, 0) for t in tokens]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.idx_to_token[:8])
        return f"Vocab(size={len(self)}, level={self.level!r}, normalize={self.normalize!r}, tokens=[{head}, …])"

    @property
    def unk(self) -> int:
        """Id of ``<unk>`` (always 0)."""
        return 0

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The distinct tokens of ``tokens`` that are not in the vocabulary, in first-seen order."""
        return list(dict.fromkeys(t for t in tokens if t not in self.token_to_idx))

    def to_tokens(self, ids: int | Iterable[int]) -> str | list[str]:
        """Token of one id, or tokens of a sequence of ids."""
        if isinstance(ids, int):
            return self.idx_to_token[ids]
        return [self.idx_to_token[int(i)] for i in ids]

    # --- text <-> ids --------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Tokenise new text exactly as this vocabulary's corpus was (same level and normalisation)."""
        return tokenize(text, self.level, self.normalize)

    def encode(self, tokens: str | Iterable[str]) -> list[int]:
        """Ids of ``tokens``; a string is first tokenised with :meth:`tokenize`. Unknown tokens -> ``<unk>``."""
        if isinstance(tokens, str):
            tokens = self.tokenize(tokens)
        return [self.token_to_idx.get(t, 0) for t in tokens]

    def separator(self, previous: str | None, token: str) -> str:
        """What goes between ``previous`` and ``token`` when decoding: nothing at character level; at word
        level a space, except before closing punctuation (``, . ! ? ; : ) ] }``) and after opening brackets."""
        if self.level == "char" or previous is None:
            return ""
        if token in _NO_SPACE_BEFORE or previous in _NO_SPACE_AFTER:
            return ""
        return " "

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: tokens joined with "" at character level, with :meth:`separator` at word level."""
        parts: list[str] = []
        previous = None
        for i in ids:
            token = self.idx_to_token[int(i)]
            parts.append(self.separator(previous, token) + token)
            previous = token
        return "".join(parts)

    # --- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; :meth:`from_dict` rebuilds an identical vocabulary."""
        return {
            "level": self.level,
            "normalize": self.normalize,
            "min_freq": self.min_freq,
            "reserved": list(self.reserved),
            "idx_to_token": list(self.idx_to_token),
            "token_freqs": [[t, n] for t, n in self.token_freqs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        """Inverse of :meth:`to_dict`; checks that the stored ids are consistent."""
        missing = {"level", "normalize", "min_freq", "reserved", "idx_to_token", "token_freqs"} - set(d)
        if missing:
            raise ValueError(f"vocabulary dict lacks {sorted(missing)}; it must come from Vocab.to_dict()")
        vocab = cls.__new__(cls)
        vocab.level = d["level"]
        vocab.normalize = d["normalize"]
        vocab.min_freq = int(d["min_freq"])
        vocab.reserved = tuple(d["reserved"])
        vocab.token_freqs = [(str(t), int(n)) for t, n in d["token_freqs"]]
        vocab.idx_to_token = [str(t) for t in d["idx_to_token"]]
        vocab.token_to_idx = {t: i for i, t in enumerate(vocab.idx_to_token)}
        if not vocab.idx_to_token or vocab.idx_to_token[0] != UNK or len(vocab.token_to_idx) != len(vocab):
            raise ValueError("vocabulary dict is corrupt: idx_to_token must start with '<unk>' and hold no duplicates")
        return vocab
