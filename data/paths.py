"""Where data sets live: an explicit directory, then $NPNET_DATA, then the user cache."""
import os

ENV_VAR = "NPNET_DATA"


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "npnet")


def dataset_dir(name, data_dir=None, markers=()):
    """Directory for data set ``name``.

    The root is ``data_dir``, else ``$NPNET_DATA``, else ``~/.cache/npnet``; the
    data set lives in ``<root>/<name>/``, or directly in ``data_dir`` when that is
    the data set's own folder: it holds one of the ``markers`` (the set's file names).
    """
    root = data_dir or os.environ.get(ENV_VAR) or cache_root()
    sub = os.path.join(root, name)
    if data_dir is not None and not os.path.isdir(sub) and \
            any(os.path.exists(os.path.join(root, m)) for m in markers):
        return root
    return sub
