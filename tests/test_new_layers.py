"""The layers for autoencoders, U-Nets and GroupNorm networks beyond the gradient table:
loop and scipy references, empty batches, eval-mode backward, save/load, costs, argument
checks, and the losses."""
import numpy as np
import pytest
from scipy import signal, special, stats

import layers as L
import models
from conftest import away_from_kinks
from layer_table import ROWS
from layers.gradcheck import check_layer, check_loss
from models import Concat, Sequential

NEW_PREFIXES = ("conv_transpose", "upsample", "zeropad", "layernorm", "groupnorm", "instancenorm", "elu",
                "gelu", "softplus", "prelu", "hardswish", "silu", "log_softmax", "dropout2d", "concat")
NEW_ROWS = [row for row in ROWS if row[0].startswith(NEW_PREFIXES)]
IDS = [row[0] for row in NEW_ROWS]


# -- ConvTranspose2D -------------------------------------------------------------------------

def conv_transpose_loop(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """Direct definition: each input pixel adds weight * value onto its output window."""
    n, cin, h, w = x.shape
    _, cog, kh, kw = weight.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, cog * groups, ho + 2 * ph, wo + 2 * pw))
    cig = cin // groups
    for c in range(cin):
        g = c // cig
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for b in range(kw):
                        full[:, g * cog:(g + 1) * cog, i * sh + a * dh, j * sw + b * dw] += \
                            x[:, c, i, j, None] * weight[c, :, a, b]
    return full[:, :, ph:ph + ho, pw:pw + wo] + bias.reshape(1, -1, 1, 1)


CONVT_CASES = [  # in, out, kernel, stride, padding, output_padding, dilation, groups, input hw
    (3, 2, 3, 2, 1, 1, 1, 1, (4, 5)),
    (2, 4, (2, 3), (1, 2), (0, 1), (0, 1), 1, 2, (3, 3)),
    (4, 4, 3, 3, 2, 2, 1, 4, (3, 4)),
    (2, 3, 3, 1, 0, 1, 2, 1, (4, 4)),
    (3, 2, 1, 2, 0, 0, 1, 1, (3, 2)),
    (2, 2, 4, 2, 1, 0, 1, 1, (1, 1)),
]


@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose_matches_loop_reference(case, rng):
    cin, cout, k, s, p, op, d, g, hw = case
    layer = L.ConvTranspose2D(cin, cout, k, stride=s, padding=p, output_padding=op, dilation=d, groups=g,
                              rng=rng).astype(np.float64)
    layer.params["bias"][...] = rng.standard_normal(cout)
    x = rng.standard_normal((2, cin) + hw)
    expect = conv_transpose_loop(x, layer.params["weight"], layer.params["bias"], layer.stride, layer.padding,
                                 layer.output_padding, layer.dilation, g)
    np.testing.assert_allclose(layer.forward(x), expect, rtol=1e-12, atol=1e-12)
    assert layer.output_shape((cin,) + hw) == expect.shape[1:]


def test_conv_transpose_is_a_full_convolution(rng):
    # stride 1: out[o] = sum_c convolve2d(x[c], weight[c, o], "full"), cropped by padding
    layer = L.ConvTranspose2D(3, 2, (3, 2), padding=(1, 0), rng=rng).astype(np.float64)
    x = rng.standard_normal((2, 3, 5, 4))
    out = layer.forward(x)
    w = layer.params["weight"]
    for n in range(2):
        for o in range(2):
            full = sum(signal.convolve2d(x[n, c], w[c, o], mode="full") for c in range(3))
            np.testing.assert_allclose(out[n, o], full[1:-1, :], rtol=1e-12, atol=1e-12)


def test_conv_transpose_is_the_adjoint_of_conv(rng):
    # <conv(y), x> == <y, conv_transpose(x)> for the same weight, bias off
    conv = L.Conv2D(2, 4, 3, stride=2, padding=1, dilation=1, groups=2, bias=False, rng=rng).astype(np.float64)
    convt = L.ConvTranspose2D(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2, bias=False)
    convt.astype(np.float64).params["weight"][...] = conv.params["weight"]
    y = rng.standard_normal((3, 2, 8, 6))
    x = rng.standard_normal((3, 4, 4, 3))
    lhs = np.sum(conv.forward(y) * x)
    rhs = np.sum(y * convt.forward(x))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_conv_transpose_inverts_conv_output_size():
    conv = L.Conv2D(1, 1, 3, stride=2, padding=1)
    for h in (7, 8):
        ho = conv.output_shape((1, h, h))[1]
        op = h - L.ConvTranspose2D(1, 1, 3, stride=2, padding=1).output_shape((1, ho, ho))[1]
        assert L.ConvTranspose2D(1, 1, 3, stride=2, padding=1, output_padding=op).output_shape((1, ho, ho)) \
            == (1, h, h)


