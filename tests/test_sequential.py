"""Sequential: order of params and grads, shape validation, predict, summary, save/load."""
import copy

import numpy as np
import pytest

import layers as L
import models
from conftest import away_from_kinks
from layers.gradcheck import check_layer
from models import Sequential


def small_cnn(rng):
    return Sequential([L.Conv2D(1, 4, 3, padding=1, rng=rng), L.BatchNorm2D(4), L.ReLU(), L.MaxPool2D(2),
                       L.Flatten(), L.Dense(64, 10, rng=rng), L.Dropout(0.1, rng=rng)],
                      input_shape=(1, 8, 8))


def test_both_constructor_forms(rng):
    a, b = L.Dense(2, 3, rng=rng), L.ReLU()
    assert Sequential(a, b).layers == Sequential([a, b]).layers == [a, b]
    with pytest.raises(TypeError, match="item 1 is a int"):
        Sequential(a, 3)


def test_params_and_grads_line_up(rng):
    model = small_cnn(rng)
    names = list(model.params)
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert list(model.buffers) == ["1.running_mean", "1.running_var"]
    out = model.forward(rng.standard_normal((3, 1, 8, 8)).astype(np.float32))
    dx, grads = model.backward(np.ones_like(out))
    assert list(grads) == names and dx.shape == (3, 1, 8, 8)
    for p, (key, g) in zip(model.parameters(), grads.items()):
        assert p.shape == g.shape and p is model.params[key]


def test_mlp_gradcheck_end_to_end(rng):
    mlp = Sequential(L.Dense(6, 8, rng=rng), L.ReLU(), L.Dense(8, 8, rng=rng), L.Tanh(),
                     L.Dense(8, 3, rng=rng), L.Softmax()).astype(np.float64)
    report = check_layer(mlp, away_from_kinks(rng, (4, 6)))
    assert report.passed(), str(report)


def test_shape_chain_validated_at_construction(rng):
    with pytest.raises(ValueError, match=r"layer 4 \(Dense\) cannot take per-sample input \(36,\)"):
        Sequential(L.Conv2D(1, 4, 3, rng=rng), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(64, 10, rng=rng),
                   input_shape=(1, 8, 8))
    assert small_cnn(rng).output_shape((1, 8, 8)) == (10,)


def test_train_eval_propagate(rng):
    model = small_cnn(rng)
    model.eval()
    assert not any(layer.training for layer in model.layers)
    model.train()
    assert all(layer.training for layer in model.layers)


def test_predict_uses_eval_mode_and_caches_nothing(rng):
    model = small_cnn(rng)
    x = rng.standard_normal((10, 1, 8, 8)).astype(np.float32)
    model.forward(x)  # fill caches in training mode
    model.clear_cache()
    out = model.predict(x, batch_size=3)
    assert out.shape == (10, 10) and model.training
    assert all(layer._cache is None for layer in model.layers)
    model.eval()
    np.testing.assert_allclose(out, model.forward(x), rtol=1e-5, atol=1e-6)


def test_summary(rng):
    text = small_cnn(rng).summary(print_fn=None)
    assert "(4, 8, 8)" in text and "(10,)" in text
    total = [line for line in text.splitlines() if line.startswith("total")][0]
    assert "698" in total.split()  # 40 + 8 + 650
    printed = []
    small_cnn(rng).summary(print_fn=printed.append)
    assert printed == [text]


