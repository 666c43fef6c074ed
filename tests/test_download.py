"""The download path against a local HTTP server on 127.0.0.1 (never the internet)."""
import gzip
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import data
from data.download import DownloadError, download, verify
from fixtures import idx_bytes

CONTENT = idx_bytes(np.arange(28 * 28 * 3, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28))
GOOD = gzip.compress(CONTENT)
CHECKSUM = ("content-sha256", hashlib.sha256(CONTENT).hexdigest())


class Handler(http.server.BaseHTTPRequestHandler):
    """/good/<f> serves the file, /missing/ 404s, /corrupt/ serves other bytes,
    /cut/ announces the full length and closes the connection half-way."""

    def do_GET(self):
        kind = self.path.strip("/").split("/")[0]
        if kind == "missing":
            self.send_error(404)
            return
        body = {"good": GOOD, "cut": GOOD, "corrupt": gzip.compress(b"something else")}.get(kind)
        if body is None:
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "cut":
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_success(server, tmp_path):
    path = download("f.gz", [f"{server}/good/"], tmp_path, CHECKSUM)
    assert open(path, "rb").read() == GOOD
    assert os.listdir(tmp_path) == ["f.gz"]


def test_404_mirror_then_good_one(server, tmp_path):
    path = download("f.gz", [f"{server}/missing/", f"{server}/good/"], tmp_path, CHECKSUM)
    assert verify(path, CHECKSUM) and os.listdir(tmp_path) == ["f.gz"]


@pytest.mark.parametrize("kind,reason", [("corrupt", "checksum mismatch"), ("cut", "IncompleteRead|incomplete"),
                                         ("missing", "Not Found")])
def test_failures_leave_no_file(server, tmp_path, kind, reason):
    with pytest.raises(DownloadError, match=reason) as err:
        download("f.gz", [f"{server}/{kind}/"], tmp_path, CHECKSUM)
    assert os.listdir(tmp_path) == []
    assert "copy f.gz into" in str(err.value) and str(tmp_path) in str(err.value)


def test_offline_message(tmp_path):
    with pytest.raises(DownloadError, match="If this machine is offline, copy f.gz into"):
        download("f.gz", [closed_port_url()], tmp_path, CHECKSUM, timeout=5)
    assert os.listdir(tmp_path) == []


def test_recompressed_copy_passes_content_checksum(tmp_path):
    p = tmp_path / "a.gz"
    p.write_bytes(gzip.compress(CONTENT, compresslevel=1))
    assert verify(p, CHECKSUM)
    assert not verify(p, ("sha256", CHECKSUM[1]))
    p.write_bytes(b"\x1f\x8bbroken")
    assert not verify(p, CHECKSUM)


def test_dataset_download_through_mirrors(server, tmp_path, monkeypatch):
    monkeypatch.setitem(data.mnist.DATASETS["mnist"], "sha256",
                        {name: CHECKSUM[1] for name in data.mnist.DATASETS["mnist"]["sha256"]})
    with pytest.raises(DownloadError):
        data.load_mnist(tmp_path, mirrors=[f"{server}/corrupt/"])
    assert not os.path.exists(tmp_path / "mnist") or os.listdir(tmp_path / "mnist") == []
    path = data.mnist.load_split  # images and labels both come from the same fixture here
    with pytest.raises(data.DataFileError):
        path("mnist", "train", tmp_path, mirrors=[f"{server}/good/"])  # labels file has image magic
    assert sorted(os.listdir(tmp_path / "mnist")) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_cifar_archive_download_verified_by_md5(tmp_path, monkeypatch):
    from fixtures import write_cifar_archive
    served = tmp_path / "served"
    archive = write_cifar_archive(served, per_batch=10)
    digest = hashlib.md5(open(archive, "rb").read()).hexdigest()

    class ArchiveHandler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        data_dir = tmp_path / "data"
        with pytest.raises(DownloadError, match="checksum mismatch"):  # the real archive's MD5
            data.load_cifar10(data_dir, mirrors=[url])
        assert os.listdir(data_dir / "cifar10") == []
        monkeypatch.setattr(data.cifar, "ARCHIVE_MD5", digest)
        (x, y), (xt, yt) = data.load_cifar10(data_dir, mirrors=[url])
        assert x.shape == (50, 3, 32, 32) and xt.shape == (10, 3, 32, 32)
        assert os.listdir(data_dir / "cifar10") == ["cifar-10-binary.tar.gz"]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def blackhole():
    """A URL whose connections hang unanswered: a listener whose one-slot backlog is
    already taken, so the kernel drops further connection attempts (as a
    firewalled mirror does)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=1)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        filler.close()
        listener.close()


def test_unreachable_mirrors_fail_within_the_connect_timeout(blackhole, tmp_path):
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="timed out") as err:
        download("f.gz", [blackhole, blackhole], tmp_path, CHECKSUM, timeout=30, connect_timeout=0.5)
    assert time.perf_counter() - start < 5  # two mirrors, 0.5 s each; the 30 s read timeout never applies
    assert str(err.value).count("timed out") == 2 and os.listdir(tmp_path) == []


class SlowHandler(Handler):
    def do_GET(self):
        time.sleep(1.5)
        super().do_GET()


def test_a_slow_live_server_gets_the_read_timeout_not_the_connect_timeout(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/good/"
        path = download("f.gz", [url], tmp_path, CHECKSUM, timeout=10, connect_timeout=0.5)
        assert open(path, "rb").read() == GOOD
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_part_files_of_killed_downloads_are_removed(server, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stale = tmp_path / f".f.gz.{socket.gethostname()}.{proc.pid}.0123abcd.part"
    legacy = tmp_path / ".f.gz.k2j3h4_x.part"
    other_file = tmp_path / f".g.gz.{socket.gethostname()}.{proc.pid}.0123abcd.part"
    for p in (stale, legacy, other_file):
        p.write_bytes(b"partial")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    download("f.gz", [f"{server}/good/"], tmp_path, CHECKSUM)
    assert sorted(os.listdir(tmp_path)) == sorted(["f.gz", other_file.name])
