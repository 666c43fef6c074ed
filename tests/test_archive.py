"""Writing archives: atomic, the user's permissions, clean after a killed writer,
clear errors for a full disk and for destinations that cannot be written."""
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from models.archive import check_destination, read_archive, write_archive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = socket.gethostname()


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    with umask(0o022):
        write_archive(tmp_path / "a.npz", {"x": np.zeros(2)}, {})
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o644
    with umask(0o077):
        write_archive(tmp_path / "b.npz", {"x": np.zeros(2)}, {})
        assert (tmp_path / "b.npz").stat().st_mode & 0o777 == 0o600
        os.chmod(tmp_path / "a.npz", 0o644)
        write_archive(tmp_path / "a.npz", {"x": np.ones(2)}, {})
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o644
    np.testing.assert_array_equal(read_archive(tmp_path / "a.npz")[0]["x"], np.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".tmp-{HOST}.{dead_pid()}.0123abcd.npz"
        alive = tmp_path / f".tmp-{HOST}.{sleeper.pid}.0123abcd.npz"
        other_host = tmp_path / f".tmp-elsewhere.{dead_pid()}.0123abcd.npz"
        old_legacy, new_legacy = tmp_path / ".tmp-k2j3h4.npz", tmp_path / ".tmp-abcdef.npz"
        for p in (dead, alive, other_host, old_legacy, new_legacy):
            p.write_bytes(b"partial")
        two_hours_ago = time.time() - 7200
        os.utime(old_legacy, (two_hours_ago, two_hours_ago))
        write_archive(tmp_path / "m.npz", {"x": np.zeros(2)}, {})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [alive.name, other_host.name, new_legacy.name, "m.npz"])
    finally:
        sleeper.kill()
        sleeper.wait()


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from models.archive import write_archive
    big = np.random.default_rng(0).standard_normal(4_000_000)
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        write_archive({path!r}, {{"x": big, "i": np.array(i)}}, {{"i": i}})
""")


def test_kill_9_during_saves_leaves_a_loadable_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "ck.npz"
    leftovers = kills = 0
    # a kill can land between two saves (in the directory fsync after a rename), so kill
    # until one has interrupted a save in flight, at least twice and at most eight times
    for delay in (0.3, 0.7, 0.4, 0.6, 0.35, 0.55, 0.45, 0.65):
        if kills >= 2 and leftovers:
            break
        kills += 1
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=ROOT, path=str(path))],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if path.exists():
            arrays, meta = read_archive(path)
            assert arrays["x"].shape == (4_000_000,) and meta["i"] == int(arrays["i"])
        leftovers += len(list(tmp_path.glob(".tmp-*.npz")))
    write_archive(path, {"x": np.zeros(1)}, {})
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]
    assert leftovers > 0  # the kills did interrupt saves in flight


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (needs root and mount), unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root; the RLIMIT_FSIZE test covers this")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("mount is not permitted here; the RLIMIT_FSIZE test covers this")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_disk_keeps_the_previous_file(small_fs):
    path = small_fs / "ck.npz"
    write_archive(path, {"x": np.arange(1000.0)}, {"n": 1})
    with pytest.raises(OSError, match=r"cannot write .*ck.npz: No space left on device; .*ck.npz is unchanged"):
        write_archive(path, {"x": np.zeros(400_000)}, {"n": 2})
    arrays, meta = read_archive(path)
    np.testing.assert_array_equal(arrays["x"], np.arange(1000.0))
    assert meta == {"n": 1} and [p.name for p in small_fs.iterdir()] == ["ck.npz"]


FSIZE = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from models.archive import write_archive
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    try:
        write_archive({path!r}, {{"x": np.zeros(400_000)}}, {{"n": 2}})
    except OSError as err:
        print(err)
""")


