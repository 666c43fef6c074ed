"""``.npz`` archives of named arrays plus one JSON document, written atomically and
read with bounded cost, never with pickle.

Writing: the destination must be a regular file or not exist (a symlink is kept
and its target written). The archive goes to a temporary file in the
destination's directory, is flushed to disk and renamed over the destination, so a crash, a full disk
or Ctrl-C leaves either the previous file or the new one, never a mixture.
New files get the usual permissions (``0o666 & ~umask``); a replaced file keeps
its mode. Temporary files of a writer that was killed are removed by the next
write into the same directory.

Reading: before any array is allocated, every member's compression, sizes and
``.npy`` header are checked: only stored or deflated members, a declared size
that the member's bytes can actually produce, a header whose shape and dtype
account for exactly the member's size, dtypes bool/int/uint/float only (the
metadata string aside), and in all at most ``MAX_EXPANSION`` times the file's
size (plus 1 MiB) and at most ``MAX_BYTES``.
"""
import errno
import json
import math
import os
import stat
import zipfile

import numpy as np

from data.atomic import create_temporary, fsync_directory, remove_stale

META_KEY = "__meta__"
TEMP_PREFIX, TEMP_SUFFIX = ".tmp-", ".npz"
MAX_BYTES = 16 * 2**30
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand a stream more than this
# npnet writes arrays uncompressed; a recompressed archive of trained weights shrinks
# little, so contents more than this many times the file (plus 1 MiB) are a bomb
MAX_EXPANSION = 16
ARRAY_KINDS = "biuf"


