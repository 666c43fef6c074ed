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


@pytest.mark.parametrize("saved, fresh", [
    (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), lambda p: SGD(p, lr=0.5)),
    (lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), lambda p: Adam(p)),
    (lambda p: AdamW(p, lr=0.01, betas=(0.5, 0.9), eps=1e-4, weight_decay=0.2), lambda p: AdamW(p))])
def test_state_dict_restores_every_hyper_parameter(saved, fresh):
    g = np.array([0.3, -0.7], np.float32)
    p1, p2 = params(), params()
    a = saved(p1)
    a.step({"w": g})
    b = fresh(p2)
    p2["w"][...] = p1["w"]
    b.load_state_dict(a.state_dict())
    assert b.hyperparameters() == a.hyperparameters() and b.lr == a.lr
    for _ in range(3):
        a.step({"w": g})
        b.step({"w": g})
    np.testing.assert_array_equal(p1["w"], p2["w"])


def test_state_dict_names_the_hyper_parameters():
    assert set(SGD(params(), lr=0.1).state_dict()) == {"lr", "momentum", "nesterov", "weight_decay",
                                                       "step_count"}
    assert set(Adam(params()).state_dict()) == {"lr", "beta1", "beta2", "eps", "weight_decay", "step_count"}


@pytest.mark.parametrize("key, bad, error", [
    ("momentum", -0.5, ValueError), ("momentum", float("nan"), ValueError), ("nesterov", 1, TypeError),
    ("weight_decay", "0.1", TypeError), ("lr", -1.0, ValueError), ("step_count", 1.5, TypeError),
    ("dampening", 0.1, ValueError), ("state.0.momentum_buffer", np.zeros(3, np.float32), ValueError),
    ("state.x.momentum_buffer", np.zeros(2, np.float32), ValueError)])
def test_load_state_dict_validates_before_changing_anything(key, bad, error):
    a = SGD(params(), lr=0.1, momentum=0.9)
    a.step({"w": np.ones(2, np.float32)})
    b = SGD(params(), lr=0.2, momentum=0.5)
    before = b.state_dict()
    state = {**a.state_dict(), key: bad}
    with pytest.raises(error):
        b.load_state_dict(state)
    assert b.state_dict() == before


def test_nesterov_without_momentum_is_refused_on_load():
    state = {**SGD(params(), lr=0.1, momentum=0.9, nesterov=True).state_dict(), "momentum": 0.0}
    b = SGD(params(), lr=0.1, momentum=0.5)
    with pytest.raises(ValueError, match="nesterov"):
        b.load_state_dict(state)
    assert b.momentum == 0.5 and not b.nesterov


def test_state_dict_without_hyper_parameters_still_loads():
    """A state dict saved before hyper-parameters were included keeps the current ones."""
    a = SGD(params(), lr=0.1, momentum=0.9)
    a.step({"w": np.ones(2, np.float32)})
    old = {k: v for k, v in a.state_dict().items() if k not in a.hyperparameters()}
    b = SGD(params(), lr=0.3, momentum=0.5)
    b.load_state_dict(old)
    assert (b.lr, b.momentum, b.step_count) == (0.1, 0.5, 1)
    np.testing.assert_array_equal(b.state[0]["momentum_buffer"], a.state[0]["momentum_buffer"])


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


def tiny_model(rng):
    from layers import Dense, Tanh
    from models import Sequential
    return Sequential(Dense(3, 4, rng=rng), Tanh(), Dense(4, 2, rng=rng))


def one_step(model, opt, x):
    out = model.forward(x)
    _, grads = model.backward(np.ones_like(out))
    opt.step(grads)


def test_astype_to_the_same_dtype_keeps_the_arrays(rng):
    model = tiny_model(rng)
    before = model.parameters()
    model.astype(np.float32)
    assert all(a is b for a, b in zip(before, model.parameters()))
    copies = [p.copy() for p in before]
    one_step(model, SGD(model.params, lr=0.1), rng.standard_normal((5, 3)).astype(np.float32))
    assert all(not np.array_equal(a, b) for a, b in zip(copies, model.parameters()))


@pytest.mark.parametrize("form", ["dict", "list"])
@pytest.mark.parametrize("make", [lambda p: SGD(p, 0.1, momentum=0.9), lambda p: Adam(p), lambda p: AdamW(p)])
def test_optimizer_built_before_astype_never_silently_trains_nothing(form, make, rng):
    model = tiny_model(rng)
    opt = make(model.params if form == "dict" else model.parameters())
    model.astype(np.float64)
    x = rng.standard_normal((5, 3))
    with pytest.raises(RuntimeError, match="build the optimizer after astype|Build the optimizer after astype"):
        one_step(model, opt, x)
    # built after the conversion it trains the converted arrays
    before = [p.copy() for p in model.parameters()]
    one_step(model, make(model.params if form == "dict" else model.parameters()), x)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("make", [lambda p: SGD(p, 0.1, momentum=0.9), lambda p: Adam(p, 0.01),
                                  lambda p: AdamW(p, 0.01)])
