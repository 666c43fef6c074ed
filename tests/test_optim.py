"""Optimizers against hand-computed updates; schedules; state save and restore."""
import math

import numpy as np
import pytest

from optim import SGD, Adam, AdamW, ConstantLR, CosineLR, ExponentialLR, InvLR, MultiStepLR, StepLR


def params():
    return {"w": np.array([1.0, -2.0], np.float32)}


def test_plain_sgd():
    p = params()
    SGD(p, lr=0.1).step({"w": np.array([0.5, 1.0], np.float32)})
    np.testing.assert_allclose(p["w"], [0.95, -2.1], rtol=1e-6)


def test_sgd_momentum_weight_decay_by_hand():
    p = params()
    opt = SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)
    g = np.array([0.5, 1.0], np.float32)
    # step 1: d = g + 0.01 w = [0.51, 0.98]; buf = d; w -= 0.1 buf
    opt.step({"w": g})
    np.testing.assert_allclose(p["w"], [1 - 0.051, -2 - 0.098], rtol=1e-6)
    # step 2: d = g + 0.01 w; buf = 0.9 buf + d
    w1 = np.array([0.949, -2.098])
    d2 = g + 0.01 * w1
    buf = 0.9 * np.array([0.51, 0.98]) + d2
    opt.step([g])
    np.testing.assert_allclose(p["w"], w1 - 0.1 * buf, rtol=1e-6)


def test_sgd_nesterov_by_hand():
    p = params()
    opt = SGD(p, lr=0.1, momentum=0.5, nesterov=True)
    g = np.array([1.0, 2.0], np.float32)
    opt.step({"w": g})  # buf = g; step = g + 0.5 g
    np.testing.assert_allclose(p["w"], [1 - 0.15, -2 - 0.3], rtol=1e-6)
    opt.step({"w": g})  # buf = 0.5 g + g = 1.5 g; step = g + 0.75 g
    np.testing.assert_allclose(p["w"], [1 - 0.15 - 0.175, -2 - 0.3 - 0.35], rtol=1e-6)


def test_adam_and_adamw_by_hand():
    g = np.array([0.5, -1.0], np.float32)
    for cls, wd in ((Adam, 0.1), (AdamW, 0.1)):
        p = params()
        opt = cls(p, lr=0.01, weight_decay=wd)
        w = p["w"].astype(np.float64).copy()
        m = v = 0
        for t in (1, 2):
            opt.step({"w": g})
            grad = g.astype(np.float64)
            if cls is Adam:
                grad = grad + wd * w
            else:
                w = w * (1 - 0.01 * wd)
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad ** 2
            w = w - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            np.testing.assert_allclose(p["w"], w, rtol=1e-5)


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=-1), lambda p: SGD(p, lr=0.1, momentum=-0.1),
    lambda p: SGD(p, lr=0.1, nesterov=True), lambda p: SGD(p, lr=0.1, weight_decay=-1),
    lambda p: Adam(p, betas=(1.0, 0.9)), lambda p: AdamW(p, eps=-1), lambda p: SGD({}, lr=0.1)])
def test_invalid_hyper_parameters(make):
    with pytest.raises(ValueError):
        make(params())


def test_step_rejects_mismatched_gradients():
    opt = SGD(params(), lr=0.1)
    with pytest.raises(ValueError, match="missing"):
        opt.step({"v": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=r"gradient 'w' has shape \(3,\), parameter 0 has \(2,\)"):
        opt.step({"w": np.zeros(3, np.float32)})


def test_update_keeps_float32():
    p = params()
    SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3).step({"w": np.ones(2, np.float32)})
    Adam(p).step({"w": np.ones(2, np.float32)})
    assert p["w"].dtype == np.float32


def test_optimizer_state_round_trip():
    g = np.array([0.3, -0.7], np.float32)
    p1, p2 = params(), params()
    a = Adam(p1, lr=0.01)
    a.step({"w": g})
    b = Adam(p2, lr=0.01)
    p2["w"][...] = p1["w"]
    b.load_state_dict(a.state_dict())
    a.step({"w": g})
    b.step({"w": g})
    np.testing.assert_array_equal(p1["w"], p2["w"])


def lr_after(schedule_cls, steps, **kw):
    opt = SGD(params(), lr=1.0)
    sched = schedule_cls(opt, **kw)
    for _ in range(steps):
        sched.step()
    return opt.lr


def test_schedules_by_hand():
    assert lr_after(ConstantLR, 5) == 1.0
    assert lr_after(StepLR, 5, step_size=2, gamma=0.5) == 0.25
    assert lr_after(MultiStepLR, 5, milestones=[2, 5], gamma=0.1) == pytest.approx(0.01)
    assert lr_after(MultiStepLR, 4, milestones=[2, 5], gamma=0.1) == pytest.approx(0.1)
    assert lr_after(ExponentialLR, 3, gamma=0.5) == 0.125
    assert lr_after(InvLR, 100, gamma=1e-4, power=0.75) == pytest.approx((1 + 1e-2) ** -0.75)
    assert lr_after(CosineLR, 5, total_steps=10) == pytest.approx(0.5)
    assert lr_after(CosineLR, 10, total_steps=10, min_lr=0.1) == pytest.approx(0.1)
    assert lr_after(CosineLR, 1, total_steps=10, warmup_steps=4) == pytest.approx(2 / 5)
    assert lr_after(CosineLR, 4, total_steps=10, warmup_steps=4) == pytest.approx(1.0)
    assert lr_after(CosineLR, 7, total_steps=10, warmup_steps=4) == pytest.approx(
        (1 + math.cos(math.pi * 3 / 6)) / 2)


def test_schedule_state_round_trip():
    opt = SGD(params(), lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    opt2 = SGD(params(), lr=1.0)
    sched2 = StepLR(opt2, step_size=2, gamma=0.5)
    sched2.load_state_dict(sched.state_dict())
    assert opt2.lr == opt.lr == 0.5
    assert sched2.step() == sched.step()


def test_schedule_validation():
    with pytest.raises(ValueError):
        StepLR(SGD(params(), lr=1), step_size=0)
    with pytest.raises(ValueError):
        MultiStepLR(SGD(params(), lr=1), milestones=[5, 2])
    with pytest.raises(ValueError):
        CosineLR(SGD(params(), lr=1), total_steps=10, warmup_steps=10)
