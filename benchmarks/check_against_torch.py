"""Cross-check npnet against PyTorch on random cases: every layer's forward, input and
parameter gradients (float64), BatchNorm running statistics, backward through eval mode
(BatchNorm with running statistics, Dropout, a small CNN), the losses, and optimizer
trajectories. Needs ``pip install torch==2.13.0``; exits 1 on any mismatch.

    python benchmarks/check_against_torch.py
"""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layers as L  # noqa: E402
import optim  # noqa: E402
from models import Concat, Sequential  # noqa: E402
from torch_equiv import to_torch  # noqa: E402

torch.set_default_dtype(torch.float64)
failures = []
largest = [0.0, ""]


def close(name, a, b, tol=1e-9):
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0
    ok = err <= tol * max(1.0, float(np.max(np.abs(b))) if np.size(b) else 1.0)
    print(f"{'ok  ' if ok else 'FAIL'} {name:<58} max abs diff {err:.2e}")
    if err > largest[0]:
        largest[:] = [err, name]
    if not ok:
        failures.append(name)


def check_layer(name, layer, shape, rng, training=True):
    """Forward, dx, parameter gradients and buffers against the torch twin. With
    ``training=False`` both run in eval mode, after three training forwards that move
    the running statistics away from 0 and 1."""
    layer.astype(np.float64)
    x = rng.standard_normal(shape)
    if not training:
        for _ in range(3):
            layer.forward(rng.standard_normal(shape) * 2 + 0.5)
        layer.eval()
    module = to_torch(layer).double()
    module.train(training)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    out = layer.forward(x)
    tout = module(tx)
    dout = rng.standard_normal(out.shape)
    dx, grads = layer.backward(dout)
    tout.backward(torch.from_numpy(dout))
    close(f"{name} forward", out, tout.detach().numpy())
    close(f"{name} dx", dx, tx.grad.numpy())
    for key, g in grads.items():
        close(f"{name} d{key}", g, module.get_parameter(key).grad.numpy())
    for key, buf in layer.buffers.items():
        close(f"{name} {key}", buf, module.get_buffer(key).numpy())


def _randomised(layer, rng):
    """Parameters away from their constructor values (ones, zeros, 0.25)."""
    for value in layer.params.values():
        value[...] = rng.uniform(0.5, 1.5, value.shape) * rng.choice([-1.0, 1.0], value.shape)
    return layer


def check_loss(name, loss, tloss, pred, target, ttarget=None):
    tp = torch.from_numpy(pred.copy()).requires_grad_(True)
    tval = tloss(tp, torch.from_numpy(target) if ttarget is None else ttarget)
    tval.backward()
    close(f"{name} value", loss.forward(pred, target), tval.item())
    close(f"{name} grad", loss.backward(), tp.grad.numpy())


def check_kinks():
    """Gradients exactly at the points where an activation is not differentiable."""
    x = np.array([[-3.5, -3.0, -1.5, 0.0, 1.5, 3.0, 3.5]])
    for name, layer, twin in [("Hardswish at -3, 3", L.Hardswish(), nn.Hardswish())]:
        layer.forward(x)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        twin(tx).sum().backward()
        close(f"{name} grad", layer.backward(np.ones_like(x))[0], tx.grad.numpy(), tol=0.0)


def check_losses(rng):
    z = rng.standard_normal((6, 4)) * 4
    y01 = (rng.uniform(size=(6, 4)) > 0.5).astype(np.float64)
    soft = rng.uniform(size=(6, 4))
    pw = rng.uniform(0.2, 3.0, 4)
    logp = torch.log_softmax(torch.from_numpy(rng.standard_normal((5, 4, 3, 2))), 1).numpy()
    labels = rng.integers(0, 4, (5, 3, 2))
    for red in ("mean", "sum"):
        check_loss(f"BCEWithLogits {red}", L.BCEWithLogits(reduction=red), nn.BCEWithLogitsLoss(reduction=red),
                   z, y01)
        check_loss(f"BCEWithLogits pos_weight soft targets {red}", L.BCEWithLogits(pw, red),
                   nn.BCEWithLogitsLoss(reduction=red, pos_weight=torch.from_numpy(pw)), z, soft)
        check_loss(f"NLLLoss (N, K) {red}", L.NLLLoss(red), nn.NLLLoss(reduction=red), logp[:, :, 0, 0],
                   labels[:, 0, 0])
        check_loss(f"NLLLoss (N, K, d1, d2) {red}", L.NLLLoss(red), nn.NLLLoss(reduction=red), logp, labels)
        check_loss(f"HuberLoss delta 0.8 {red}", L.HuberLoss(red, 0.8), nn.HuberLoss(red, 0.8), z, soft)
        check_loss(f"SmoothL1Loss beta 0.6 {red}", L.SmoothL1Loss(red, 0.6), nn.SmoothL1Loss(reduction=red, beta=0.6),
                   z, soft)
        check_loss(f"SmoothL1Loss beta 0 {red}", L.SmoothL1Loss(red, 0.0), nn.SmoothL1Loss(reduction=red, beta=0.0),
                   z, soft)