def test_save_load_round_trip_is_bit_exact(tmp_path, rng):
    model = small_cnn(rng)
    model.forward(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))  # move running stats
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = models.load(path)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    for store in ("params", "buffers"):
        a, b = getattr(model, store), getattr(loaded, store)
        assert list(a) == list(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
            assert a[k].dtype == b[k].dtype
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_load_errors_are_clear_and_change_nothing(tmp_path, rng):
    model = small_cnn(rng)
    path = tmp_path / "m.npz"
    model.save(path)
    other = Sequential([L.Conv2D(1, 4, 3, padding=1, rng=rng), L.BatchNorm2D(4), L.ReLU(), L.MaxPool2D(2),
                        L.Flatten(), L.Dense(64, 5, rng=rng), L.Dropout(0.1, rng=rng)])
    before = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(ValueError, match=r"5.weight has shape \(10, 64\), the model expects \(5, 64\)"):
        models.load_weights(other, path)
    for k, v in other.params.items():
        np.testing.assert_array_equal(v, before[k])

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="garbage.npz: not an npnet archive"):
        models.load(garbage)

    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an npnet archive"):
        models.load(plain)

    from models.serialization import read_archive, write_archive
    arrays, meta = read_archive(path)
    meta["architecture"]["config"]["layers"][0]["class"] = "NoSuchLayer"
    bad = tmp_path / "bad.npz"
    write_archive(bad, arrays, meta)
    with pytest.raises(ValueError, match="unknown layer class 'NoSuchLayer'"):
        models.load(bad)

    arrays.pop("params/0.bias")
    _, meta = read_archive(path)
    write_archive(bad, arrays, meta)
    with pytest.raises(ValueError, match=r"missing \['params/0.bias'\]"):
        models.load(bad)