# -- Upsample2D ------------------------------------------------------------------------------

def bilinear_loop(x, ho, wo, align_corners, scale=None):
    """PyTorch's bilinear rule, pixel by pixel."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, ho, wo))

    def source(dst, size_in, size_out, s):
        if align_corners:
            return dst * (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        return max((dst + 0.5) * (1 / s if s else size_in / size_out) - 0.5, 0.0)

    for i in range(ho):
        y = source(i, h, ho, scale and scale[0])
        y0 = min(int(np.floor(y)), h - 1)
        y1, ly = min(y0 + 1, h - 1), y - y0
        for j in range(wo):
            xs = source(j, w, wo, scale and scale[1])
            x0 = min(int(np.floor(xs)), w - 1)
            x1, lx = min(x0 + 1, w - 1), xs - x0
            out[:, :, i, j] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1]) +
                               ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return out


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("kw", [{"scale_factor": 2}, {"scale_factor": (1.5, 3)}, {"size": (7, 2)},
                                {"scale_factor": 0.5}])
def test_bilinear_matches_loop_reference(align_corners, kw, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = L.Upsample2D(mode="bilinear", align_corners=align_corners, **kw)
    out = layer.forward(x)
    scale = layer.scale_factor
    np.testing.assert_allclose(out, bilinear_loop(x, *out.shape[2:], align_corners, scale), rtol=1e-12, atol=1e-14)
    assert check_layer(layer, x).passed()


@pytest.mark.parametrize("kw", [{"scale_factor": 3}, {"scale_factor": (2, 1.5)}, {"size": (9, 4)},
                                {"scale_factor": 0.5}])
def test_nearest_matches_loop_reference(kw, rng):
    x = rng.standard_normal((2, 2, 4, 5))
    out = L.Upsample2D(**kw).forward(x)
    ho, wo = out.shape[2:]
    sh, sw = kw.get("scale_factor", (None, None)) if not np.isscalar(kw.get("scale_factor")) \
        else (kw["scale_factor"],) * 2
    for i in range(ho):
        for j in range(wo):
            si = min(int(np.floor(i * np.float32(1 / sh if sh else 4 / ho))), 3)
            sj = min(int(np.floor(j * np.float32(1 / sw if sw else 5 / wo))), 4)
            np.testing.assert_array_equal(out[:, :, i, j], x[:, :, si, sj])


# -- every new layer -------------------------------------------------------------------------

@pytest.mark.parametrize("name,factory,shape", NEW_ROWS, ids=IDS)
def test_empty_batch(name, factory, shape, rng):
    layer = factory(rng)
    x = np.zeros((0,) + shape[1:], np.float32)
    out = layer.forward(x)
    assert out.shape == (0,) + tuple(layer.output_shape(shape[1:])) and out.dtype == np.float32
    dx, grads = layer.backward(np.zeros_like(out))
    assert dx.shape == x.shape and dx.dtype == np.float32
    for key, g in grads.items():
        assert g.shape == layer.params[key].shape and not g.any()


@pytest.mark.parametrize("name,factory,shape", NEW_ROWS, ids=IDS)
def test_backward_after_eval_mode_forward(name, factory, shape, rng):
    layer = factory(rng).astype(np.float64).eval()
    report = check_layer(layer, away_from_kinks(rng, shape))
    assert report.passed(1e-6), str(report)
    with L.no_grad():
        layer.forward(away_from_kinks(rng, shape))
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones(layer.output_shape(shape[1:]), np.float64)[None].repeat(shape[0], 0))


@pytest.mark.parametrize("name,factory,shape", NEW_ROWS, ids=IDS)
def test_save_load_is_bit_exact(name, factory, shape, rng, tmp_path):
    model = Sequential(factory(rng))
    for key, value in model.params.items():  # away from the constructor's values
        value[...] = rng.standard_normal(value.shape)
    model.save(tmp_path / "m.npz")
    loaded = models.load(tmp_path / "m.npz")
    assert models.layer_spec(loaded) == models.layer_spec(model)
    assert list(loaded.params) == list(model.params)
    for key, value in model.params.items():
        np.testing.assert_array_equal(loaded.params[key], value)
    x = away_from_kinks(rng, shape).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("name,factory,shape", NEW_ROWS, ids=IDS)
def test_summary_shows_costs(name, factory, shape, rng):
    layer = factory(rng)
    cost = layer.cost(shape[1:])
    assert set(cost) == {"forward_flops", "backward_flops", "cache_bytes"}
    assert all(isinstance(v, int) and v >= 0 for v in cost.values())
    text = Sequential(layer).summary(shape[1:], print_fn=None)
    assert type(layer).__name__ in text and "fwd FLOPs" in text and "cached" in text


def test_conv_transpose_cost():
    layer = L.ConvTranspose2D(4, 6, 3, stride=2, groups=2)
    cost = layer.cost((4, 5, 5))  # out 11x11
    macs = 4 * 5 * 5 * 3 * 9
    assert cost == {"forward_flops": 2 * macs + 6 * 121, "backward_flops": 4 * macs + 6 * 121,
                    "cache_bytes": 4 * 100}


@pytest.mark.parametrize("make,error,match", [
    (lambda: L.ConvTranspose2D(3, 4, 3, groups=2), ValueError, "divisible by groups"),
    (lambda: L.ConvTranspose2D(3, 4, 3, stride=2, output_padding=2), ValueError, "output_padding"),
    (lambda: L.ConvTranspose2D(3.0, 4, 3), TypeError, "ConvTranspose2D: in_channels"),
    (lambda: L.ConvTranspose2D(3, 4, 0), ValueError, "ConvTranspose2D: kernel_size"),
    (lambda: L.ConvTranspose2D(3, 4, 3, stride=(2, True)), TypeError, "ConvTranspose2D: stride"),
    (lambda: L.ConvTranspose2D(3, 4, 3, padding=-1), ValueError, "ConvTranspose2D: padding"),
    (lambda: L.Upsample2D(), ValueError, "exactly one of size and scale_factor"),
    (lambda: L.Upsample2D(scale_factor=2, mode="bicubic"), ValueError, "mode"),
    (lambda: L.Upsample2D(scale_factor=2, align_corners=True), ValueError, "applies to mode=.bilinear. only"),
    (lambda: L.Upsample2D(scale_factor=-1), ValueError, "Upsample2D: scale_factor"),
    (lambda: L.ZeroPad2D((1, 2)), ValueError, "left, right, top, bottom"),
    (lambda: L.ZeroPad2D(-1), ValueError, "ZeroPad2D: padding"),
    (lambda: L.LayerNorm(0), ValueError, "LayerNorm: normalized_shape"),
    (lambda: L.LayerNorm(4, eps=0), ValueError, "LayerNorm: eps"),
    (lambda: L.GroupNorm(3, 4), ValueError, "divisible by num_groups"),
    (lambda: L.GroupNorm(2, True), TypeError, "GroupNorm: num_channels"),
    (lambda: L.InstanceNorm2D(0), ValueError, "InstanceNorm2D: num_features must be >= 1, got 0"),
    (lambda: L.ELU(float("nan")), ValueError, "ELU: alpha"),
    (lambda: L.GELU("erf"), ValueError, "approximate"),
    (lambda: L.Softplus(beta=0), ValueError, "Softplus: beta"),
    (lambda: L.PReLU(2.5), TypeError, "PReLU: num_parameters"),
    (lambda: L.Dropout2D(1.0), ValueError, "Dropout2D: p"),
    (lambda: L.LogSoftmax(1.0), TypeError, "LogSoftmax: axis"),
    (lambda: Concat([]), ValueError, "at least one branch"),
    (lambda: Concat([L.ReLU()], axis=0), ValueError, "batch"),
    (lambda: L.BCEWithLogits(pos_weight=[[1.0]]), ValueError, "pos_weight"),
    (lambda: L.NLLLoss(reduction="none"), ValueError, "reduction"),
    (lambda: L.HuberLoss(delta=0), ValueError, "HuberLoss: delta"),
    (lambda: L.SmoothL1Loss(beta=-1), ValueError, "SmoothL1Loss: beta"),
])
def test_constructor_checks(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer,x,match", [
    (L.ConvTranspose2D(3, 2, 3), np.zeros((2, 4, 5, 5), np.float32), r"\(N, 3, \*, \*\)"),
    (L.ConvTranspose2D(1, 1, 3, padding=3), np.zeros((1, 1, 2, 2), np.float32), "no output"),
    (L.Upsample2D(scale_factor=2), np.zeros((2, 3, 4), np.float32), "rank 4"),
    (L.LayerNorm((3, 4)), np.zeros((2, 4, 3), np.float32), r"\(N, \*, 3, 4\)"),
    (L.GroupNorm(2, 4), np.zeros((2, 3, 5), np.float32), r"\(N, 4, \*\)"),
    (L.PReLU(3), np.zeros((2, 4, 5), np.float32), r"\(N, 3, \*\)"),
    (L.Dropout2D(), np.zeros((2, 4), np.float32), "rank 4"),
])
def test_bad_inputs_name_the_layer(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(x)


# -- behaviour of single layers --------------------------------------------------------------

def test_groupnorm_statistics_and_instance_norm(rng):
    x = rng.standard_normal((3, 6, 4, 5)) * 3 + 1
    out = L.GroupNorm(3, 6).astype(np.float64).forward(x)
    groups = out.reshape(3, 3, -1)
    np.testing.assert_allclose(groups.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(groups.var(axis=2), 1, atol=1e-4)
    inst = L.InstanceNorm2D(6).astype(np.float64).forward(x)
    np.testing.assert_allclose(inst, L.GroupNorm(6, 6).astype(np.float64).forward(x), rtol=1e-13)
    expect = (x - x.mean(axis=(2, 3), keepdims=True)) / np.sqrt(x.var(axis=(2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(inst, expect, rtol=1e-12, atol=1e-12)


def test_layernorm_matches_definition_in_both_modes(rng):
    x = rng.standard_normal((4, 3, 5)) * 2 - 1
    layer = L.LayerNorm((3, 5)).astype(np.float64)
    layer.params["weight"][...] = rng.standard_normal((3, 5))
    layer.params["bias"][...] = rng.standard_normal((3, 5))
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    expect = (x - mean) / np.sqrt(var + 1e-5) * layer.params["weight"] + layer.params["bias"]
    np.testing.assert_allclose(layer.forward(x), expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.eval().forward(x), expect, rtol=1e-12, atol=1e-12)


def test_activation_values(rng):
    x = np.linspace(-5, 5, 41)[None]
    np.testing.assert_allclose(L.GELU().forward(x), x * stats.norm.cdf(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(L.SiLU().forward(x), x * special.expit(x), rtol=1e-12)
    np.testing.assert_allclose(L.ELU(0.5).forward(x), np.where(x > 0, x, 0.5 * np.expm1(x)), rtol=1e-12)
    np.testing.assert_allclose(L.Hardswish().forward(x), x * np.clip(x + 3, 0, 6) / 6, rtol=1e-12)
    np.testing.assert_allclose(L.Softplus().forward(x), np.log1p(np.exp(x)), rtol=1e-12)
    np.testing.assert_allclose(L.LogSoftmax().forward(x), np.log(special.softmax(x, axis=-1)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hardswish_gradient_at_the_kinks_is_that_of_the_flat_sides(dtype):
    """PyTorch gives 0 at x = -3 and 1 at x = 3 (not the inner slope's -1/2 and 3/2)."""
    x = np.array([[-3.5, -3.0, -2.5, 0.0, 2.5, 3.0, 3.5]], dtype)
    layer = L.Hardswish()
    layer.forward(x)
    dx, _ = layer.backward(np.ones_like(x))
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, [[0, 0, -1 / 3, 0.5, 4 / 3, 1, 1]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_and_log_softmax_are_stable(dtype):
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = L.Softplus(beta=3.0, threshold=1e9).forward(x)
        layer = L.LogSoftmax()
        logp = layer.forward(x)
        dx, _ = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(out, [[0.0, 0.0, np.log(2) / 3, 50.0, 1e4]], rtol=1e-6, atol=1e-30)
    assert np.isfinite(logp).all() and np.isfinite(dx).all() and logp.dtype == dtype


def test_dropout2d_drops_whole_channels(rng):
    layer = L.Dropout2D(0.5, rng=rng)
    x = np.ones((40, 30, 3, 4), np.float32)
    out = layer.forward(x)
    per_channel = out.reshape(40, 30, -1)
    assert ((per_channel == 0).all(axis=2) | (per_channel == 2).all(axis=2)).all()
    assert abs((per_channel[:, :, 0] == 0).mean() - 0.5) < 0.05
    dx, _ = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, out)
    np.testing.assert_array_equal(layer.eval().forward(x), x)


def test_concat_splits_the_gradient_and_nests(rng, tmp_path):
    a, b = L.Dense(3, 2, rng=rng).astype(np.float64), L.Dense(3, 4, rng=rng).astype(np.float64)
    node = Concat([a, b], axis=1)
    x = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(node.forward(x), np.concatenate([x @ a.params["weight"].T + a.params["bias"],
                                                                    x @ b.params["weight"].T + b.params["bias"]], 1))
    dout = rng.standard_normal((5, 6))
    dx, grads = node.backward(dout)
    np.testing.assert_allclose(dx, dout[:, :2] @ a.params["weight"] + dout[:, 2:] @ b.params["weight"], rtol=1e-12)
    assert list(grads) == ["0.weight", "0.bias", "1.weight", "1.bias"] == list(node.params)
    unet = Sequential(L.Conv2D(1, 2, 3, padding=1, rng=rng),
                      Concat([Sequential(L.MaxPool2D(2), Concat([L.Conv2D(2, 2, 1, rng=rng), Sequential()]),
                                         L.Upsample2D(scale_factor=2)), Sequential()]), input_shape=(1, 4, 4))
    assert unet.output_shape((1, 4, 4)) == (6, 4, 4)
    unet.save(tmp_path / "u.npz")
    loaded = models.load(tmp_path / "u.npz")
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), unet.predict(x))
    with pytest.raises(ValueError, match="branch 1 gives per-sample shape"):
        Concat([L.Conv2D(1, 2, 3, rng=rng), Sequential()]).output_shape((1, 4, 4))


