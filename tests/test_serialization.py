"""Loading validates everything before it changes anything, costs what the file can
back, and answers any malformed archive with one ValueError naming the file."""
import io
import json
import os
import stat
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import layers as L
import models
from models import Sequential
from models.archive import META_KEY, read_archive, write_archive


def small_model(rng):
    return Sequential([L.Conv2D(1, 2, 3, padding=1, rng=rng), L.BatchNorm2D(2), L.ReLU(), L.Flatten(),
                       L.Dense(2 * 4 * 4, 3, rng=rng), L.Dropout(0.2, rng=rng)], input_shape=(1, 4, 4))


def snapshot(model):
    return {k: v.copy() for k, v in {**model.params, **model.buffers}.items()}


def assert_unchanged(model, before):
    now = {**model.params, **model.buffers}
    assert now.keys() == before.keys()
    for k, v in before.items():
        np.testing.assert_array_equal(now[k], v)
        assert now[k].dtype == v.dtype


def npz_bytes(members, compression=zipfile.ZIP_STORED):
    """A zip of raw ``.npy`` members (name -> bytes), as np.savez lays them out."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return buf.getvalue()


def npy_bytes(array=None, header=None, body=b""):
    buf = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buf, array, allow_pickle=False)
        return buf.getvalue()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + body


def meta_npy(meta):
    return npy_bytes(np.array(meta if isinstance(meta, str) else json.dumps(meta)))


# -- load_weights / load: nothing changes unless everything is valid ----------------------

@pytest.mark.parametrize("bad", [
    np.array(["abc"] * 3),
    np.zeros(3, np.complex64),
    np.zeros(3, "datetime64[s]"),
    np.zeros(3, [("a", np.float32)]),
    np.zeros(3, np.int32),
    np.zeros(4, np.float32),
], ids=["str", "complex", "datetime", "structured", "int", "shape"])
def test_load_weights_refuses_a_bad_last_array_and_changes_nothing(tmp_path, rng, bad):
    model = small_model(rng)
    path = tmp_path / "m.npz"
    model.save(path)
    arrays, meta = read_archive(path)
    last = "params/" + list(model.params)[-1]  # the last one a loader reaches
    assert last == "params/4.bias"
    arrays[last] = bad
    np.savez(path, **arrays, **{META_KEY: np.array(json.dumps(meta))})  # write_archive refuses these
    target = small_model(np.random.default_rng(7))
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"m\.npz.*params/4\.bias"):
        models.load_weights(target, path)
    assert_unchanged(target, before)
    with pytest.raises(ValueError, match=r"m\.npz.*params/4\.bias"):
        models.load(path)


def test_load_weights_refuses_values_a_narrower_dtype_cannot_hold(tmp_path, rng):
    model = small_model(rng).astype(np.float64)
    model.layers[4].params["bias"][0] = 1e300
    model.save(tmp_path / "m.npz")
    target = small_model(rng)
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"params/4.bias holds values outside the range of float32"):
        models.load_weights(target, tmp_path / "m.npz")
    assert_unchanged(target, before)


@pytest.mark.parametrize("entry", ["params/0.weight", "buffers/1.running_var"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused_by_load_and_save(tmp_path, rng, entry, value):
    model = small_model(rng)
    path = tmp_path / "m.npz"
    model.save(path)
    arrays, meta = read_archive(path)
    arrays[entry].flat[-1] = value
    np.savez(path, **arrays, **{META_KEY: np.array(json.dumps(meta))})  # a crafted file
    message = f"m\\.npz: {entry} holds non-finite values"
    target = small_model(np.random.default_rng(7))
    before = snapshot(target)
    with pytest.raises(ValueError, match=message):
        models.load_weights(target, path)
    assert_unchanged(target, before)
    with pytest.raises(ValueError, match=message):
        models.load(path)
    assert np.load(path)[entry].flat[-1] == value or np.isnan(value)  # still readable with numpy
    kind, key = entry.split("/")
    getattr(model, kind)[key].flat[-1] = value
    with pytest.raises(ValueError, match=f"cannot save .*new.npz: {entry} holds non-finite values"):
        model.save(tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()


def test_load_keeps_the_saved_dtypes_bit_exactly(tmp_path, rng):
    model = small_model(rng).astype(np.float64)
    model.save(tmp_path / "m.npz")
    loaded = models.load(tmp_path / "m.npz")
    assert_unchanged(loaded, snapshot(model))
    for v in {**loaded.params, **loaded.buffers}.values():
        assert v.flags.writeable and v.flags.c_contiguous and v.dtype == np.float64
    x = rng.standard_normal((2, 1, 4, 4))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_loaded_model_trains_like_a_built_one(tmp_path, rng):
    from optim import SGD
    model = small_model(rng)
    model.save(tmp_path / "m.npz")
    loaded = models.load(tmp_path / "m.npz")
    opt = SGD(loaded.params, lr=0.1)
    x = rng.standard_normal((4, 1, 4, 4)).astype(np.float32)
    out = loaded.forward(x)
    _, grads = loaded.backward(np.ones_like(out))
    opt.step(grads)
    assert not np.array_equal(loaded.params["4.weight"], model.params["4.weight"])


# -- bounded cost ------------------------------------------------------------------------

def peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("layer", [
    {"class": "Dense", "config": {"in_features": 10**6, "out_features": 10**6}},
    {"class": "BatchNorm1D", "config": {"num_features": 10**9}},
    {"class": "Conv2D", "config": {"in_channels": 10**5, "out_channels": 10**5, "kernel_size": 9}},
])
def test_a_tiny_file_declaring_a_huge_layer_allocates_nothing(tmp_path, layer):
    path = tmp_path / "huge.npz"
    arch = {"class": "Sequential", "config": {"layers": [layer]}}
    write_archive(path, {"params/0.weight": np.zeros((2, 2), np.float32)},
                  {"format": "npnet-model-1", "architecture": arch})
    assert path.stat().st_size < 2048

    def load():
        with pytest.raises(ValueError, match="huge.npz: arrays do not match the model"):
            models.load(path)
    assert peak_bytes(load) < 2**20


def test_npy_header_declaring_10_to_the_12_elements_is_refused_before_reading(tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    path = tmp_path / "h.npz"
    path.write_bytes(npz_bytes({"params/0.weight": npy_bytes(header=header, body=b"\0" * 64),
                                META_KEY: meta_npy({"format": "npnet-model-1"})}))

    def read():
        with pytest.raises(ValueError, match=r"h\.npz.*'params/0\.weight': its header declares shape "
                                             r"\(1000000, 1000000\)"):
            read_archive(path)
    assert peak_bytes(read) < 2**20


def test_a_compression_bomb_is_refused_before_expanding(tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**24,)}
    path = tmp_path / "bomb.npz"
    path.write_bytes(npz_bytes({"params/0.weight": npy_bytes(header=header, body=bytes(4 * 2**24)),
                                META_KEY: meta_npy({"format": "npnet-model-1"})}, zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 100_000  # 64 MiB of zeros deflate to ~64 KiB

    def read():
        with pytest.raises(ValueError, match=r"bomb\.npz.*more than"):
            read_archive(path)
    assert peak_bytes(read) < 2**20


def test_write_archive_refuses_dtypes_no_loader_accepts(tmp_path):
    with pytest.raises(ValueError, match="entry 'x' has dtype object"):
        write_archive(tmp_path / "o.npz", {"x": np.array([{}], dtype=object)}, {})
    assert not list(tmp_path.iterdir())


def test_an_archive_larger_than_the_limit_is_refused(tmp_path):
    write_archive(tmp_path / "a.npz", {"x": np.zeros(1000, np.float32)}, {})
    with pytest.raises(ValueError, match="more than the limit of 1000"):
        read_archive(tmp_path / "a.npz", max_bytes=1000)


# -- malformed archives ------------------------------------------------------------------

def nested(depth):
    """JSON text of Sequentials nested ``depth`` deep (too deep for json.dumps)."""
    text = '{"class": "ReLU", "config": {}}'
    for _ in range(depth):
        text = '{"class": "Sequential", "config": {"layers": [' + text + ']}}'
    return '{"format": "npnet-model-1", "architecture": ' + text + '}'


DENSE = {"class": "Dense", "config": {"in_features": 3, "out_features": 2}}
MALFORMED = {
    "meta-list": [1, 2],
    "meta-string": '"npnet-model-1"',
    "no-architecture": {"format": "npnet-model-1"},
    "architecture-list": {"format": "npnet-model-1", "architecture": [DENSE]},
    "nested-1000": nested(1000),
    "nested-100": nested(100),
    "unexpected-keyword": {"format": "npnet-model-1", "architecture":
                           {"class": "Dense", "config": {**DENSE["config"], "colour": 1}}},
    "string-size": {"format": "npnet-model-1", "architecture":
                    {"class": "Dense", "config": {"in_features": "many", "out_features": 2}}},
    "list-size": {"format": "npnet-model-1", "architecture":
                  {"class": "Dense", "config": {"in_features": [3], "out_features": 2}}},
    "config-list": {"format": "npnet-model-1", "architecture": {"class": "Dense", "config": [3, 2]}},
    "class-number": {"format": "npnet-model-1", "architecture": {"class": 7, "config": {}}},
    "layers-not-list": {"format": "npnet-model-1", "architecture":
                        {"class": "Sequential", "config": {"layers": 5}}},
    "container-base": {"format": "npnet-model-1", "architecture": {"class": "Container", "config": {}}},
    "private-base": {"format": "npnet-model-1", "architecture":
                     {"class": "_BatchNorm", "config": {"num_features": 2}}},
}


@pytest.mark.parametrize("meta", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_model_archive_is_one_clear_error(tmp_path, meta):
    path = tmp_path / "bad.npz"
    path.write_bytes(npz_bytes({"params/weight": npy_bytes(np.zeros((2, 3), np.float32)),
                                "params/bias": npy_bytes(np.zeros(2, np.float32)),
                                META_KEY: meta_npy(meta)}))
    with pytest.raises(ValueError, match="bad.npz: "):
        models.load(path)


def test_malformed_metadata_member_is_one_clear_error(tmp_path):
    for i, member in enumerate([npy_bytes(np.zeros(3)), npy_bytes(np.array("{not json")),
                                npy_bytes(np.array("[" * 100_000 + "]" * 100_000)), b"\x93NUMPY garbage"]):
        path = tmp_path / f"bad{i}.npz"
        path.write_bytes(npz_bytes({META_KEY: member}))
        with pytest.raises(ValueError, match=f"bad{i}.npz: "):
            models.load(path)


def test_unreadable_paths_are_os_errors_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError):
        models.load(tmp_path / "absent.npz")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        models.load(tmp_path)


# -- hypothesis: any mutation loads exactly or fails with a clear ValueError ---------------

def _reference():
    rng = np.random.default_rng(0)
    model = Sequential([L.Dense(3, 4, rng=rng), L.BatchNorm1D(4), L.ReLU(), L.Dense(4, 2, rng=rng)])
    buf = tempfile.mkdtemp()
    path = os.path.join(buf, "ref.npz")
    model.save(path)
    return read_archive(path)


REF_ARRAYS, REF_META = _reference()
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


META_PATHS = [p for p in _paths(REF_META) if p]


def _set(value, path, new):
    value = json.loads(json.dumps(value))
    if not path:
        return new
    node = value
    for key in path[:-1]:
        node = node[key]
    if new is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return value


_DELETE = object()

ARRAY_MUTATIONS = st.sampled_from(["drop", "reshape", "float64", "int32", "rename", "extra", "none"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.sets(st.sampled_from(["meta", "array", "cut", "flip"]), max_size=2),
       path=st.sampled_from(META_PATHS), new=JSON | st.just(_DELETE) | st.integers(1, 8) | st.floats(0, 1),
       array_key=st.sampled_from(sorted(REF_ARRAYS)), mutation=ARRAY_MUTATIONS,
       cut=st.integers(0, 5000), flip=st.integers(0, 5000))
def test_mutated_archives_load_exactly_or_fail_clearly(kinds, path, new, array_key, mutation, cut, flip):
    meta = _set(REF_META, path, new) if "meta" in kinds else REF_META
    arrays = dict(REF_ARRAYS)
    a = arrays[array_key]
    mutation = mutation if "array" in kinds else "none"
    cut = cut if "cut" in kinds else None
    flip = flip if "flip" in kinds else None
    if mutation == "drop":
        del arrays[array_key]
    elif mutation == "reshape":
        arrays[array_key] = a.reshape(-1)[:-1] if a.size > 1 else np.zeros(3, a.dtype)
    elif mutation in ("float64", "int32"):
        arrays[array_key] = a.astype(mutation)
    elif mutation == "rename":
        arrays[array_key + "x"] = arrays.pop(array_key)
    elif mutation == "extra":
        arrays["params/9.weight"] = a
    with tempfile.TemporaryDirectory() as d:
        file = os.path.join(d, "m.npz")
        write_archive(file, arrays, meta)
        data = bytearray(open(file, "rb").read())
        if flip is not None and flip < len(data):
            data[flip] ^= 0xFF
        if cut is not None:
            data = data[:cut]
        open(file, "wb").write(bytes(data))
        try:
            model = models.load(file)
        except ValueError as err:
            assert str(err).startswith(file)
            return
    saved = {k.split("/", 1)[1]: v for k, v in arrays.items()}
    state = {**model.params, **model.buffers}
    assert state.keys() == saved.keys()
    for k, v in state.items():
        assert v.dtype == saved[k].dtype
        np.testing.assert_array_equal(v, saved[k])


@pytest.mark.parametrize("name, shape", [("mnist_cnn", (1, 28, 28)), ("lenet", (1, 28, 28)),
                                         ("cifar10_bn", (3, 32, 32)), ("resnet_small", (3, 32, 32))])
def test_every_named_architecture_round_trips(tmp_path, name, shape):
    from models import zoo
    model = zoo.build(name, shape, rng=np.random.default_rng(0))
    model.save(tmp_path / "m.npz")
    loaded = models.load(tmp_path / "m.npz")
    assert models.layer_spec(loaded) == models.layer_spec(model)
    assert_unchanged(loaded, snapshot(model))


def test_a_single_layer_round_trips(tmp_path, rng):
    dense = L.Dense(3, 2, rng=rng)
    models.save_model(dense, tmp_path / "d.npz")
    loaded = models.load(tmp_path / "d.npz")
    assert type(loaded) is L.Dense
    assert_unchanged(loaded, snapshot(dense))


def test_readme_saving_snippet_runs(tmp_path, monkeypatch):
    from test_readme import section_code
    monkeypatch.chdir(tmp_path)
    (block,) = section_code("Saving and loading")
    namespace = {}
    exec(compile(block, "README: saving", "exec"), namespace)
    assert_unchanged(namespace["same"], snapshot(namespace["model"]))
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_refuses_a_named_pipe_and_writes_through_a_symlink(tmp_path, rng):
    model = Sequential(L.Dense(3, 2, rng=rng))
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(OSError, match="pipe.npz: it is a named pipe, not a regular file"):
        model.save(tmp_path / "pipe.npz")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.npz").st_mode)
    (tmp_path / "link.npz").symlink_to("model.npz")
    model.save(tmp_path / "link.npz")
    assert os.path.islink(tmp_path / "link.npz")
    np.testing.assert_array_equal(models.load(tmp_path / "model.npz").params["0.weight"],
                                  model.params["0.weight"])