def test_pickled_object_arrays_are_refused(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, __meta__=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(ValueError, match="not an npnet archive"):
        models.load(evil)


def test_flop_counts_by_hand(rng):
    dense = L.Dense(784, 128, rng=rng)
    assert dense.cost((784,)) == {"forward_flops": 2 * 784 * 128 + 128,
                                  "backward_flops": 4 * 784 * 128 + 128, "cache_bytes": 4 * 784}
    conv = L.Conv2D(3, 8, 3, padding=1, rng=rng)
    macs = 8 * 10 * 10 * 3 * 9  # every output element: 27 multiply-adds
    assert conv.cost((3, 10, 10)) == {"forward_flops": 2 * macs + 800, "backward_flops": 4 * macs + 800,
                                      "cache_bytes": 4 * 12 * 3 * 3 * 10}  # 12 padded rows x C x kw x Wo
    grouped = L.Conv2D(4, 8, 3, stride=2, groups=2, bias=False, rng=rng)
    assert grouped.cost((4, 9, 9))["forward_flops"] == 2 * 8 * 4 * 4 * 2 * 9
    conv.input_grad = False  # the first layer: no input gradient to compute
    assert conv.cost((3, 10, 10))["backward_flops"] == 2 * macs + 800


def test_summary_reports_flops_and_cache(rng):
    model = Sequential(L.Conv2D(1, 2, 3, rng=rng), L.ReLU(), L.Flatten(), L.Dense(18, 4, rng=rng),
                       input_shape=(1, 5, 5))
    text = model.summary(batch_size=10, print_fn=None)
    conv_row = [line for line in text.splitlines() if line.startswith("0: Conv2D")][0]
    # 10 * (2 * 2*3*3*9 + 18) forward FLOPs, 10 * 4 * 9*9 bytes of unfolded input
    assert "3.42k" in conv_row and "3.16 KiB" in conv_row
    total = model.cost((1, 5, 5))
    assert total["forward_flops"] == 342 + 18 + 2 * 18 * 4 + 4


def test_input_grad_false_on_sequential(rng):
    model = small_cnn(rng)
    model.input_grad = False
    assert model.layers[0].input_grad is False and model.input_grad is False
    out = model.forward(rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    dx, grads = model.backward(np.ones_like(out))
    assert dx is None and list(grads) == list(model.params)


def test_a_slice_is_a_sequential_sharing_the_layers(rng):
    model = small_cnn(rng)
    part = model[1:3]
    assert isinstance(part, Sequential) and len(part) == 2
    assert part[0] is model[1] and part[1] is model[2]
    assert part.params.keys() == {f"{i}.{k}" for i, layer in enumerate(model.layers[1:3]) for k in layer.params}
    assert all(a is b for a, b in zip(part.parameters(), model[1:3].parameters()))
    assert isinstance(model[-1], L.Layer) and not isinstance(model[-1], Sequential)


def test_summary_prints_nothing(rng, capsys):
    text = small_cnn(rng).summary()
    assert "total" in text
    assert capsys.readouterr().out == ""


def test_a_wider_batch_warns_once_per_model(rng):
    import warnings
    model = small_cnn(rng)
    x = rng.standard_normal((2, 1, 8, 8))
    with pytest.warns(L.DtypeWarning, match=r"float64 batch into a model with float32 parameters") as record:
        out = model.forward(x)
        model.predict(x)
    assert len(record) == 1 and issubclass(L.DtypeWarning, UserWarning)
    assert not issubclass(L.DtypeWarning, RuntimeWarning)
    assert out.dtype == np.float64  # the documented rule: it computes in the batch's dtype
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_cnn(rng).forward(x.astype(np.float32))
        small_cnn(rng).astype(np.float64).forward(x)


def test_help_on_train_shows_a_docstring():
    import pydoc
    text = pydoc.render_doc(L.Layer.train, renderer=pydoc.plaintext)
    assert "Set training mode" in text and "backward" in text and "---" not in text
    assert L.Layer.eval.__doc__ and L.Layer.astype.__doc__


def test_one_layer_object_twice_is_refused(rng):
    d = L.Dense(3, 3, rng=rng)
    with pytest.raises(ValueError, match=r"Sequential: the same Dense object is at position '0' and at '2'.*"
                                         r"Sharing weights is not supported: build two layers"):
        Sequential(d, L.Tanh(), d)
    with pytest.raises(ValueError, match="'0.1' and at '1'"):
        Sequential([Sequential(L.Tanh(), d), d])
    # two layers with the same initial weights are the supported way, and they check out
    model = Sequential(d, L.Tanh(), copy.deepcopy(d)).astype(np.float64)
    report = check_layer(model, away_from_kinks(rng, (2, 3)))
    assert report.passed(), str(report)


def test_forward_checks_the_input_against_input_shape(rng):
    model = Sequential(L.Flatten(), L.Dense(48, 3, rng=rng), input_shape=(3, 4, 4))
    channels_last = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"Sequential: expected input of shape \(N, 3, 4, 4\).*got \(2, 4, 4, 3\)"
                                         r".*x\.transpose\(0, 3, 1, 2\)"):
        model.forward(channels_last)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, 4, 4\).*got \(2, 48\)$"):
        model.forward(np.zeros((2, 48), np.float32))
    with pytest.raises(ValueError, match=r"got \(2, 4, 4, 3\)"):
        model.predict(channels_last)
    assert model.forward(channels_last.transpose(0, 3, 1, 2)).shape == (2, 3)
    assert model.predict(np.zeros((0, 3, 4, 4), np.float32)).shape == (0, 3)
    # without input_shape the layers alone decide what they accept
    assert Sequential(L.Flatten(), L.Dense(48, 3, rng=rng)).forward(channels_last).shape == (2, 3)


def test_zoo_models_check_their_input(rng):
    for name, builder in models.zoo.MODELS.items():
        model = builder(rng=rng)
        assert model.input_shape is not None, name
        c, h, w = model.input_shape
        with pytest.raises(ValueError, match="channels-last"):
            model.forward(np.zeros((1, h, w, c), np.float32))


@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                               (True, TypeError), (None, TypeError)])
def test_predict_refuses_a_bad_batch_size(rng, batch_size, error):
    model = Sequential(L.Dense(4, 2, rng=rng))
    was_training = model.training
    with pytest.raises(error, match="Sequential.predict: batch_size must be"):
        model.predict(np.zeros((5, 4), np.float32), batch_size=batch_size)
    assert model.training == was_training
    assert model.predict(np.ones((5, 4), np.float32), batch_size=2).shape == (5, 2)
