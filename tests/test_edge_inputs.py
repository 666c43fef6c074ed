"""Hostile and edge-case inputs on the layer side: empty batches, every floating dtype,
bad upstream gradients, bad constructor arguments, extreme logits."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import layers as L
from conftest import away_from_kinks
from layer_table import ROWS
from models import Sequential, zoo

ROW_IDS = [r[0] for r in ROWS]
FLOATS = [np.float16, np.float32, np.float64]


def run(layer, x):
    """Forward and backward with warnings as errors (a RuntimeWarning is a failure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", L.DtypeWarning)
        out = layer.forward(x)
        dx, grads = layer.backward(np.ones_like(out))
    return out, dx, grads


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=ROW_IDS)
@settings(max_examples=12, deadline=None)
@given(batch=st.sampled_from([0, 0, 1, 3]), dtype=st.sampled_from(FLOATS), training=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_any_batch_size_and_dtype_through_every_layer(name, factory, shape, batch, dtype, training, seed):
    rng = np.random.default_rng(seed)
    layer = factory(rng).train(training)
    x = away_from_kinks(rng, (batch,) + shape[1:]).astype(dtype)
    try:
        out, dx, grads = run(layer, x)
    except ValueError as err:  # the one clear error: batch statistics of a single value
        assert training and batch == 1 and "more than one value per channel" in str(err)
        return
    assert out.shape == (batch,) + tuple(layer.output_shape(shape[1:]))
    assert out.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert set(grads) == set(layer.params)
    for key, g in grads.items():
        assert g.shape == layer.params[key].shape and g.dtype == dtype
        assert np.isfinite(g).all()


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=ROW_IDS)
def test_bad_upstream_gradients_are_named(name, factory, shape, rng):
    layer = factory(rng)
    out = layer.forward(away_from_kinks(rng, shape).astype(np.float32))
    wrong_shape = np.ones(out.shape[:-1] + (out.shape[-1] + 1,), np.float32)
    for bad, error, what in [(out.tolist(), TypeError, "as a numpy array"), (None, TypeError, "as a numpy array"),
                             (wrong_shape, ValueError, "upstream gradient of shape"),
                             (np.ones(out.shape, np.int64), TypeError, "floating-point upstream gradient")]:
        with pytest.raises(error, match=r"\w+\.backward: expected .*" + what):
            layer.backward(bad)


@pytest.mark.parametrize("name,factory,shape", ROWS, ids=ROW_IDS)
def test_an_upstream_gradient_of_another_float_dtype_gives_the_forward_s_dtype(name, factory, shape, rng):
    x = away_from_kinks(rng, shape).astype(np.float32)
    out_shape = factory(np.random.default_rng(0)).forward(x).shape
    dout = rng.standard_normal(out_shape).astype(np.float16)  # exact in every floating dtype

    def backward(dtype):
        layer = factory(np.random.default_rng(0))  # the same weights and dropout masks each time
        layer.forward(x)
        return layer.backward(dout.astype(dtype))

    want_dx, want = backward(np.float32)
    for dtype in (np.float16, np.float64):
        dx, grads = backward(dtype)
        assert dx.dtype == np.float32, (dtype, dx.dtype)
        np.testing.assert_array_equal(dx, want_dx)
        assert set(grads) == set(want)
        for key, g in grads.items():
            assert g.dtype == np.float32, (dtype, key, g.dtype)
            np.testing.assert_array_equal(g, want[key])


@pytest.mark.parametrize("layer, good, bad", [
    (L.Conv2D(1, 1, 3, rng=0), np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2))),  # kernel too large
    (L.BatchNorm1D(3), np.ones((4, 3), np.float32), np.ones((1, 3)))])  # batch statistics of one value
def test_a_refused_forward_leaves_the_last_forward_s_gradient_dtype(layer, good, bad):
    out = layer.forward(good)
    with pytest.raises(ValueError):
        layer.forward(bad)  # float64, refused after its dtype was checked
    dx, grads = layer.backward(np.ones_like(out))
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())


@pytest.mark.parametrize("x", [np.arange(4).reshape(2, 2), np.zeros((2, 2), bool)])
def test_an_empty_sequential_never_converts_a_gradient_to_a_non_float_input_dtype(x):
    model = Sequential()
    model.forward(x)
    dx, _ = model.backward(np.full((2, 2), 0.5, np.float32))
    assert dx.dtype == np.float32 and (dx == 0.5).all()


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_dropout_names_a_bad_gradient_even_as_the_identity(p, rng):
    layer = L.Dropout(p, rng=rng)
    layer.forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"Dropout.backward: expected upstream gradient of shape \(2, 3\)"):
        layer.backward(np.ones((3, 2), np.float32))


@pytest.mark.parametrize("loss, target", [(L.SoftmaxCrossEntropy(), np.zeros(0, np.int64)),
                                          (L.MSELoss(), np.zeros((0, 4), np.float32))])
def test_losses_refuse_an_empty_batch_clearly(loss, target):
    with pytest.raises(ValueError, match="empty batch"):
        loss.forward(np.zeros((0, 4), np.float32), target)


@pytest.mark.parametrize("build, shape", [(zoo.mnist_cnn, (1, 28, 28)), (zoo.lenet, (1, 28, 28)),
                                          (zoo.cifar10_quick, (3, 32, 32))])