def main():
    rng = np.random.default_rng(7)
    cases = [
        ("Conv2D 3->6 k3 s2 p1 d1", L.Conv2D(3, 6, 3, stride=2, padding=1, rng=rng), (4, 3, 11, 9)),
        ("Conv2D 4->8 k(3,5) s(1,2) p(2,1) d(2,1) g2", L.Conv2D(4, 8, (3, 5), stride=(1, 2), padding=(2, 1),
                                                         dilation=(2, 1), groups=2, rng=rng), (3, 4, 12, 13)),
        ("Conv2D depthwise x2 same k4", L.Conv2D(3, 6, 4, padding="same", groups=3, rng=rng), (2, 3, 7, 8)),
        ("Conv2D 1x1 s1", L.Conv2D(5, 4, 1, rng=rng), (2, 5, 6, 6)),
        ("Conv2D rows 3->6 k3 s2 p1", L.Conv2D(3, 6, 3, stride=2, padding=1, algorithm="rows", rng=rng),
         (4, 3, 11, 9)),
        ("Conv2D rows 6->5 k(5,3) p(2,1)", L.Conv2D(6, 5, (5, 3), padding=(2, 1), algorithm="rows", rng=rng),
         (3, 6, 9, 8)),
        ("Conv2D rows 4->4 k3 p(3,0)", L.Conv2D(4, 4, 3, padding=(3, 0), algorithm="rows", rng=rng),
         (2, 4, 6, 7)),
        ("Conv2D 1x1 s2 no bias", L.Conv2D(5, 4, 1, stride=2, bias=False, rng=rng), (2, 5, 7, 6)),
        ("MaxPool2D 3/2 ceil p1", L.MaxPool2D(3, 2, padding=1, ceil_mode=True), (2, 3, 10, 9)),
        ("MaxPool2D 2/2", L.MaxPool2D(2), (2, 3, 9, 8)),
        ("MaxPool2D (3,2)/(1,2)", L.MaxPool2D((3, 2), stride=(1, 2)), (2, 2, 7, 8)),
        ("AvgPool2D 3/2 ceil p1", L.AvgPool2D(3, 2, padding=1, ceil_mode=True), (2, 3, 10, 9)),
        ("AvgPool2D 2/2", L.AvgPool2D(2), (2, 3, 8, 7)),
        ("GlobalAvgPool2D", L.GlobalAvgPool2D(), (3, 4, 5, 6)),
        ("BatchNorm2D", L.BatchNorm2D(4, momentum=0.3), (5, 4, 3, 6)),
        ("BatchNorm1D", L.BatchNorm1D(6), (7, 6)),
        ("BatchNorm1D on (N, C, L)", L.BatchNorm1D(3, momentum=0.2), (4, 3, 5)),
        ("Dense", L.Dense(7, 5, rng=rng), (4, 7)),
        ("LeakyReLU", L.LeakyReLU(0.1), (4, 9)),
        ("Sigmoid", L.Sigmoid(), (4, 9)),
        ("Tanh", L.Tanh(), (4, 9)),
        ("ConvTranspose2D 3->4 k3 s2 p1 op1", L.ConvTranspose2D(3, 4, 3, stride=2, padding=1, output_padding=1,
                                                                rng=rng), (2, 3, 5, 6)),
        ("ConvTranspose2D 4->6 k(3,2) s(2,3) p(1,0) op(0,2) d(1,2) g2",
         L.ConvTranspose2D(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(0, 2), dilation=(1, 2),
                           groups=2, rng=rng), (3, 4, 4, 5)),
        ("ConvTranspose2D 1x1 no bias", L.ConvTranspose2D(5, 3, 1, bias=False, rng=rng), (2, 5, 4, 3)),
        ("ConvTranspose2D k4 s2 p1 (DCGAN)", L.ConvTranspose2D(4, 2, 4, stride=2, padding=1, rng=rng), (2, 4, 3, 3)),
        ("Upsample2D nearest x2", L.Upsample2D(scale_factor=2), (2, 3, 4, 5)),
        ("Upsample2D nearest x(1.5, 3)", L.Upsample2D(scale_factor=(1.5, 3)), (2, 3, 5, 4)),
        ("Upsample2D nearest size (7, 9)", L.Upsample2D(size=(7, 9)), (2, 3, 5, 4)),
        ("Upsample2D bilinear x2", L.Upsample2D(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
        ("Upsample2D bilinear x(1.5, 2.5) align", L.Upsample2D(scale_factor=(1.5, 2.5), mode="bilinear",
                                                               align_corners=True), (2, 3, 4, 5)),
        ("Upsample2D bilinear size (7, 3)", L.Upsample2D(size=(7, 3), mode="bilinear", align_corners=False),
         (2, 3, 4, 5)),
        ("Upsample2D bilinear size (8, 2) align", L.Upsample2D(size=(8, 2), mode="bilinear", align_corners=True),
         (2, 3, 4, 5)),
        ("Upsample2D nearest x(1.1, 2.2): kept, doubled", L.Upsample2D(scale_factor=(1.1, 2.2)), (2, 3, 5, 3)),
        ("Upsample2D bilinear x(1.1, 1.7): kept", L.Upsample2D(scale_factor=(1.1, 1.7), mode="bilinear"),
         (2, 3, 5, 4)),
        ("MaxPool2D (3,1) ceil on 2 rows", L.MaxPool2D((3, 1), ceil_mode=True), (2, 2, 2, 5)),
        ("AvgPool2D (3,1) ceil on 2 rows", L.AvgPool2D((3, 1), ceil_mode=True), (2, 2, 2, 5)),
        ("ZeroPad2D (1, 2, 0, 3)", L.ZeroPad2D((1, 2, 0, 3)), (2, 3, 4, 5)),
        ("LayerNorm (5,)", _randomised(L.LayerNorm(5), rng), (4, 3, 5)),
        ("LayerNorm (3, 4) no bias", _randomised(L.LayerNorm((3, 4), bias=False), rng), (2, 5, 3, 4)),
        ("LayerNorm no affine", L.LayerNorm(6, eps=1e-3, elementwise_affine=False), (4, 6)),
        ("GroupNorm 2 groups of 3", _randomised(L.GroupNorm(2, 6), rng), (3, 6, 4, 5)),
        ("GroupNorm 1 group on (N, C, L)", _randomised(L.GroupNorm(1, 4, eps=1e-3), rng), (3, 4, 7)),
        ("GroupNorm groups == channels", _randomised(L.GroupNorm(5, 5), rng), (2, 5, 3, 3)),
        ("InstanceNorm2D", L.InstanceNorm2D(3), (2, 3, 4, 5)),
        ("InstanceNorm2D affine", _randomised(L.InstanceNorm2D(3, affine=True), rng), (2, 3, 4, 5)),
        ("ELU alpha 0.7", L.ELU(0.7), (4, 9)),
        ("GELU exact", L.GELU(), (4, 9)),
        ("GELU tanh", L.GELU("tanh"), (4, 9)),
        ("Softplus beta 2 threshold 1.5", L.Softplus(2.0, 1.5), (4, 9)),
        ("Softplus", L.Softplus(), (4, 9)),
        ("PReLU shared", _randomised(L.PReLU(), rng), (4, 9)),
        ("PReLU per channel", _randomised(L.PReLU(3), rng), (2, 3, 4, 5)),
        ("Hardswish", L.Hardswish(), (4, 9)),
        ("SiLU", L.SiLU(), (4, 9)),
        ("LogSoftmax", L.LogSoftmax(), (4, 9)),
        ("LogSoftmax axis 1", L.LogSoftmax(axis=1), (2, 5, 3, 3)),
        ("Dropout2D p=0 (mask-free)", L.Dropout2D(0.0), (2, 3, 4, 4)),
        ("Concat of conv, identity, nested Concat",
         Concat([L.Conv2D(3, 2, 3, padding=1, rng=rng), Sequential(),
                 Concat([L.ConvTranspose2D(3, 1, 3, padding=1, rng=rng), _randomised(L.GroupNorm(1, 3), rng)])]),
         (2, 3, 4, 5)),
    ]
    for name, layer, shape in cases:
        check_layer(name, layer, shape, rng)
    check_kinks()

    eval_cases = [
        ("eval BatchNorm1D", L.BatchNorm1D(6), (7, 6)),
        ("eval BatchNorm1D on (N, C, L)", L.BatchNorm1D(3, momentum=0.2), (4, 3, 5)),
        ("eval BatchNorm2D", L.BatchNorm2D(4, momentum=0.3), (5, 4, 3, 6)),
        ("eval Dropout(0.5)", L.Dropout(0.5, rng=rng), (4, 9)),
        ("eval Dropout2D(0.5)", L.Dropout2D(0.5, rng=rng), (2, 3, 4, 4)),
        ("eval GroupNorm, LayerNorm, PReLU", Sequential(_randomised(L.GroupNorm(2, 4), rng), _randomised(L.PReLU(4), rng),
                                                        _randomised(L.LayerNorm((5, 3)), rng)), (3, 4, 5, 3)),
        ("eval small CNN", Sequential(L.Conv2D(2, 4, 3, padding=1, rng=rng), L.BatchNorm2D(4), L.ReLU(),
                                      L.MaxPool2D(2), L.Conv2D(4, 6, 3, rng=rng), L.BatchNorm2D(6), L.ReLU(),
                                      L.Flatten(), L.Dropout(0.4, rng=rng), L.Dense(6, 5, rng=rng),
                                      L.BatchNorm1D(5)), (6, 2, 6, 6)),
    ]
    for name, layer, shape in eval_cases:
        check_layer(name, layer, shape, rng, training=False)

    logits = rng.standard_normal((6, 5)) * 3
    labels = rng.integers(0, 5, 6)
    for eps in (0.0, 0.2):
        loss = L.SoftmaxCrossEntropy(label_smoothing=eps)
        tl = torch.from_numpy(logits.copy()).requires_grad_(True)
        tval = nn.CrossEntropyLoss(label_smoothing=eps)(tl, torch.from_numpy(labels))
        tval.backward()
        close(f"SoftmaxCrossEntropy(label_smoothing={eps}) value", loss.forward(logits, labels), tval.item())
        close(f"SoftmaxCrossEntropy(label_smoothing={eps}) grad", loss.backward(), tl.grad.numpy())
    check_losses(rng)

    for name, make, tmake in [
        ("SGD momentum nesterov wd", lambda p: optim.SGD(p, 0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
         lambda p: torch.optim.SGD(p, 0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("Adam wd", lambda p: optim.Adam(p, 0.01, weight_decay=0.1),
         lambda p: torch.optim.Adam(p, 0.01, weight_decay=0.1)),
        ("AdamW", lambda p: optim.AdamW(p, 0.01, weight_decay=0.1),
         lambda p: torch.optim.AdamW(p, 0.01, weight_decay=0.1)),
    ]:
        w0 = rng.standard_normal((3, 4))
        params = {"w": w0.copy()}
        tw = torch.from_numpy(w0.copy()).requires_grad_(True)
        opt, topt = make(params), tmake([tw])
        for _ in range(5):
            g = rng.standard_normal((3, 4))
            opt.step({"w": g})
            tw.grad = torch.from_numpy(g.copy())
            topt.step()
        close(f"{name}: weights after 5 steps", params["w"], tw.detach().numpy())

    print(f"\nlargest difference: {largest[0]:.2e} ({largest[1]})")
    print(f"{len(failures)} mismatches" if failures else "all match")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