def test_file_size_limit_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ck.npz"
    write_archive(path, {"x": np.arange(1000.0)}, {"n": 1})
    out = subprocess.run([sys.executable, "-c", FSIZE.format(root=ROOT, path=str(path))],
                         capture_output=True, text=True, check=True).stdout
    assert f"cannot write {path}: File too large; {path} is unchanged" in out
    np.testing.assert_array_equal(read_archive(path)[0]["x"], np.arange(1000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write: a read-only mount as root, a 0555 directory otherwise."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        os.chmod(ro, 0o555)
        yield ro
        os.chmod(ro, 0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                      capture_output=True).returncode:
        pytest.skip("root without mount: permission bits do not stop root")
    try:
        yield ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=True)


def test_read_only_directory(read_only_dir):
    path = read_only_dir / "ck.npz"
    for fn in (check_destination, lambda p: write_archive(p, {"x": np.zeros(1)}, {})):
        with pytest.raises(OSError, match=f"cannot write {path}: (Read-only file system|Permission denied)"):
            fn(path)
    assert not list(read_only_dir.iterdir())


def test_bad_destinations_are_named(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    cases = [(tmp_path / "file" / "ck.npz", NotADirectoryError, "is a file, not a directory"),
             (tmp_path / "file" / "sub" / "ck.npz", NotADirectoryError, "is a file, not a directory"),
             (tmp_path / "dir", IsADirectoryError, "it is a directory"),
             (tmp_path / "missing" / "ck.npz", FileNotFoundError, "does not exist")]
    for path, kind, message in cases:
        for fn in (check_destination, lambda p: write_archive(p, {"x": np.zeros(1)}, {})):
            with pytest.raises(kind, match=f"cannot write {path}: .*{message}"):
                fn(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]
    assert not list((tmp_path / "dir").iterdir())


def test_check_destination_leaves_nothing_behind(tmp_path):
    check_destination(tmp_path / "ck.npz")
    (tmp_path / "ck.npz").write_bytes(b"previous")
    check_destination(tmp_path / "ck.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]
    assert (tmp_path / "ck.npz").read_bytes() == b"previous"


@pytest.mark.parametrize("through_link", [False, True], ids=["direct", "symlink"])
@pytest.mark.parametrize("make, kind", [(os.mkfifo, "a named pipe")], ids=["fifo"])
def test_a_destination_that_is_not_a_regular_file_is_refused_and_kept(tmp_path, make, kind, through_link):
    special = tmp_path / "special.npz"
    make(special)
    path = special
    if through_link:
        path = tmp_path / "link.npz"
        path.symlink_to(special)
    for fn in (check_destination, lambda p: write_archive(p, {"x": np.zeros(1)}, {})):
        with pytest.raises(OSError, match=f"cannot write {path}: .*{kind}, not a regular file"):
            fn(path)
    assert stat.S_ISFIFO(os.lstat(special).st_mode)
    assert not through_link or os.path.islink(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"special.npz", path.name})


def test_reading_a_named_pipe_is_refused_without_blocking(tmp_path):
    path = tmp_path / "m.npz"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer, so that even a plain open returns
    try:
        with pytest.raises(OSError, match=f"cannot read {path}: it is a named pipe, not a regular file"):
            read_archive(path)
    finally:
        os.close(fd)


def test_a_symlinked_destination_is_written_through_atomically(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.npz"
    write_archive(target, {"x": np.zeros(1)}, {"v": 1})
    os.chmod(target, 0o600)
    link = tmp_path / "m.npz"
    link.symlink_to(os.path.join("real", "m.npz"))  # relative, as ln -s makes it
    check_destination(link)
    write_archive(link, {"x": np.ones(2)}, {"v": 2})
    assert os.path.islink(link) and os.readlink(link) == os.path.join("real", "m.npz")
    arrays, meta = read_archive(target)
    assert meta == {"v": 2} and arrays["x"].tolist() == [1.0, 1.0]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "real"]
    assert [p.name for p in (tmp_path / "real").iterdir()] == ["m.npz"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    link = tmp_path / "m.npz"
    link.symlink_to(tmp_path / "real" / "new.npz")
    write_archive(link, {"x": np.ones(1)}, {})
    assert os.path.islink(link) and read_archive(tmp_path / "real" / "new.npz")[0]["x"].tolist() == [1.0]


def test_a_symlink_to_a_directory_is_refused(tmp_path):
    (tmp_path / "dir").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "dir")
    with pytest.raises(IsADirectoryError, match=f"cannot write {link}: it is a directory"):
        write_archive(link, {"x": np.ones(1)}, {})
    assert os.path.islink(link) and not list((tmp_path / "dir").iterdir())


def test_symlink_loops_and_links_into_missing_directories_are_refused(tmp_path):
    (tmp_path / "a.npz").symlink_to(tmp_path / "b.npz")
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    (tmp_path / "c.npz").symlink_to(tmp_path / "missing" / "c.npz")
    cases = [(tmp_path / "a.npz", "its symlinks form a loop"),
             (tmp_path / "c.npz", r"\(a link to .*missing/c.npz\): directory .*missing does not exist")]
    for path, message in cases:
        for fn in (check_destination, lambda p: write_archive(p, {"x": np.zeros(1)}, {})):
            with pytest.raises(OSError, match=f"cannot write {path}.*{message}"):
                fn(path)
    assert all(os.path.islink(p) for p in tmp_path.iterdir()) and len(list(tmp_path.iterdir())) == 3
