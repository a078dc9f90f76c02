"""Downloading the published files, against a local HTTP server on 127.0.0.1 (no real network)."""

from __future__ import annotations

import hashlib
import http.server
from pathlib import Path
import threading

import pytest

from brainfly.connectome import best_available_dataset, download_dataset, load_connectome
from brainfly.connectome import download as dl
from brainfly.connectome.files import PINNED_FILES, PinnedFile
from brainfly.errors import ChecksumError, DataNotFoundError, DownloadError

COMP, CONN = dl.REMOTE_DATASETS["flywire-783"]


class _Server:
    """Serves ``files`` (name -> bytes); supports Range; can cut a response short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before closing (once)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _serve(self, body: bool) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((self.command, name, self.headers.get("Range")))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                payload = data[start:]
                cut = server.cut_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

            def do_GET(self):
                self._serve(True)

            def do_HEAD(self):
                self._serve(False)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def gets(self, name: str) -> int:
        return sum(1 for m, n, _ in self.requests if m == "GET" and n == name)


@pytest.fixture
def server(monkeypatch, tmp_path):
    s = _Server()
    s.thread.start()
    monkeypatch.setenv("BRAINFLY_DATA_URL", s.url)
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINFLY_DATA", raising=False)
    monkeypatch.setattr(dl, "_REACHABLE", {})
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def published(server, tmp_path, connectome_files, monkeypatch):
    """Generated files served under the published v783 names, pinned to their own digests."""
    src = tmp_path / "src"
    connectome_files(src, comp_name=COMP, conn_name=CONN)
    for name in (COMP, CONN):
        data = (src / name).read_bytes()
        server.files[name] = data
        kind = "completeness" if name == COMP else "connectivity"
        monkeypatch.setitem(PINNED_FILES, name, PinnedFile(name, "783", kind, hashlib.sha256(data).hexdigest(),
                                                           len(data), 0))
    return server


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_caches(published, tmp_path):
    dest = tmp_path / "dl"
    path = dl.download_file(CONN, dest, progress=False)
    assert path.read_bytes() == published.files[CONN]
    assert published.gets(CONN) == 1
    dl.download_file(CONN, dest, progress=False)  # second call: no request at all
    assert published.gets(CONN) == 1
    assert _leftovers(dest) == [CONN]


def test_load_dataset_downloads_once(published):
    net = load_connectome("flywire-783", progress=False)
    assert net.name == "flywire-783" and net.meta["checksums_verified"] and not net.synthetic
    assert net.n_connections == 4
    assert published.gets(COMP) == 1 and published.gets(CONN) == 1
    again = load_connectome("flywire-783", progress=False)
    assert again.meta["cache"] == "hit"
    assert published.gets(COMP) == 1 and published.gets(CONN) == 1
    assert best_available_dataset() == "flywire-783"


def test_wrong_checksum_leaves_nothing(published, tmp_path):
    published.files[CONN] = published.files[CONN][:-1] + b"\x00"
    dest = tmp_path / "dl"
    with pytest.raises(ChecksumError, match=CONN) as e:
        dl.download_file(CONN, dest, progress=False)
    assert "SHA-256" in str(e.value)
    assert _leftovers(dest) == []


def test_truncated_file_is_refused(published, tmp_path):
    published.files[CONN] = published.files[CONN][: len(published.files[CONN]) // 2]
    dest = tmp_path / "dl"
    with pytest.raises(ChecksumError, match=CONN):
        dl.download_file(CONN, dest, progress=False)
    assert _leftovers(dest) == []


def test_interrupted_download_resumes(published, tmp_path):
    dest = tmp_path / "dl"
    published.cut_after[CONN] = 100
    with pytest.raises(DownloadError, match="resume"):
        dl.download_file(CONN, dest, progress=False)
    assert _leftovers(dest) == [CONN + ".part"]  # kept, never taken as complete
    assert not (dest / CONN).exists()
    path = dl.download_file(CONN, dest, progress=False)
    assert path.read_bytes() == published.files[CONN]
    assert published.requests[-1] == ("GET", CONN, "bytes=100-")
    assert _leftovers(dest) == [CONN]


def test_download_dataset_names(published, tmp_path):
    folder = download_dataset("flywire-783", tmp_path / "dl", progress=False)
    assert _leftovers(folder) == sorted([COMP, CONN])
    with pytest.raises(ValueError, match="flywire-783"):
        download_dataset("flywire-788", progress=False)


def test_no_network_says_what_to_get(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINFLY_DATA_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINFLY_DATA", raising=False)
    monkeypatch.setattr(dl, "_REACHABLE", {})
    with pytest.raises(DataNotFoundError) as e:
        load_connectome("flywire-630", progress=False)
    msg = str(e.value)
    for text in ("2023_03_23_connectivity_630_final.parquet", "http://127.0.0.1:9/", str(tmp_path / "cache" / "data"),
                 "--data", "86,630,944"):
        assert text in msg
    with pytest.raises(DataNotFoundError, match="download disabled"):
        load_connectome("flywire-783", progress=False, download=False)
    assert best_available_dataset() == "synthetic"


def test_http_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        dl.download_file(COMP, tmp_path / "dl", progress=False)


def test_local_data_folder_preferred(server, tmp_path, connectome_files, monkeypatch):
    """A dataset found in $BRAINFLY_DATA is used without asking the server."""
    folder = tmp_path / "mine"
    connectome_files(folder, comp_name="2025_Completeness_783.csv", conn_name="2025_Connectivity_783.parquet")
    monkeypatch.setenv("BRAINFLY_DATA", str(folder))
    with pytest.raises(ChecksumError):  # a 2025_ neuron list must hold the published content
        load_connectome("flywire-783", progress=False)
    assert server.requests == []
    net = load_connectome("flywire-783", progress=False, verify_checksums=False)
    assert net.n_neurons == 5 and server.requests == []
    assert best_available_dataset() == "flywire-783"
    assert load_connectome(progress=False, verify_checksums=False).meta["choice"].startswith("data folder from $BRAINFLY_DATA")


def test_stale_part_longer_than_served_file_is_dropped(published, tmp_path):
    dest = tmp_path / "dl"
    dest.mkdir()
    size = len(published.files[CONN])
    # a stale part as long as the pinned size but with different bytes: verified, refused, removed
    (dest / (CONN + ".part")).write_bytes(b"\0" * size)
    with pytest.raises(ChecksumError):
        dl.download_file(CONN, dest, progress=False)
    assert _leftovers(dest) == []
    assert dl.download_file(CONN, dest, progress=False).read_bytes() == published.files[CONN]