def test_parameters_list_takes_the_dict_backward_returns(make, rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    by_list, by_name = tiny_model(np.random.default_rng(3)), tiny_model(np.random.default_rng(3))
    opt_list, opt_name = make(by_list.parameters()), make(by_name.params)
    for _ in range(3):
        one_step(by_list, opt_list, x)
        one_step(by_name, opt_name, x)
    for a, b in zip(by_list.parameters(), by_name.parameters()):
        np.testing.assert_array_equal(a, b)


def test_a_dict_that_does_not_fit_a_parameter_list_says_what_to_pass(rng):
    model = tiny_model(rng)
    opt = SGD(model.parameters(), lr=0.1)
    _, grads = model.backward(np.ones_like(model.forward(np.ones((2, 3), np.float32))))
    fewer = dict(list(grads.items())[:3])
    with pytest.raises(ValueError, match=r"got 3 gradients for 4 parameters; pass .*model.backward"):
        opt.step(fewer)
    swapped = dict(reversed(list(grads.items())))
    with pytest.raises(ValueError, match=r"matched to a parameter list by position"):
        opt.step(swapped)
    with pytest.raises(TypeError, match="gradient '0' is list"):
        SGD([np.zeros(2, np.float32)], lr=0.1).step([[1.0, 2.0]])


@pytest.mark.parametrize("make", [SGD, Adam, AdamW])
def test_passing_the_model_itself_says_to_pass_its_parameters(rng, make):
    model = tiny_model(rng)
    with pytest.raises(TypeError, match=rf"{make.__name__}: got the layer or model Sequential itself; "
                                        r"pass its parameters: model.params"):
        make(model, lr=0.1)
    with pytest.raises(TypeError, match="got the layer or model Dense itself"):
        make(model.layers[0], lr=0.1)


@pytest.mark.parametrize("make", [Adam, AdamW])
def test_adam_refuses_an_eps_that_is_zero_in_the_parameters_dtype(make):
    half = [np.zeros((2, 3), np.float16)]
    with pytest.raises(ValueError, match=rf"{make.__name__}: eps=1e-08 is 0 in float16, so a parameter whose "
                                         r"gradient is 0 would be updated by 0/0; give an eps that dtype can hold"):
        make(half)
    opt = make(half, eps=1e-4)  # a representable eps: a zero gradient leaves the parameter finite
    opt.step([np.zeros((2, 3), np.float16)])
    assert np.isfinite(half[0]).all()
    make([np.zeros(3, np.float32)])  # float32 keeps the default
    state = make([np.zeros((2, 3), np.float32)]).state_dict()  # eps 1e-8, saved from float32
    with pytest.raises(ValueError, match="eps=1e-08 is 0 in float16"):
        opt.load_state_dict(state)
    assert opt.eps == 1e-4


BAD_FLOATS = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", BAD_FLOATS + [-1e-3])
@pytest.mark.parametrize("make", [
    lambda p, v: SGD(p, lr=v), lambda p, v: SGD(p, lr=0.1, momentum=v),
    lambda p, v: SGD(p, lr=0.1, weight_decay=v), lambda p, v: Adam(p, lr=v),
    lambda p, v: Adam(p, betas=(v, 0.9)), lambda p, v: Adam(p, betas=(0.9, v)), lambda p, v: Adam(p, eps=v),
    lambda p, v: AdamW(p, weight_decay=v), lambda p, v: AdamW(p, lr=v)])
def test_non_finite_or_negative_hyper_parameters_are_refused(make, bad):
    with pytest.raises(ValueError, match=r"must be a finite number in .*got") as err:
        make(params(), bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("make, match", [
    (lambda o: StepLR(o, step_size=0), "step_size must be >= 1"),
    (lambda o: StepLR(o, step_size=-1), "step_size must be >= 1"),
    (lambda o: StepLR(o, step_size=math.inf), "step_size must be an integer"),
    (lambda o: StepLR(o, step_size=2.5), "step_size must be an integer"),
    (lambda o: StepLR(o, step_size=2, gamma=0), "gamma must be a finite number"),
    (lambda o: StepLR(o, step_size=2, gamma=math.nan), "gamma must be a finite number"),
    (lambda o: MultiStepLR(o, [2, math.inf]), "milestone must be an integer"),
    (lambda o: MultiStepLR(o, [0, 2]), "milestone must be >= 1"),
    (lambda o: MultiStepLR(o, [2], gamma=-0.5), "gamma must be a finite number"),
    (lambda o: ExponentialLR(o, -1), "gamma must be a finite number"),
    (lambda o: ExponentialLR(o, math.inf), "gamma must be a finite number"),
    (lambda o: InvLR(o, math.inf, 0.75), "gamma must be a finite number"),
    (lambda o: InvLR(o, 1e-4, math.nan), "power must be a finite number"),
    (lambda o: CosineLR(o, math.nan), "total_steps must be an integer"),
    (lambda o: CosineLR(o, 10, warmup_steps=math.nan), "warmup_steps must be an integer"),
    (lambda o: CosineLR(o, 10, warmup_steps=-1), "warmup_steps must be >= 0"),
    (lambda o: CosineLR(o, 10, min_lr=math.inf), "min_lr must be a finite number"),
])
def test_bad_schedule_values_are_refused_in_one_line(make, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:
        make(SGD(params(), lr=1))
    assert "\n" not in str(err.value)
