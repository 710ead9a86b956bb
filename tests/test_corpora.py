"""Corpora: resolution order, atomic checksum-verified download (local HTTP server), embedded corpus, bad input."""

import hashlib
import http.server
import os
import threading
import zipfile
from pathlib import Path

import pytest

from rnnkit.data import CORPORA, CorpusInfo, cache_dir, load_corpus, resolve_corpus_path
from rnnkit.data.corpora import STDLIB_MODULES

TEXT = "the time traveller (for so it will be convenient to speak of him)\n" * 50
SHA1 = hashlib.sha1(TEXT.encode()).hexdigest()
DATA_DIR = os.environ.get("RNNKIT_DATA_DIR")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty user cache and no data directory: the download path is the only way left."""
    monkeypatch.delenv("RNNKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802
        if self.path == "/truncated.txt":  # promises 10000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "10000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "toy.txt").write_text(TEXT)
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _register(monkeypatch, url, sha1=SHA1, **kw):
    monkeypatch.setitem(CORPORA, "toy", CorpusInfo(filename="toy.txt", url=url, sha1=sha1, licence="test", **kw))


def test_download_is_verified_cached_and_reused(cache, server, monkeypatch):
    base, root = server
    _register(monkeypatch, f"{base}/toy.txt")
    c = load_corpus("toy")
    assert c.text == TEXT and c.sha1 == SHA1 and c.size == len(TEXT) and c.name == "toy"
    assert Path(c.source) == (cache / "toy.txt").resolve()
    assert sorted(p.name for p in cache.iterdir()) == ["toy.txt"]  # no temporary file left
    (root / "toy.txt").unlink()  # second load comes from the cache, not the network
    assert load_corpus("toy").text == TEXT


def test_checksum_mismatch_removes_the_download(cache, server, monkeypatch):
    base, _ = server
    _register(monkeypatch, f"{base}/toy.txt", sha1="0" * 40)
    with pytest.raises(ValueError, match=f"checksum mismatch .*sha1 {SHA1}, expected 0000.*the download was removed"):
        load_corpus("toy")
    assert list(cache.iterdir()) == []


def test_interrupted_download_leaves_nothing(cache, server, monkeypatch):
    base, _ = server
    _register(monkeypatch, f"{base}/truncated.txt")
    with pytest.raises(ValueError, match="downloading .*truncated.txt failed"):
        load_corpus("toy")
    assert list(cache.iterdir()) == []


def test_offline_error_is_one_line_naming_file_and_directories(cache, monkeypatch):
    _register(monkeypatch, "http://127.0.0.1:9/toy.txt")  # discard port: connection refused
    with pytest.raises(ValueError) as e:
        load_corpus("toy")
    msg = str(e.value)
    assert "\n" not in msg and "put toy.txt in $RNNKIT_DATA_DIR (unset) or " + str(cache) in msg
    with pytest.raises(ValueError, match="downloads disabled"):
        resolve_corpus_path("toy", download=False)


def test_zip_member_is_extracted(cache, tmp_path, monkeypatch):
    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("toy/pairs.txt", TEXT)
    zsha1 = hashlib.sha1(archive.read_bytes()).hexdigest()
    _register(monkeypatch, archive.as_uri(), sha1=zsha1, member="toy/pairs.txt", text_sha1=SHA1)
    assert load_corpus("toy").sha1 == SHA1
    assert sorted(p.name for p in cache.iterdir()) == ["toy.txt"]
    _register(monkeypatch, archive.as_uri(), sha1=zsha1, member="toy/missing.txt")
    (cache / "toy.txt").unlink()
    with pytest.raises(ValueError, match="has no member 'toy/missing.txt'"):
        load_corpus("toy")
    assert list(cache.iterdir()) == []


def test_resolution_order_path_then_data_dir_then_cache(tmp_path, monkeypatch):
    data, cached = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    cached.mkdir()
    (cached / "toy.txt").write_text("from the cache")
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(cached))
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(data))
    _register(monkeypatch, "http://127.0.0.1:9/toy.txt")
    assert resolve_corpus_path("toy") == cached / "toy.txt"
    (data / "toy.txt").write_text("from the data dir")
    assert load_corpus("toy").text == "from the data dir"
    explicit = tmp_path / "mine.txt"
    explicit.write_text("explicit")
    c = load_corpus(explicit)
    assert (c.text, c.name, c.source) == ("explicit", "mine.txt", str(explicit.resolve()))


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("RNNKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rnnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "rnnkit"
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_stdlib_corpus_is_deterministic_and_large(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no file named "stdlib" in the way
    a, b = load_corpus(), load_corpus("stdlib")
    assert a.name == "stdlib" and a.source == "embedded"
    assert a.sha1 == b.sha1 == hashlib.sha1(a.text.encode()).hexdigest() and a.size == len(a.text.encode())
    assert a.size >= 500_000
    for module in STDLIB_MODULES:
        assert f"# ===== {module}.py =====\n" in a.text
    assert a.metadata() == {"name": "stdlib", "source": "embedded", "sha1": a.sha1, "size": a.size}
    assert "text" not in repr(a) and len(repr(a)) < 200


@pytest.mark.skipif(not DATA_DIR, reason="RNNKIT_DATA_DIR not set")
@pytest.mark.parametrize("name", ["timemachine", "tinyshakespeare", "fra-eng"])
def test_named_corpora_in_data_dir_match_published_sha1(name):
    if not (Path(DATA_DIR) / CORPORA[name].filename).is_file():
        pytest.skip(f"{CORPORA[name].filename} not in {DATA_DIR}")
    c = load_corpus(name)
    assert c.sha1 == CORPORA[name].file_sha1 and c.name == name
    assert "tatoeba.org" in CORPORA["fra-eng"].licence


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (b"abc\x00def", "looks binary .*NUL bytes"),
        (b"caf\xe9 au lait", r"not valid UTF-8 \(byte 3\); convert it"),
    ],
)
def test_bad_files_get_one_clear_line(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as e:
        load_corpus(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_file_unknown_name_and_directory(tmp_path):
    with pytest.raises(ValueError, match=r"corpus file .*nope\.txt does not exist; check the path"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="unknown corpus 'shakespear'; use a path .* or one of: stdlib, timemachine"):
        load_corpus("shakespear")
    with pytest.raises(ValueError, match="is not a regular file"):
        load_corpus(tmp_path)
    with pytest.raises(ValueError, match=r"built in memory and has no file; load it with load_corpus\('stdlib'\)"):
        resolve_corpus_path("stdlib")
