"""Verified downloads: mirrors in order, progress bar, checksum, atomic rename.

A file is fetched into a temporary file next to its destination, checked, and
only then renamed into place; any failure removes the temporary file, so a
partial or corrupt download never sits where a reader would find it; a
``.part`` file left by a killed process is removed by the next download of that
file. Connecting has its own short timeout, so that unreachable mirrors fail
within seconds each, while a slow but live server gets the longer read timeout.
"""
import functools
import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zlib

from tqdm import tqdm

from .atomic import create_temporary, remove_stale

CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """Every mirror failed; the message says which file to put where."""


def file_digest(path, algorithm, content=False):
    """Hex digest of a file's bytes, or of its decompressed bytes with ``content=True``
    (for .gz files, so that a re-compressed copy of the same data passes)."""
    h = hashlib.new(algorithm)
    opener = gzip.open if content else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path, checksum):
    """``checksum`` is ``(algorithm, hex)`` over the file, or ``("content-" + algorithm, hex)``
    over its gzip-decompressed content. Returns True when it matches."""
    algorithm, expected = checksum
    content = algorithm.startswith("content-")
    try:
        return file_digest(path, algorithm.removeprefix("content-"), content) == expected
    except (OSError, EOFError, zlib.error):
        return False


class _Timeouts:
    """Connection mixin: ``connect_timeout`` while connecting (and the TLS handshake),
    then the request's own timeout for every read."""

    def __init__(self, *args, connect_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout

    def connect(self):
        read_timeout, self.timeout = self.timeout, self.connect_timeout
        try:
            super().connect()
        finally:
            self.timeout = read_timeout
        self.sock.settimeout(read_timeout)


class _HTTPConnection(_Timeouts, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Timeouts, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect_timeout):
        super().__init__()
        self.connect_timeout = connect_timeout

    def http_open(self, req):
        return self.do_open(functools.partial(_HTTPConnection, connect_timeout=self.connect_timeout), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect_timeout):
        super().__init__()
        self.connect_timeout = connect_timeout

    def https_open(self, req):
        return self.do_open(functools.partial(_HTTPSConnection, connect_timeout=self.connect_timeout), req,
                            context=self._context)


def _fetch_one(opener, url, out, desc, timeout):
    with opener.open(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False, disable=None) as bar:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise http.client.IncompleteRead(b"", total - received)


def download(filename, mirrors, directory, checksum, timeout=30, connect_timeout=5):
    """Fetch ``filename`` from the first mirror (base URLs) that delivers a file whose
    checksum passes, into ``directory``. Returns the final path.

    ``connect_timeout`` bounds connecting to each mirror, ``timeout`` each read.
    """
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, filename)
    remove_stale(directory, f".{filename}.", ".part")
    opener = urllib.request.build_opener(_HTTPHandler(connect_timeout), _HTTPSHandler(connect_timeout))
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        out, tmp = create_temporary(directory, f".{filename}.", ".part")
        try:
            with out:
                _fetch_one(opener, url, out, filename, timeout)
            if not verify(tmp, checksum):
                errors.append(f"{url}: checksum mismatch")
                continue
            os.replace(tmp, final)
            return final
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', None) or err}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DownloadError(
        f"could not download {filename}; tried:\n  " + "\n  ".join(errors) +
        f"\nIf this machine is offline, copy {filename} into {os.path.abspath(directory)} "
        "(or point --data-dir / NPNET_DATA at a directory that holds it).")
