"""Temporary files for atomic writes, named so that the next run can clean up.

A writer creates ``<prefix><host>.<pid>.<token><suffix>`` next to its
destination, fills it and renames it into place. If the writer is killed before
the rename, the file stays behind; :func:`remove_stale` (called before each new
write) deletes those whose process no longer exists on this host. Files of
another host, and older names without a pid, are deleted once they have not
been written to for ``STALE_AFTER_S`` seconds.
"""
import os
import secrets
import socket
import stat
import time

STALE_AFTER_S = 3600


def create_temporary(directory, prefix, suffix, like=None):
    """Create and open (``"wb"``) a new temporary file in ``directory``.

    Its permissions follow the umask (``0o666 & ~umask``), as any new file's
    do, or copy those of ``like`` when that file exists (replacing a 0644 file
    leaves a 0644 file). Returns ``(file, path)``.
    """
    name = f"{prefix}{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if like is not None and os.path.isfile(like):
            os.fchmod(fd, stat.S_IMODE(os.stat(like).st_mode))
        return os.fdopen(fd, "wb"), path
    except BaseException:
        os.close(fd)
        os.remove(path)
        raise


def _writer_gone(name, prefix, suffix, path):
    parts = name[len(prefix):len(name) - len(suffix)].rsplit(".", 2)
    if len(parts) == 3 and parts[0] == socket.gethostname() and parts[1].isdigit() \
            and 0 < int(parts[1]) < 2**31:
        pid = int(parts[1])
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    return time.time() - os.stat(path).st_mtime > STALE_AFTER_S


def remove_stale(directory, prefix, suffix):
    """Delete temporary files left in ``directory`` by writers that died; returns their paths."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
            continue
        path = os.path.join(directory, name)
        try:
            if os.path.isfile(path) and _writer_gone(name, prefix, suffix, path):
                os.remove(path)
                removed.append(path)
        except OSError:
            continue
    return removed


def fsync_directory(directory):
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
