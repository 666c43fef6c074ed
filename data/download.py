"""Verified downloads: mirrors in order, progress bar, checksum, atomic rename.

A file is fetched into a temporary file next to its destination, checked, and
only then renamed into place; any failure removes the temporary file, so a
partial or corrupt download never sits where a reader would find it.
"""
import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib

from tqdm import tqdm

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


def _fetch_one(url, tmp_path, desc, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total else None
        received = 0
        with open(tmp_path, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=desc,
                                               leave=False, disable=None) as bar:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise http.client.IncompleteRead(b"", total - received)


def download(filename, mirrors, directory, checksum, timeout=30):
    """Fetch ``filename`` from the first mirror (base URLs) that delivers a file whose
    checksum passes, into ``directory``. Returns the final path."""
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, filename)
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
        os.close(fd)
        try:
            _fetch_one(url, tmp, filename, timeout)
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
