"""The IDX file format of MNIST and Fashion-MNIST (raw or gzip-compressed).

Header: two zero bytes, a type code, the number of dimensions, then one
big-endian uint32 per dimension; the data follow in C order, big-endian.
"""
import gzip
import os
import zlib

import numpy as np

IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataFileError(ValueError):
    """A data file is missing, truncated, corrupted or does not match its partner."""


def read_bytes(path):
    """The file's content, decompressed when it is gzip (by magic bytes, not by name)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror})") from None
    if not raw:
        raise DataFileError(f"{path}: empty file (0 bytes); delete it and download it again")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataFileError(f"{path}: corrupted gzip data ({err})") from None
        if not raw:
            raise DataFileError(f"{path}: gzip file that decompresses to nothing (0 bytes)")
    return raw


def parse_idx(content, path="<bytes>"):
    """Parse IDX bytes into a numpy array in native byte order."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise DataFileError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = content[2], content[3]
    if code not in IDX_TYPES or ndim == 0:
        raise DataFileError(f"{path}: not an IDX file (type code 0x{code:02x}, {ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataFileError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        kind = "truncated" if len(content) < expected else "has trailing bytes"
        raise DataFileError(f"{path}: IDX file {kind}: header says {dims} "
                            f"({expected} bytes), file has {len(content)} bytes")
    return np.frombuffer(content, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path, magic=None):
    """Read an IDX file; ``magic`` (e.g. 2051 images, 2049 labels) is checked when given."""
    content = read_bytes(path)
    if len(content) < 4:
        raise DataFileError(f"{path}: {len(content)} byte{'' if len(content) == 1 else 's'} of data (after any "
                            "gzip decompression); an IDX file starts with a 4-byte magic number"
                            + (f" ({magic} here)" if magic is not None else ""))
    if magic is not None and content[:4] != int(magic).to_bytes(4, "big"):
        found = int.from_bytes(content[:4], "big")
        raise DataFileError(f"{path}: wrong magic number {found}, expected {magic}")
    return parse_idx(content, os.fspath(path))


def read_image_label_pair(images_path, labels_path, num_classes=10):
    """MNIST-style pair -> (uint8 images (N, H, W), int64 labels (N,)), cross-checked."""
    images = read_idx(images_path, magic=2051)
    labels = read_idx(labels_path, magic=2049)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataFileError(f"{images_path}, {labels_path}: expected images (N, H, W) and labels (N,), "
                            f"got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DataFileError(f"{images_path} has {len(images)} images but {labels_path} has "
                            f"{len(labels)} labels")
    if len(labels) and labels.max() >= num_classes:
        raise DataFileError(f"{labels_path}: label {labels.max()} out of range [0, {num_classes})")
    return images, labels.astype(np.int64)