def test_user_prelu_and_builtin_prelu_both_load(tmp_path):
    from examples.custom_layers import PReLU as UserPReLU
    model = Sequential(UserPReLU(3), L.PReLU(3))
    model.save(tmp_path / "p.npz")
    loaded = models.load(tmp_path / "p.npz")
    assert [type(layer) for layer in loaded.layers] == [UserPReLU, L.PReLU]


# -- losses ----------------------------------------------------------------------------------

def loss_cases(rng):
    logits = rng.standard_normal((4, 3)) * 2
    soft = rng.uniform(0, 1, (4, 3))
    logp = special.log_softmax(rng.standard_normal((4, 5, 2)), axis=1)
    return [
        (L.BCEWithLogits(), logits, (rng.uniform(size=(4, 3)) > 0.5).astype(np.float64)),
        (L.BCEWithLogits(pos_weight=[0.5, 2.0, 3.0]), logits, soft),
        (L.NLLLoss(), logp[:, :, 0], rng.integers(0, 5, 4)),
        (L.NLLLoss(), logp, rng.integers(0, 5, (4, 2))),
        (L.HuberLoss(delta=0.7), logits, soft),
        (L.SmoothL1Loss(beta=0.5), logits, soft),
    ]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("index", range(6))
def test_loss_gradcheck(index, reduction, rng):
    loss, pred, target = loss_cases(rng)[index]
    loss.reduction = reduction
    report = check_loss(loss, pred, target)
    assert report.passed(1e-6), str(report)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_values(reduction, rng):
    z, y = rng.standard_normal((6, 3)) * 3, rng.uniform(size=(6, 3))
    pw = np.array([1.0, 2.0, 0.5])
    p = special.expit(z)
    terms = -(pw * y * np.log(p) + (1 - y) * np.log(1 - p))
    agg = np.mean if reduction == "mean" else np.sum
    assert L.BCEWithLogits(pos_weight=pw, reduction=reduction).forward(z, y) == pytest.approx(agg(terms), rel=1e-12)
    d = z - y
    huber = np.where(np.abs(d) < 1.5, 0.5 * d * d, 1.5 * (np.abs(d) - 0.75))
    assert L.HuberLoss(reduction, 1.5).forward(z, y) == pytest.approx(agg(huber), rel=1e-12)
    assert L.SmoothL1Loss(reduction, 1.5).forward(z, y) == pytest.approx(agg(huber) / 1.5, rel=1e-12)
    assert L.SmoothL1Loss(reduction, 0.0).forward(z, y) == pytest.approx(agg(np.abs(d)), rel=1e-12)
    labels = rng.integers(0, 3, 6)
    ce = L.SoftmaxCrossEntropy().forward(z, labels) * (6 if reduction == "sum" else 1)
    assert L.NLLLoss(reduction).forward(L.LogSoftmax().forward(z), labels) == pytest.approx(ce, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_stable(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-800.0, 800.0, 30.0]], dtype)
    y = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]], dtype)
    loss = L.BCEWithLogits(pos_weight=[2.0, 1.0, 1.0], reduction="sum")
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss.forward(z, y)
        grad = loss.backward()
    assert value == pytest.approx(2e4 + np.log(2) + 30, rel=1e-6)
    assert grad.dtype == dtype and np.isfinite(grad).all()


