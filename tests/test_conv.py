"""Conv2D against scipy.signal, im2col/col2im adjointness, chunking, shapes and errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import signal

from layers import Conv2D, no_grad
from layers.im2col import col2im, im2col, output_size, pad_nchw, tap_ranges


def dilate(kernel, d):
    """Insert d-1 zeros between kernel taps: a dilated kernel as a dense one."""
    (dh, dw), (kh, kw) = d, kernel.shape
    out = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1))
    out[::dh, ::dw] = kernel
    return out


def scipy_conv(layer, x, dout):
    """Forward, dx, dweight, dbias of ``layer`` computed channel by channel with scipy.signal."""
    w = layer.params["weight"].astype(np.float64)
    b = layer.params["bias"].astype(np.float64) if layer.use_bias else np.zeros(w.shape[0])
    (sh, sw), d, g = layer.stride, layer.dilation, layer.groups
    top, bottom, left, right = layer.pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c = x.shape[:2]
    cout, cg = w.shape[:2]
    og = cout // g
    ho, wo = dout.shape[2:]
    out = np.zeros((n, cout, ho, wo))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(n):
        for o in range(cout):
            # upsample dout by the stride: the gradient of a strided correlation
            up = np.zeros(((ho - 1) * sh + 1, (wo - 1) * sw + 1))
            up[::sh, ::sw] = dout[i, o]
            for k in range(cg):
                ch = (o // og) * cg + k
                wd = dilate(w[o, k], d)
                out[i, o] += signal.correlate(xp[i, ch], wd, mode="valid")[::sh, ::sw][:ho, :wo]
                full = signal.convolve2d(up, wd, mode="full")
                dxp[i, ch, :full.shape[0], :full.shape[1]] += full
                corr = signal.correlate2d(xp[i, ch], up, mode="valid")
                dw[o, k] += corr[:wd.shape[0]:d[0], :wd.shape[1]:d[1]]
            out[i, o] += b[o]
    dx = dxp[:, :, top:top + x.shape[2], left:left + x.shape[3]]
    return out, dx, dw, dout.sum(axis=(0, 2, 3))


CONFIGS = [
    dict(cin=1, cout=2, k=3),
    dict(cin=2, cout=3, k=3, stride=2),
    dict(cin=2, cout=2, k=3, padding=1),
    dict(cin=2, cout=2, k=(3, 2), padding=(2, 0)),
    dict(cin=3, cout=2, k=3, dilation=2, padding=1),
    dict(cin=2, cout=3, k=(2, 3), stride=(1, 2), dilation=(2, 1), padding=(1, 2)),
    dict(cin=2, cout=2, k=3, padding="same"),
    dict(cin=2, cout=2, k=4, padding="same", dilation=2),
    dict(cin=2, cout=2, k=3, padding="valid"),
    dict(cin=4, cout=6, k=3, groups=2, padding=1),
    dict(cin=3, cout=3, k=3, groups=3, padding=1),
    dict(cin=3, cout=6, k=3, groups=3, stride=2),
    dict(cin=4, cout=5, k=1),
    dict(cin=4, cout=5, k=1, stride=2, padding=1),
    dict(cin=4, cout=4, k=1, groups=4),
    dict(cin=1, cout=20, k=5, n=1, hw=(12, 12)),
    dict(cin=2, cout=3, k=5, padding=2, stride=3, hw=(11, 8), bias=False),
]


def rows_eligible(cfg):
    return cfg.get("groups", 1) == 1 and cfg.get("dilation", 1) in (1, (1, 1))


# every configuration with each unfolding that can compute it
CASES = [(cfg, alg) for cfg in CONFIGS for alg in ("im2col", "rows") if alg == "im2col" or rows_eligible(cfg)]
CASE_IDS = [f"{CONFIGS.index(cfg)}-{alg}" for cfg, alg in CASES]


def make(cfg, rng, **extra):
    kw = {key: cfg[key] for key in ("stride", "padding", "dilation", "groups", "bias") if key in cfg}
    return Conv2D(cfg["cin"], cfg["cout"], cfg["k"], rng=rng, **kw, **extra)


@pytest.mark.parametrize("cfg,algorithm", CASES, ids=CASE_IDS)
def test_matches_scipy(cfg, algorithm, rng):
    layer = make(cfg, rng, algorithm=algorithm).astype(np.float64)
    if layer.use_bias:
        layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)
    x = rng.standard_normal((cfg.get("n", 2), cfg["cin"]) + cfg.get("hw", (7, 6)))
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx, grads = layer.backward(dout)
    ref_out, ref_dx, ref_dw, ref_db = scipy_conv(layer, x, dout)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grads["weight"], ref_dw, rtol=1e-10, atol=1e-10)
    if layer.use_bias:
        np.testing.assert_allclose(grads["bias"], ref_db, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cfg,algorithm", CASES, ids=CASE_IDS)
def test_chunked_equals_whole_batch(cfg, algorithm, rng):
    whole = make(cfg, rng, algorithm=algorithm)
    chunked = make(cfg, rng, workspace_bytes=1, algorithm=algorithm)  # one image per chunk
    chunked.params = {k: v.copy() for k, v in whole.params.items()}
    x = rng.standard_normal((5, cfg["cin"]) + cfg.get("hw", (7, 6))).astype(np.float32)
    out_w, out_c = whole.forward(x), chunked.forward(x)
    np.testing.assert_allclose(out_c, out_w, rtol=1e-5, atol=1e-5)
    dout = rng.standard_normal(out_w.shape).astype(np.float32)
    (dx_w, g_w), (dx_c, g_c) = whole.backward(dout), chunked.backward(dout)
    np.testing.assert_allclose(dx_c, dx_w, rtol=1e-5, atol=1e-5)
    for key in g_w:
        np.testing.assert_allclose(g_c[key], g_w[key], rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2),
       p=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_im2col_col2im_adjoint(n, c, h, w, kh, kw, s, d, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    ho = output_size(h, kh, s, p, p, d)
    wo = output_size(w, kw, s, p, p, d)
    if ho <= 0 or wo <= 0:
        return
    xp = pad_nchw(x, (p, p, p, p))
    cols = im2col(xp, (kh, kw), (s, s), (d, d), (ho, wo))
    y = rng.standard_normal(cols.shape)
    back = col2im(y, xp.shape[2:], (kh, kw), (s, s), (d, d))
    np.testing.assert_allclose(np.vdot(cols, y), np.vdot(xp, back), rtol=1e-10)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 3), d=st.integers(1, 2),
       pad=st.integers(0, 3), extra=st.integers(0, 2))
def test_tap_ranges_list_exactly_the_reads_inside_the_input(size, k, s, d, pad, extra):
    out_len = max(output_size(size, k, s, pad, pad, d), 0) + extra  # extra: ceil-mode overhang
    for t, reach in enumerate(tap_ranges(k, s, d, pad, size, out_len)):
        expected = [(o, s * o + d * t - pad) for o in range(out_len) if 0 <= s * o + d * t - pad < size]
        got = [] if reach is None else list(zip(range(out_len)[reach[0]], range(size)[reach[1]]))
        assert got == expected


@settings(max_examples=60, deadline=None)
@given(h=st.integers(3, 12), w=st.integers(3, 12), k=st.integers(1, 3), s=st.integers(1, 3),
       d=st.integers(1, 2), p=st.integers(0, 2), g=st.sampled_from([1, 2]), seed=st.integers(0, 2**16),
       algorithm=st.sampled_from(["auto", "im2col", "rows"]))
def test_random_configurations(h, w, k, s, d, p, g, seed, algorithm):
    rng = np.random.default_rng(seed)
    if algorithm == "rows" and (g, d) != (1, 1):
        with pytest.raises(ValueError, match="algorithm='rows' needs groups=1 and dilation 1"):
            Conv2D(2, 4, k, stride=s, padding=p, dilation=d, groups=g, algorithm=algorithm)
        return
    if d * (k - 1) + 1 > min(h, w) + 2 * p:
        with pytest.raises(ValueError, match="larger than the padded input"):
            Conv2D(2, 2, k, stride=s, padding=p, dilation=d, groups=g, rng=rng).forward(
                np.zeros((1, 2, h, w), np.float32))
        return
    layer = Conv2D(2, 4, k, stride=s, padding=p, dilation=d, groups=g, rng=rng,
                   algorithm=algorithm).astype(np.float64)
    x = rng.standard_normal((2, 2, h, w))
    out = layer.forward(x)
    expect = ((h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1)
    assert out.shape == (2, 4) + expect
    assert layer.output_shape((2, h, w)) == (4,) + expect
    dout = rng.standard_normal(out.shape)
    dx, grads = layer.backward(dout)
    ref = scipy_conv(layer, x, dout)
    for got, want in zip((out, dx, grads["weight"], grads["bias"]), ref):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_same_padding_keeps_size(rng):
    for k in (1, 2, 3, 4, 5):
        out = Conv2D(1, 1, k, padding="same", rng=rng).forward(np.ones((1, 1, 7, 6), np.float32))
        assert out.shape == (1, 1, 7, 6)


def test_weight_shape_and_dtype(rng):
    layer = Conv2D(6, 9, (3, 5), groups=3, rng=rng)
    assert layer.params["weight"].shape == (9, 2, 3, 5)
    assert layer.params["weight"].dtype == np.float32 and layer.params["bias"].dtype == np.float32


def test_no_grad_keeps_nothing(rng):
    layer = Conv2D(2, 3, 3, rng=rng).eval()
    with no_grad():
        layer.forward(np.ones((2, 2, 5, 5), np.float32))
    assert layer._cache is None and not layer._workspace
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((2, 3, 3, 3), np.float32))


def test_forward_does_not_mutate_input(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    before = x.copy()
    layer = Conv2D(3, 2, 3, padding=1, rng=rng)
    out = layer.forward(x)
    layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), "divisible by groups"),
    (dict(in_channels=4, out_channels=3, kernel_size=3, groups=2), "divisible by groups"),
    (dict(in_channels=0, out_channels=3, kernel_size=3), "in_channels must be >= 1"),
    (dict(in_channels=2, out_channels=3, kernel_size=0), "kernel_size must be positive"),
    (dict(in_channels=2, out_channels=3, kernel_size=3, stride=(1, 0)), "stride must be positive"),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=-1), "padding"),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding="same", stride=2), "'same' needs stride 1"),
    (dict(in_channels=2, out_channels=3, kernel_size=(1, 2, 3)), "int or a pair"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2D(**kwargs)


def test_bad_inputs_name_the_layer(rng):
    layer = Conv2D(3, 4, 5, rng=rng)
    with pytest.raises(ValueError, match=r"Conv2D: expected input of shape \(N, 3, \*, \*\), got \(2, 2, 8, 8\)"):
        layer.forward(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D: expected input of shape"):
        layer.forward(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"larger than the padded input \(4, 8\)"):
        layer.forward(np.zeros((1, 3, 4, 8), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        layer.forward(np.zeros((1, 3, 8, 8), np.uint8))
    out = layer.forward(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="upstream gradient"):
        layer.backward(np.zeros((1, 4, 3, 3), np.float32))
    assert out.shape == (1, 4, 4, 4)


def test_output_memory_is_batch_innermost(rng):
    layer = Conv2D(3, 4, 3, padding=1, rng=rng)
    out = layer.forward(rng.standard_normal((5, 3, 6, 6)).astype(np.float32))
    from layers.im2col import is_chwn
    assert is_chwn(out)
    # the next convolution reads it without a padding/layout copy
    from layers.im2col import pad_nchw
    assert pad_nchw(out, (0, 0, 0, 0)) is out


def test_input_grad_false_skips_dx_only(rng):
    a = Conv2D(2, 3, 3, padding=1, rng=rng)
    b = Conv2D(2, 3, 3, padding=1, rng=rng)
    b.params = {k: v.copy() for k, v in a.params.items()}
    b.input_grad = False
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    dout = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    a.forward(x)
    b.forward(x)
    (dxa, ga), (dxb, gb) = a.backward(dout), b.backward(dout)
    assert dxa.shape == x.shape and dxb is None
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])


@pytest.mark.parametrize("cfg,algorithm", CASES, ids=CASE_IDS)
def test_every_scipy_configuration_passes_gradcheck(cfg, algorithm, rng):
    from layers.gradcheck import check_layer
    layer = make(cfg, rng, algorithm=algorithm).astype(np.float64)
    hw = tuple(min(s, 7) for s in cfg.get("hw", (6, 5)))
    x = rng.uniform(0.1, 1.0, (1, cfg["cin"]) + hw) * rng.choice([-1.0, 1.0], (1, cfg["cin"]) + hw)
    report = check_layer(layer, x)
    assert {c.name for c in report.checks} == {"input"} | set(layer.params)
    assert report.passed(), str(report)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=5, padding=2),                 # input gradient by rows
    dict(kernel_size=3, padding=1, stride=2),       # strided: by fold
    dict(kernel_size=(3, 5), padding=(4, 1)),       # padding above k - 1: by fold
    dict(kernel_size=(2, 3), stride=(2, 1)),
])
def test_rows_equals_im2col_in_float32_on_realistic_sizes(kwargs, rng):
    """The two unfoldings on 32-channel 16x16 images: the same numbers to float32 rounding,
    on inputs of NCHW and of batch-innermost memory alike."""
    a = Conv2D(32, 16, algorithm="im2col", rng=1, **kwargs)
    b = Conv2D(32, 16, algorithm="rows", rng=1, **kwargs)
    x = rng.standard_normal((6, 32, 16, 16)).astype(np.float32)
    for inp in (x, np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)):
        ya, yb = a.forward(inp), b.forward(inp)
        assert yb.dtype == np.float32 and yb.shape == ya.shape
        np.testing.assert_allclose(yb, ya, rtol=1e-4, atol=1e-4)
        dout = rng.standard_normal(ya.shape).astype(np.float32)
        (dxa, ga), (dxb, gb) = a.backward(dout), b.backward(np.ascontiguousarray(dout))
        assert dxb.dtype == np.float32
        np.testing.assert_allclose(dxb, dxa, rtol=1e-4, atol=1e-4)
        for key in ga:
            np.testing.assert_allclose(gb[key], ga[key], rtol=1e-3, atol=1e-3)


def test_auto_picks_by_image_geometry_never_by_batch_size(rng):
    """The two unfoldings round differently; a batch split over ranks must compute the
    same forward values as the whole batch in one process, so the batch size never
    decides (a row unfolding larger than the workspace is done in batch slices)."""
    import layers.conv as conv
    layer = Conv2D(32, 8, 3, padding=1, rng=rng)
    for n in (1, 4, 64):
        layer.forward(rng.standard_normal((n, 32, 16, 16)).astype(np.float32))
        assert layer._saved()[1] == "rows"
        narrow = conv.ROWS_MIN_OUTPUT_WIDTH - 1
        layer.forward(rng.standard_normal((n, 32, 5, narrow)).astype(np.float32))
        assert layer._saved()[1] == "cols"
    layer.workspace_bytes = 1024  # the row unfolding no longer fits: still rows, by batch slices
    layer.forward(rng.standard_normal((64, 32, 16, 16)).astype(np.float32))
    assert layer._saved()[1] == "rows-chunks"
    assert Conv2D(32, 8, 3, groups=2, rng=rng)._uses_rows(16) is False
    assert Conv2D(32, 8, 3, dilation=2, rng=rng)._uses_rows(16) is False


def test_auto_gives_a_split_batch_the_forward_values_of_the_whole(rng):
    """The same unfolding for each half as for the whole batch. The values then agree to
    float32 round-off only: a BLAS may sum a product of another width in another order
    (OpenBLAS does on some processors), so bit equality is not the test."""
    model_layers = [Conv2D(3, 16, 5, padding=2, rng=1), Conv2D(16, 8, 3, rng=2)]
    x = rng.standard_normal((32, 3, 12, 12)).astype(np.float32)
    whole = model_layers[1].forward(model_layers[0].forward(x))
    kinds = [layer._saved()[1] for layer in model_layers]
    halves = []
    for i in (0, 16):
        halves.append(model_layers[1].forward(model_layers[0].forward(x[i:i + 16])))
        assert [layer._saved()[1] for layer in model_layers] == kinds
    # 75 and 144 products per output: 2e-6 of the largest value is about twice what two summation orders give
    np.testing.assert_allclose(np.concatenate(halves), whole, rtol=0, atol=2e-6 * np.abs(whole).max())


def test_rows_keeps_kw_copies_of_the_input_not_kh_kw(rng):
    x = rng.standard_normal((8, 4, 10, 10)).astype(np.float32)
    im2col_layer = Conv2D(4, 4, 5, padding=2, algorithm="im2col", rng=rng)
    rows_layer = Conv2D(4, 4, 5, padding=2, algorithm="rows", rng=rng)
    im2col_layer.forward(x)
    rows_layer.forward(x)
    kept_cols = im2col_layer._saved()[2].nbytes
    kept_rows = rows_layer._saved()[2].nbytes
    assert kept_cols == 5 * 5 * x.nbytes
    assert kept_rows == 5 * x.nbytes * 14 // 10  # 5 copies of the 14 padded rows


def test_rows_under_no_grad_keeps_nothing(rng):
    layer = Conv2D(2, 3, 3, algorithm="rows", rng=rng)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    expected = layer.forward(x)
    layer.eval()
    layer._workspace.clear()
    with no_grad():
        out = layer.forward(x)
    assert layer._cache is None and not layer._workspace
    np.testing.assert_array_equal(out, expected)


def test_algorithm_is_validated_and_saved(rng, tmp_path):
    from models import Sequential, load, save_model
    with pytest.raises(ValueError, match=r"Conv2D: algorithm must be one of \('auto', 'im2col', 'rows'\)"):
        Conv2D(2, 3, 3, algorithm="winograd")
    with pytest.raises(ValueError, match="algorithm='rows' needs groups=1"):
        Conv2D(4, 4, 3, groups=2, algorithm="rows")
    model = Sequential(Conv2D(2, 3, 3, algorithm="rows", rng=rng))
    save_model(model, tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").layers[0].algorithm == "rows"


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=1), dict(kernel_size=5, padding=2, stride=2)])
def test_rows_in_batch_slices_equal_the_whole_batch_and_stay_within_the_workspace(kwargs, rng):
    """By rows (stride 1) and by fold (stride 2): slices of the batch (here of one or two
    images, products so small that OpenBLAS may switch kernels) give the whole batch's
    results to float32 rounding, and no workspace outgrows the limit."""
    limit = 200_000
    whole = Conv2D(32, 48, algorithm="rows", rng=1, **kwargs)
    sliced = Conv2D(32, 48, algorithm="rows", rng=1, workspace_bytes=limit, **kwargs)
    x = rng.standard_normal((24, 32, 14, 14)).astype(np.float32)
    out = whole.forward(x)
    np.testing.assert_allclose(sliced.forward(x), out, rtol=1e-5, atol=1e-5)
    assert sliced._saved()[1] == "rows-chunks"
    dout = rng.standard_normal(out.shape).astype(np.float32)
    (dx_w, g_w), (dx_s, g_s) = whole.backward(dout), sliced.backward(dout)
    np.testing.assert_allclose(dx_s, dx_w, rtol=1e-5, atol=1e-5)
    for key in g_w:
        np.testing.assert_allclose(g_s[key], g_w[key], rtol=1e-4, atol=1e-4)
    assert max(buf.nbytes for buf in sliced._workspace.values()) <= limit


def test_no_grad_forward_uses_the_training_forward_s_unfolding(rng, monkeypatch):
    """Under no_grad the slices are smaller (16 MiB), never another unfolding. (The values
    agree to round-off: a BLAS may sum a narrower product in another order.)"""
    layer = Conv2D(64, 64, 3, padding=1, rng=rng)
    calls = []
    for name in ("_unfold", "_unfold_rows"):
        method = getattr(layer, name)
        monkeypatch.setattr(layer, name, lambda *a, _m=method, _n=name, **k: calls.append(_n) or _m(*a, **k))
    x = rng.standard_normal((32, 64, 32, 32)).astype(np.float32)
    trained = layer.forward(x)
    assert set(calls) == {"_unfold_rows"} and layer._saved()[1] == "rows"
    calls.clear()
    with no_grad():
        inferred = layer.forward(x)
    assert set(calls) == {"_unfold_rows"} and len(calls) > 1  # in slices
    calls.clear()
    one = layer.forward(x[5:6])
    assert calls == ["_unfold_rows"]
    bound = 2e-6 * np.abs(trained).max()  # 576 products per output
    np.testing.assert_allclose(inferred, trained, rtol=0, atol=bound)
    np.testing.assert_allclose(one[0], trained[5], rtol=0, atol=bound)


def test_algorithm_can_be_changed_and_is_checked_when_set(rng):
    layer = Conv2D(2, 3, 3, rng=rng)
    layer.algorithm = "rows"
    assert layer.get_config()["algorithm"] == "rows"
    with pytest.raises(ValueError, match="Conv2D: algorithm must be one of"):
        layer.algorithm = "ROWS"
    grouped = Conv2D(4, 4, 3, groups=2, rng=rng)
    with pytest.raises(ValueError, match="algorithm='rows' needs groups=1"):
        grouped.algorithm = "rows"
    assert grouped.algorithm == "auto"


def test_cost_reports_the_cache_of_the_unfolding_taken():
    rows = Conv2D(8, 4, 5, padding=2, algorithm="rows").cost((8, 16, 16))["cache_bytes"]
    cols = Conv2D(8, 4, 5, padding=2, algorithm="im2col").cost((8, 16, 16))["cache_bytes"]
    assert cols == 4 * 8 * 25 * 16 * 16 and rows == 4 * 20 * 8 * 5 * 16
