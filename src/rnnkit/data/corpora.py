"""Text corpora: named downloads with checksums, any UTF-8 file by path, and an embedded default.

``load_corpus(name_or_path)`` resolves, in this order:

1. an explicit existing file path (``load_corpus("notes.txt")``);
2. ``$RNNKIT_DATA_DIR/<filename>`` for a named corpus (e.g. a folder of corpora shared by several checkouts);
3. the user cache: ``$RNNKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``;
4. a download into that cache (temporary file + rename, sha1 verified before it becomes visible).

``"stdlib"`` (the default) needs none of these: it is built from the running Python's own standard
library source, so a fresh machine with no network can still train a (code) language model.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import sysconfig
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rnnkit.atomic import atomic_file

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "RNNKIT_DATA_DIR"
CACHE_DIR_ENV = "RNNKIT_CACHE_DIR"
DEFAULT_CORPUS = "stdlib"


@dataclass(frozen=True)
class CorpusInfo:
    """Where a named corpus comes from and what it must hash to."""

    filename: str
    """file name looked up in $RNNKIT_DATA_DIR and the cache (the plain text file)"""
    url: str
    """download address (a text file, or a zip archive when ``member`` is set)"""
    sha1: str
    """sha1 of the downloaded bytes (of the archive when ``member`` is set)"""
    licence: str
    """licence of the text, with the attribution it requires"""
    description: str = ""
    """one line saying what the text is"""
    member: str | None = None
    """path of the text file inside the downloaded zip archive, if the download is one"""
    text_sha1: str | None = None
    """sha1 of the text file itself when it differs from ``sha1`` (the archive's)"""

    @property
    def file_sha1(self) -> str:
        """sha1 the plain text file must have."""
        return self.text_sha1 or self.sha1


#: named corpora. fra-eng's licence requires the attribution below wherever it is shipped.
CORPORA: dict[str, CorpusInfo] = {
    "timemachine": CorpusInfo(
        filename="timemachine.txt",
        url="http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",
        sha1="090b5e7e70c295757f55df93cb0a180b9691891a",
        licence="public domain (H. G. Wells, 1895)",
        description="The Time Machine by H. G. Wells, the copy d2l uses (178,979 bytes)",
    ),
    "tinyshakespeare": CorpusInfo(
        filename="tinyshakespeare.txt",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha1="04486597058d11dcc2c556b1d0433891eb639d2e",
        licence="public domain (Shakespeare); file from karpathy/char-rnn",
        description="tiny-shakespeare from char-rnn / nanoGPT (1,115,394 bytes, 65 characters)",
    ),
    "fra-eng": CorpusInfo(
        filename="fra-eng.txt",
        url="http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip",
        sha1="94646ad1522d915e7b0f9296181140edcf86a4f5",
        licence="CC BY 2.0 FR; attribution: www.manythings.org/anki and tatoeba.org",
        description="English<TAB>French sentence pairs (Tatoeba via manythings.org, d2l's fra-eng.zip)",
        member="fra-eng/fra.txt",
        text_sha1="c43f99dce27311d3afd4d3e0716848194cfcc103",
    ),
}

# Pure-Python modules that every CPython >= 3.10 ships (checked: all 30 are single files in 3.10.13,
# 3.11.7, 3.12.1 and 3.13.0; ``string`` becomes a package in 3.14, read from its __init__.py), sorted;
# about 1 MB of idiomatic Python. The text depends on the Python version, which is why every run records
# the corpus' size and sha1.
STDLIB_MODULES: tuple[str, ...] = (
    "argparse", "bisect", "calendar", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "difflib", "fractions", "functools", "gettext", "glob", "heapq", "numbers", "pprint", "queue",
    "random", "sched", "shlex", "shutil", "statistics", "string", "subprocess", "tempfile", "textwrap",
    "threading", "tokenize", "traceback", "weakref",
)  # fmt: skip


@dataclass(frozen=True)
class Corpus:
    """A loaded text and its fingerprint."""

    name: str
    """corpus name ("timemachine", "stdlib") or the file name for a path"""
    text: str
    """the whole text, decoded from UTF-8"""
    source: str
    """the file it was read from, or "embedded" for the stdlib corpus"""
    sha1: str
    """sha1 of the UTF-8 bytes"""
    size: int
    """size in bytes (UTF-8)"""

    def metadata(self) -> dict[str, Any]:
        """JSON-ready fingerprint for run metadata (everything but the text)."""
        return {"name": self.name, "source": self.source, "sha1": self.sha1, "size": self.size}

    def __repr__(self) -> str:  # the text can be megabytes: never print it whole
        return f"Corpus(name={self.name!r}, source={self.source!r}, size={self.size}, sha1={self.sha1[:12]}…)"


def cache_dir() -> Path:
    """The user cache for downloaded corpora: $RNNKIT_CACHE_DIR, $XDG_CACHE_HOME/rnnkit or ~/.cache/rnnkit."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rnnkit"
    return Path.home() / ".cache" / "rnnkit"


def _sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _where_to_put(info: CorpusInfo) -> str:
    data_dir = os.environ.get(DATA_DIR_ENV)
    places = [f"${DATA_DIR_ENV} ({data_dir})" if data_dir else f"${DATA_DIR_ENV} (unset)", str(cache_dir())]
    return f"put {info.filename} in " + " or ".join(places)


def _fetch(name: str, info: CorpusInfo, out: IO[bytes]) -> None:
    """Stream ``info.url`` into ``out`` and check its sha1; one ValueError line on any failure."""
    h = hashlib.sha1()
    try:
        with urllib.request.urlopen(info.url, timeout=60) as response:  # noqa: S310 (fixed URLs)
            expected = response.headers.get("Content-Length")
            received = 0
            for chunk in iter(lambda: response.read(1 << 16), b""):
                h.update(chunk)
                out.write(chunk)
                received += len(chunk)
            if expected is not None and received != int(expected):  # read(n) does not raise on a cut
                raise OSError(f"connection closed after {received} of {expected} bytes")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ValueError(
            f"corpus {name!r} is not on this machine and downloading {info.url} failed ({reason}); "
            f"{_where_to_put(info)}"
        ) from None
    if h.hexdigest() != info.sha1:
        raise ValueError(
            f"corpus {name!r}: checksum mismatch for {info.url} (sha1 {h.hexdigest()}, expected {info.sha1}); "
            f"the download was removed; retry, or {_where_to_put(info)}"
        )


def _download(name: str, info: CorpusInfo, target: Path) -> None:
    """Fetch ``info.url`` to ``target`` atomically (sha1 verified before the file becomes visible); a zip
    archive is held in an anonymous temporary file and only its text member is written to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading corpus %r from %s", name, info.url)
    if info.member is None:
        with atomic_file(target, "wb") as out:
            _fetch(name, info, out)
    else:
        with tempfile.TemporaryFile() as archive:
            _fetch(name, info, archive)
            try:
                with zipfile.ZipFile(archive) as zf, zf.open(info.member) as src, atomic_file(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except KeyError:
                raise ValueError(
                    f"corpus {name!r}: the archive from {info.url} has no member {info.member!r}"
                ) from None
    logger.info("corpus %r saved to %s", name, target)


def resolve_corpus_path(name: str | Path, *, download: bool = True) -> Path:
    """The file that holds corpus ``name`` (a path or a key of :data:`CORPORA`), downloading it if needed.

    Raises ``ValueError`` with one line saying where to put the file when it cannot be found or fetched.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    key = str(name)
    if key == DEFAULT_CORPUS:
        raise ValueError("the 'stdlib' corpus is built in memory and has no file; load it with load_corpus('stdlib')")
    if key not in CORPORA:
        if path.exists():
            raise ValueError(f"{path} is not a regular file; pass a UTF-8 text file or one of: {_names()}")
        if path.suffix or os.sep in key or "/" in key:
            raise ValueError(f"corpus file {path} does not exist; check the path, or use one of: {_names()}")
        raise ValueError(f"unknown corpus {key!r}; use a path to a UTF-8 text file or one of: {_names()}")
    info = CORPORA[key]
    candidates = []
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]).expanduser() / info.filename)
    cached = cache_dir() / info.filename
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not download:
        raise ValueError(f"corpus {key!r} is not on this machine (downloads disabled); {_where_to_put(info)}")
    _download(key, info, cached)
    return cached


def _names() -> str:
    return ", ".join([DEFAULT_CORPUS, *CORPORA])


def read_text_file(path: str | Path) -> str:
    """Read a UTF-8 text file, refusing empty, binary (NUL bytes) and non-UTF-8 files with one clear line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"corpus file {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory; pass a UTF-8 text file") from None
    except OSError as e:
        raise ValueError(f"cannot read corpus file {path}: {e.strerror}") from None
    if not data:
        raise ValueError(f"corpus file {path} is empty; pass a file with text in it")
    if b"\x00" in data:
        raise ValueError(f"corpus file {path} looks binary (it has NUL bytes); pass a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"corpus file {path} is not valid UTF-8 (byte {e.start}); convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    return text


def stdlib_text() -> str:
    """The embedded corpus: the source of :data:`STDLIB_MODULES`, each under a header line, LF line endings."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    missing = []
    for module in STDLIB_MODULES:
        path = root / f"{module}.py"
        if not path.is_file():  # a module that later became a package (string, in 3.14)
            path = root / module / "__init__.py"
        if not path.is_file():
            missing.append(module)
            continue
        source = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
        parts.append(f"# ===== {module}.py =====\n{source}")
    if len(missing) > len(STDLIB_MODULES) // 3:  # a stripped-down Python (some containers drop sources)
        raise ValueError(
            f"the embedded 'stdlib' corpus needs Python's standard-library sources in {root}, but "
            f"{len(missing)} of {len(STDLIB_MODULES)} modules are missing; pass a text file or a named corpus instead"
        )
    if missing:
        logger.warning("stdlib corpus: %d modules missing from %s: %s", len(missing), root, ", ".join(missing))
    return "\n".join(parts)


def load_corpus(name_or_path: str | Path = DEFAULT_CORPUS, *, download: bool = True) -> Corpus:
    """Load a corpus by name (``"stdlib"``, ``"timemachine"``, ``"tinyshakespeare"``, ``"fra-eng"``) or path.

    >>> load_corpus("timemachine").size
    178979
    """
    path = Path(name_or_path).expanduser()
    if str(name_or_path) == DEFAULT_CORPUS and not path.is_file():
        text = stdlib_text()
        data = text.encode("utf-8")
        return Corpus(DEFAULT_CORPUS, text, "embedded", hashlib.sha1(data).hexdigest(), len(data))
    resolved = resolve_corpus_path(name_or_path, download=download)
    text = read_text_file(resolved)
    data = text.encode("utf-8")
    sha1 = hashlib.sha1(data).hexdigest()
    key = str(name_or_path)
    if key in CORPORA:
        name = key
        info = CORPORA[key]
        if sha1 != info.file_sha1:
            # a local copy that differs from the published file: allowed (it may be deliberate), but visible
            logger.warning("corpus %r at %s has sha1 %s, not the published %s", key, resolved, sha1, info.file_sha1)
    else:
        name = resolved.name
    source = str(resolved.resolve())
    return Corpus(name, text, source, sha1, len(data))
