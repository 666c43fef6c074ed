"""Pooling against plain loop references; routing of max-pool gradients and ties."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from layers import AvgPool2D, GlobalAvgPool2D, MaxPool2D


def loop_pool(x, k, s, p, ceil_mode, mode):
    """Reference pooling by explicit loops over windows (test code only)."""
    n, c, h, w = x.shape
    def size(length):
        room = length + 2 * p - k
        out = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (out - 1) * s >= length + p:
            out -= 1
        return out
    ho, wo = size(h), size(w)
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s - p, j * s - p
            r1, c1 = min(r0 + k, h), min(c0 + k, w)
            win = x[:, :, max(r0, 0):r1, max(c0, 0):c1]
            if mode == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                # count_include_pad: divisor spans the window clipped to the padded extent
                rows = min(r0 + k, h + p) - r0
                cols = min(c0 + k, w + p) - c0
                out[:, :, i, j] = win.sum(axis=(2, 3)) / (rows * cols)
    return out


CASES = [(2, 2, 0, False), (3, 2, 0, False), (3, 2, 1, False), (3, 2, 0, True), (3, 2, 1, True),
         (2, 1, 0, False), (3, 3, 1, True), (2, 2, 1, False), (2, 3, 0, False), (4, 3, 2, True)]


@pytest.mark.parametrize("k,s,p,ceil", CASES)
@pytest.mark.parametrize("cls,mode", [(MaxPool2D, "max"), (AvgPool2D, "avg")])
def test_forward_matches_loops(cls, mode, k, s, p, ceil, rng):
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8).astype(np.float64)  # no ties
    layer = cls(k, stride=s, padding=p, ceil_mode=ceil)
    np.testing.assert_allclose(layer.forward(x), loop_pool(x, k, s, p, ceil, mode), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 10), w=st.integers(2, 10), k=st.integers(2, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), ceil=st.booleans())
def test_output_shape_formula(h, w, k, s, p, ceil):
    if 2 * p > k or k > min(h, w) + 2 * p:
        return
    x = np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w)
    for cls, mode in ((MaxPool2D, "max"), (AvgPool2D, "avg")):
        layer = cls(k, stride=s, padding=p, ceil_mode=ceil)
        out = layer.forward(x)
        ref = loop_pool(x, k, s, p, ceil, mode)
        assert out.shape == ref.shape == (1,) + layer.output_shape((1, h, w))
        np.testing.assert_allclose(out, ref)


def loop_maxpool_backward(x, dout, k, s, p):
    """Reference max-pool gradient: each window's gradient goes to its first maximal
    element in row-major order (test code only)."""
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            r0, c0 = i * s - p, j * s - p
            rows = np.arange(max(r0, 0), min(r0 + k, x.shape[2]))
            cols = np.arange(max(c0, 0), min(c0 + k, x.shape[3]))
            win = x[:, :, rows[:, None], cols[None, :]].reshape(x.shape[0], x.shape[1], -1)
            first = win.argmax(axis=2)
            for n in range(x.shape[0]):
                for c in range(x.shape[1]):
                    r, q = divmod(first[n, c], len(cols))
                    dx[n, c, rows[r], cols[q]] += dout[n, c, i, j]
    return dx


@pytest.mark.parametrize("k,s,p,ceil", CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_backward_matches_loops(k, s, p, ceil, ties, rng):
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8).astype(np.float64)
    if ties:  # few distinct values: most windows hold their maximum more than once
        x = np.floor(x / 100)
    layer = MaxPool2D(k, stride=s, padding=p, ceil_mode=ceil)
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx, _ = layer.backward(dout)
    np.testing.assert_allclose(dx, loop_maxpool_backward(x, dout, k, s, p), rtol=1e-12, atol=1e-12)


def test_maxpool_routes_gradient_to_argmax_only():
    x = np.array([[[[1., 5., 2., 0.],
                    [3., 4., 7., 6.],
                    [0., 0., 1., 1.],
                    [9., 0., 1., 1.]]]])
    layer = MaxPool2D(2)
    out = layer.forward(x)
    np.testing.assert_array_equal(out[0, 0], [[5, 7], [9, 1]])
    dx, grads = layer.backward(np.array([[[[10., 20.], [30., 40.]]]]))
    assert grads == {}
    # ties (the bottom-right window is all ones) go to one element: the first in row-major order
    np.testing.assert_array_equal(dx[0, 0], [[0, 10, 0, 0],
                                             [0, 0, 20, 0],
                                             [0, 0, 40, 0],
                                             [30, 0, 0, 0]])


def test_maxpool_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the centre is the max of all four 2x2 stride-1 windows
    layer = MaxPool2D(2, stride=1)
    layer.forward(x)
    dx, _ = layer.backward(np.ones((1, 1, 2, 2)))
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


def test_maxpool_window_of_minus_inf_routes_to_an_input():
    x = np.full((1, 1, 4, 4), -np.inf)
    layer = MaxPool2D(3, stride=2, padding=1)
    layer.forward(x)
    dx, _ = layer.backward(np.ones((1, 1, 2, 2)))
    assert dx.sum() == 4.0  # no gradient lost to the padding


def test_maxpool_all_negative_with_padding():
    x = -np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    out = MaxPool2D(3, stride=2, padding=1).forward(x)
    assert np.isfinite(out).all() and out.max() < 0


def test_avgpool_distributes_evenly():
    layer = AvgPool2D(2)
    layer.forward(np.ones((1, 1, 4, 4)))
    dx, _ = layer.backward(np.full((1, 1, 2, 2), 8.0))
    np.testing.assert_array_equal(dx, np.full((1, 1, 4, 4), 2.0))


def test_global_avg_pool():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    layer = GlobalAvgPool2D()
    np.testing.assert_allclose(layer.forward(x), [[5.5, 17.5]])
    dx, _ = layer.backward(np.array([[12.0, 24.0]], np.float32))
    np.testing.assert_allclose(dx[0, 0], np.ones((3, 4)))
    np.testing.assert_allclose(dx[0, 1], 2 * np.ones((3, 4)))


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_errors(cls):
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        cls(0)
    with pytest.raises(ValueError, match="at most half the kernel"):
        cls(2, padding=2)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: expected input of shape \(N, \*, \*, \*\)"):
        cls(2).forward(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        cls(5).forward(np.zeros((1, 1, 3, 3), np.float32))
    assert math.prod(cls(2).output_shape((3, 8, 8))) == 3 * 16


def test_ceil_mode_takes_a_kernel_longer_than_the_input_when_the_window_starts_inside():
    # PyTorch's rule: in ceil mode the last window may run past the end by less than a
    # stride, so a (3, 1) kernel (stride 3) on 2 rows gives one partial window
    x = np.arange(22.0).reshape(1, 1, 2, 11)
    out = MaxPool2D((3, 1), ceil_mode=True).forward(x)
    np.testing.assert_array_equal(out, x[:, :, 1:2])
    avg = AvgPool2D((3, 1), ceil_mode=True)
    np.testing.assert_allclose(avg.forward(x), x.mean(axis=2, keepdims=True))  # over the 2 rows it covers
    dx, _ = avg.backward(np.ones((1, 1, 1, 11)))
    np.testing.assert_allclose(dx, np.full(x.shape, 0.5))
    with pytest.raises(ValueError, match="kernel \\(3, 1\\) is larger than the padded input"):
        MaxPool2D((3, 1), stride=1, ceil_mode=True).forward(x)  # no window starts inside: refused, as in PyTorch