def _directory_problem(path, shown=None):
    """Why nothing can be written at ``path`` (None when nothing obvious is wrong);
    the message calls the destination ``shown`` (default ``path``)."""
    shown = path if shown is None else shown
    if os.path.isdir(path):
        return IsADirectoryError(f"cannot write {shown}: it is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    missing = directory
    while not os.path.exists(missing):
        missing = os.path.dirname(missing)
    if not os.path.isdir(missing):
        return NotADirectoryError(f"cannot write {shown}: {missing} is a file, not a directory")
    if missing != directory:
        return FileNotFoundError(f"cannot write {shown}: directory {directory} does not exist")
    return None


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(path, verb):
    """An error when ``path`` exists (through any symlinks) but is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return OSError(err.errno, f"cannot {verb} {path}: its symlinks form a loop")
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return OSError(f"cannot {verb} {path}: it is {kind}, not a regular file")


def _destination(path):
    """The file an archive for ``path`` replaces: ``path`` itself, or the final target
    of a symlink (the link is kept and written through). Raises ``OSError`` naming
    ``path`` when nothing can be written there."""
    problem = _directory_problem(path) or _not_regular(path, "write")
    if problem is not None:
        raise problem
    target = os.path.realpath(path) if os.path.islink(path) else path
    if target != path:
        problem = _directory_problem(target, shown=f"{path} (a link to {target})")
        if problem is not None:
            raise problem
    return target


def _write_error(path, err, existed):
    kept = f"; {path} is unchanged" if existed else ""
    reason = err.strerror or str(err)
    return OSError(err.errno, f"cannot write {path}: {reason}{kept}")


def check_destination(path):
    """Check that an archive can be written at ``path``, leaving nothing behind.

    Creates and removes a temporary file where :func:`write_archive` would, so a
    read-only directory or file system, a missing or non-directory parent and
    a directory, named pipe, device or socket at ``path`` are all reported
    (``OSError`` naming ``path``) before any work is done. A symlink is followed:
    the check is made where its target is. Also removes stale temporary files there.
    """
    path = os.fsdecode(path)  # str, bytes or path-like -> str
    directory = os.path.dirname(os.path.abspath(_destination(path)))
    remove_stale(directory, TEMP_PREFIX, TEMP_SUFFIX)
    try:
        f, tmp = create_temporary(directory, TEMP_PREFIX, TEMP_SUFFIX)
    except OSError as err:
        raise _write_error(path, err, False) from None
    f.close()
    os.remove(tmp)


def write_archive(path, arrays, meta):
    """Atomically write ``arrays`` (name -> ndarray) and JSON-able ``meta`` to ``path``.

    ``path`` must be a regular file or not exist; a symlink is kept and its target
    replaced (atomically, in the target's directory).
    """
    path = os.fsdecode(path)  # str, bytes or path-like -> str
    target = _destination(path)
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in payload.items():
        if value.dtype.kind not in ARRAY_KINDS:
            raise ValueError(f"cannot write {path}: entry {name!r} has dtype {value.dtype}; only bool, "
                             "integer and real floating arrays are stored")
    payload[META_KEY] = np.array(json.dumps(meta))
    directory = os.path.dirname(os.path.abspath(target))
    remove_stale(directory, TEMP_PREFIX, TEMP_SUFFIX)
    existed = os.path.exists(target)
    tmp = None
    try:
        f, tmp = create_temporary(directory, TEMP_PREFIX, TEMP_SUFFIX, like=target)
        with f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        fsync_directory(directory)
    except OSError as err:
        raise _write_error(path, err, existed) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def read_archive(path, max_bytes=MAX_BYTES):
    """Read an archive written by :func:`write_archive` -> ``(arrays, meta)``.

    A file that cannot be opened raises ``OSError``; anything wrong inside it
    raises ``ValueError`` naming the file, and nothing larger than the checks
    above allow is ever allocated.
    """
    path = os.fsdecode(path)  # str, bytes or path-like -> str
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot read {path}: it is a directory")
    problem = _not_regular(path, "read")  # a named pipe would block, a device never end
    if problem is not None:
        raise problem
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            with zipfile.ZipFile(file) as zf:
                arrays = _read_members(zf, size, max_bytes)
        except _Refused as err:
            raise ValueError(f"{path}: not an npnet archive ({err})") from None
        except Exception as err:  # a damaged zip can fail in many ways; all mean the same here
            raise ValueError(f"{path}: not an npnet archive ({type(err).__name__}: {err})") from None
    if META_KEY not in arrays:
        raise ValueError(f"{path}: not an npnet archive (no {META_KEY} entry)")
    text = arrays.pop(META_KEY)
    if text.dtype.kind != "U" or text.ndim != 0:
        raise ValueError(f"{path}: corrupt metadata (a {text.dtype} array of shape {text.shape}, "
                         "expected one string)")
    try:
        meta = json.loads(str(text))
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path}: corrupt metadata ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: corrupt metadata (a {type(meta).__name__}, expected an object)")
    return arrays, meta


class _Refused(Exception):
    """An archive member that is well formed but not acceptable."""


def _read_members(zf, file_size, max_bytes):
    infos = zf.infolist()
    total = 0
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Refused(f"entry {info.filename!r} uses an unsupported compression method")
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else DEFLATE_MAX_RATIO
        if info.compress_size > file_size or info.file_size > ratio * info.compress_size + 64:
            raise _Refused(f"entry {info.filename!r} declares {info.file_size} bytes from "
                           f"{info.compress_size} stored bytes, which is impossible")
        total += info.file_size
    if total > max_bytes:
        raise _Refused(f"the arrays take {total} bytes, more than the limit of {max_bytes}")
    if total > MAX_EXPANSION * file_size + 2**20:
        raise _Refused(f"the arrays take {total} bytes, more than {MAX_EXPANSION} times the "
                       f"file's {file_size} bytes: a decompression bomb")
    arrays = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if name == info.filename or name in arrays:
            raise _Refused(f"entry {info.filename!r} is not a uniquely named .npy array")
        with zf.open(info) as f:
            arrays[name] = _read_npy(f, name, info.file_size)
    return arrays


def _read_npy(f, name, member_size):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise _Refused(f"entry {name!r}: unsupported .npy version {version}")
    if dtype.hasobject or dtype.kind not in ARRAY_KINDS + ("U" if name == META_KEY else ""):
        raise _Refused(f"entry {name!r} has dtype {dtype}; only bool, integer and real "
                       "floating arrays are stored")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != member_size - f.tell():
        raise _Refused(f"entry {name!r}: its header declares shape {shape} of {dtype} "
                       f"({nbytes} bytes) but it holds {member_size - f.tell()} bytes")
    # read straight into the array; a Fortran-ordered one is its transpose's C order
    out = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    view = memoryview(out.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
    got = 0
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise _Refused(f"entry {name!r} is truncated")
        got += n
    f.read(1)  # reaching the end makes zipfile verify the CRC
    if fortran:
        out = np.ascontiguousarray(out.T)
    if not out.dtype.isnative:
        out = out.astype(out.dtype.newbyteorder("="))
    return out