def test_predict_on_no_rows_gives_no_rows_of_the_output_shape(build, shape, rng):
    model = build(rng=rng)
    out = model.predict(np.zeros((0,) + shape, np.float32))
    assert out.shape == (0, 10) and out.dtype == np.float32


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS), k=st.integers(1, 5), n=st.integers(1, 4),
       smoothing=st.sampled_from([0.0, 0.1]))
def test_softmax_cross_entropy_is_finite_for_any_finite_logits(data, dtype, k, n, smoothing):
    big = float(np.finfo(dtype).max)
    elements = st.one_of(st.sampled_from([big, -big, 0.0]),
                         st.floats(-big, big, allow_nan=False, width=np.dtype(dtype).itemsize * 8))
    logits = data.draw(hnp.arrays(dtype, (n, k), elements=elements))
    target = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    loss = L.SoftmaxCrossEntropy(smoothing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss.forward(logits, target)
        grad = loss.backward()
    assert math.isfinite(value) and value >= 0
    assert grad.dtype == dtype and np.isfinite(grad).all() and np.abs(grad).max() <= 1


def test_label_smoothing_on_equal_extreme_logits_is_log_k():
    # the mean of three float64 maxima rounds above the maximum; the loss must not go negative
    big = np.finfo(np.float64).max
    value = L.SoftmaxCrossEntropy(0.1).forward(np.full((1, 3), big), np.zeros(1, np.int64))
    assert value == pytest.approx(math.log(3))


def test_softmax_cross_entropy_extremes_by_hand():
    for dtype in FLOATS:
        big = np.finfo(dtype).max
        logits = np.array([[big, -big], [-big, big]], dtype)
        loss = L.SoftmaxCrossEntropy()
        assert loss.forward(logits, np.array([0, 1])) == 0.0
        expected = 2 * float(big) if dtype != np.float64 else float(big)  # float64 saturates
        assert loss.forward(logits, np.array([1, 0])) == pytest.approx(expected, rel=1e-6)
        np.testing.assert_allclose(loss.backward(), [[0.5, -0.5], [-0.5, 0.5]])


NOT_SIZES = [2.7, 2.0, True, False, math.nan, math.inf, "3", None, -1, 0]
NOT_FINITE = [math.nan, math.inf, -math.inf]

BAD_CONSTRUCTIONS = (
    [(lambda v: L.Dense(v, 4), "Dense", "in_features"), (lambda v: L.Dense(4, v), "Dense", "out_features"),
     (lambda v: L.Conv2D(v, 4, 3), "Conv2D", "in_channels"), (lambda v: L.Conv2D(2, v, 3), "Conv2D", "out_channels"),
     (lambda v: L.Conv2D(2, 4, 3, groups=v), "Conv2D", "groups"),
     (lambda v: L.Conv2D(2, 4, v), "Conv2D", "kernel_size"), (lambda v: L.Conv2D(2, 4, 3, stride=v), "Conv2D", "stride"),
     (lambda v: L.Conv2D(2, 4, 3, dilation=v), "Conv2D", "dilation"),
     (lambda v: L.MaxPool2D(v), "MaxPool2D", "kernel_size"), (lambda v: L.AvgPool2D(2, stride=v), "AvgPool2D", "stride"),
     (lambda v: L.BatchNorm1D(v), "BatchNorm1D", "num_features"),
     (lambda v: L.BatchNorm2D(v), "BatchNorm2D", "num_features")],
    [(lambda v: L.BatchNorm2D(3, eps=v), "BatchNorm2D", "eps"),
     (lambda v: L.BatchNorm1D(3, momentum=v), "BatchNorm1D", "momentum"),
     (lambda v: L.Dropout(v), "Dropout", "p"), (lambda v: L.LeakyReLU(v), "LeakyReLU", "negative_slope"),
     (lambda v: L.SoftmaxCrossEntropy(v), "SoftmaxCrossEntropy", "label_smoothing")],
)


@settings(max_examples=80, deadline=None)
@given(case=st.sampled_from(BAD_CONSTRUCTIONS[0]), bad=st.sampled_from(NOT_SIZES))
def test_constructors_refuse_what_is_not_a_size(case, bad):
    make, owner, arg = case
    assume(not (bad is None and owner == "AvgPool2D"))  # stride=None means stride = kernel_size
    with pytest.raises((TypeError, ValueError), match=rf"{owner}: .*{arg}") as err:
        make(bad)
    assert "\n" not in str(err.value)


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(BAD_CONSTRUCTIONS[1]),
       bad=st.one_of(st.sampled_from(NOT_FINITE + ["0.1", None]), st.floats(-1e9, -1e-9), st.floats(1.0001, 1e9)))
def test_constructors_refuse_non_finite_or_out_of_range_floats(case, bad):
    make, owner, arg = case
    if arg == "negative_slope" and isinstance(bad, float) and math.isfinite(bad):
        return  # any finite slope is a LeakyReLU
    if arg == "eps" and isinstance(bad, float) and math.isfinite(bad) and bad > 0:
        return  # any positive eps is valid
    with pytest.raises((TypeError, ValueError), match=rf"{owner}: {arg} must be") as err:
        make(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("layer", [L.Conv2D(3, 8, 3), L.BatchNorm2D(3)], ids=["conv", "batchnorm"])
def test_a_channels_last_batch_gets_a_hint(layer):
    with pytest.raises(ValueError, match=r"images are NCHW .* looks NHWC: pass x.transpose\(0, 3, 1, 2\)"):
        layer.forward(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError) as err:  # not for every wrong channel count
        layer.forward(np.zeros((2, 4, 8, 8), np.float32))
    assert "NHWC" not in str(err.value)