def test_loss_input_errors():
    with pytest.raises(ValueError, match="same shape"):
        L.BCEWithLogits().forward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        L.BCEWithLogits().forward(np.zeros((2, 3)), np.full((2, 3), 2.0))
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="BCEWithLogits: targets must be finite"):
            L.BCEWithLogits().forward(np.zeros((2, 3)), np.array([[0.0, 1.0, bad], [0.5, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="pos_weight has 2 entries"):
        L.BCEWithLogits(pos_weight=[1.0, 2.0]).forward(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        L.NLLLoss().forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"integer labels of shape \(2, 4\)"):
        L.NLLLoss().forward(np.zeros((2, 3, 4)), np.zeros((2, 4)))
    with pytest.raises(RuntimeError):
        L.HuberLoss().backward()


@pytest.mark.parametrize("make,pred,target", [
    (L.BCEWithLogits, np.zeros((0, 3)), np.zeros((0, 3))),
    (L.NLLLoss, np.zeros((0, 3)), np.zeros((0,), np.int64)),
    (L.HuberLoss, np.zeros((0, 3)), np.zeros((0, 3))),
    (L.SmoothL1Loss, np.zeros((0, 3)), np.zeros((0, 3))),
])
def test_losses_on_an_empty_batch(make, pred, target):
    with pytest.raises(ValueError, match=rf"{make.__name__}: empty batch \(pred of shape \(0, 3\)\)"):
        make(reduction="mean").forward(pred, target)
    loss = make(reduction="sum")
    assert loss.forward(pred, target) == 0.0
    assert loss.backward().shape == pred.shape


@pytest.mark.parametrize("mode, align_corners, size, factor, expected", [
    # PyTorch copies an axis whose size is kept, and halves the index of one that doubles,
    # whatever fractional factor gave those sizes (values read off torch.nn.Upsample)
    ("nearest", None, 5, 1.1, [0, 1, 2, 3, 4]),
    ("nearest", None, 3, 2.2, [0, 0, 1, 1, 2, 2]),
    ("bilinear", False, 5, 1.1, [0, 1, 2, 3, 4]),
    ("nearest", None, 4, 1.6, [0, 0, 1, 1, 2, 3]),  # neither: floor(dst / 1.6)
])
def test_upsample_with_a_fractional_factor_follows_pytorch_s_index_rules(mode, align_corners, size, factor, expected):
    x = np.arange(float(size)).reshape(1, 1, size, 1)
    layer = L.Upsample2D(scale_factor=(factor, 1.0), mode=mode, align_corners=align_corners)
    out = layer.forward(x)
    np.testing.assert_allclose(out[0, 0, :, 0], expected, atol=1e-12)
    dx, _ = layer.backward(np.ones_like(out))
    np.testing.assert_allclose(dx[0, 0, :, 0], np.bincount(np.asarray(expected, int), minlength=size) if mode ==
                               "nearest" else np.ones(size), atol=1e-12)
