"""Training checkpoints: every entry checked before the model, optimizer, schedule or
generators change."""
import json

import numpy as np
import pytest

import layers as L
import models
from models import Sequential
from models.archive import read_archive, write_archive
from models.checkpoint import load_checkpoint, load_model, save_checkpoint
from optim import SGD, Adam
from optim.schedules import StepLR


def run(seed):
    rng = np.random.default_rng(seed)
    model = Sequential(L.Dense(3, 4, rng=rng), L.BatchNorm1D(4), L.ReLU(), L.Dense(4, 2, rng=rng),
                       L.Dropout(0.3, rng=rng))
    opt = Adam(model.params, lr=0.01)
    sched = StepLR(opt, 2)
    data_rng = np.random.default_rng(seed + 1)
    x = data_rng.standard_normal((5, 3)).astype(np.float32)
    for _ in range(3):
        out = model.forward(x)
        _, grads = model.backward(out)
        opt.step(grads)
        sched.step()
    gens = [data_rng] + model.generators()
    progress = {"epoch": 1, "step_in_epoch": 3, "global_step": 9, "epoch_rng": data_rng.bit_generator.state}
    return model, opt, sched, gens, progress


def state_of(model, opt, sched, gens):
    return ({k: v.copy() for k, v in {**model.params, **model.buffers}.items()},
            {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state_dict().items()},
            sched.state_dict(), [g.bit_generator.state for g in gens])


def assert_same(a, b):
    for x, y in zip(a, b):
        if isinstance(x, dict):
            assert x.keys() == y.keys()
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
        else:
            assert x == y


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ck.npz"
    model, opt, sched, gens, progress = run(0)
    save_checkpoint(path, model, opt, sched, gens, progress, {"model": "test"})
    return path, state_of(model, opt, sched, gens), progress


def test_round_trip_restores_everything(saved):
    path, expected, progress = saved
    target = run(5)
    got = load_checkpoint(path, *target[:4])
    assert got == progress
    assert_same(state_of(*target[:4]), expected)
    assert_same(({k: v for k, v in load_model(path).params.items()},), (target[0].params,))


def mutate_meta(path, fn):
    arrays, meta = read_archive(path)
    fn(meta)
    write_archive(path, arrays, meta)


def mutate_arrays(path, fn):
    arrays, meta = read_archive(path)
    fn(arrays)
    np.savez(path, **arrays, __meta__=np.array(json.dumps(meta)))  # write_archive refuses complex


CASES = {
    "missing-schedule": (lambda m: m.pop("schedule"), None, "no 'schedule' entry"),
    "missing-progress": (lambda m: m.pop("progress"), None, "no 'progress' entry"),
    "optimizer-not-dict": (lambda m: m.update(optimizer=[1]), None, "'optimizer' is a list"),
    "lr-string": (lambda m: m["optimizer"].update(lr="0.1"), None, "optimizer entry 'lr' is '0.1'"),
    "lr-nan": (lambda m: m["optimizer"].update(lr=float("nan")), None, "optimizer entry 'lr' is nan"),
    "step-count-missing": (lambda m: m["optimizer"].pop("step_count"), None, r"missing \['step_count'\]"),
    "schedule-step-float": (lambda m: m["schedule"].update(last_step=2.5), None,
                            "schedule entry 'last_step' is 2.5"),
    "schedule-extra": (lambda m: m["schedule"].update(gamma=0.1), None, r"unexpected \['gamma'\]"),
    "rng-count": (lambda m: m["rng"].pop(), None, "has 1 random generators, the run has 2"),
    "rng-garbage": (lambda m: m["rng"].__setitem__(1, {"bit_generator": "PCG64", "state": 3}), None,
                    r"rng\[1\] is not a valid PCG64 state"),
    "rng-other-kind": (lambda m: m["rng"].__setitem__(0, np.random.PCG64DXSM(0).state), None,
                       r"rng\[0\] is not a valid PCG64 state"),
    "progress-epoch-string": (lambda m: m["progress"].update(epoch="1"), None,
                              "progress field 'epoch' is '1', expected int"),
    "progress-step-bool": (lambda m: m["progress"].update(step_in_epoch=True), None,
                           "progress field 'step_in_epoch' is True"),
    "progress-negative": (lambda m: m["progress"].update(global_step=-1), None, "out of range"),
    "progress-missing": (lambda m: m["progress"].pop("global_step"), None, "no 'global_step' field"),
    "progress-rng-garbage": (lambda m: m["progress"].update(epoch_rng={"x": 1}), None,
                             "progress field 'epoch_rng' is not a random generator state"),
    "model-array-missing": (None, lambda a: a.pop("model/params/3.bias"), r"missing \['model/params/3.bias'\]"),
    "model-array-complex": (None, lambda a: a.__setitem__("model/params/3.bias", np.zeros(2, np.complex64)),
                            "model/params/3.bias"),
    "optim-array-shape": (None, lambda a: a.__setitem__("optim/state.3.exp_avg", np.zeros(5, np.float32)),
                          r"optimizer entry 'optim/state.3.exp_avg' is float32 \(5,\)"),
    "optim-array-int": (None, lambda a: a.__setitem__("optim/state.0.exp_avg", np.zeros((4, 3), np.int64)),
                        "optimizer entry 'optim/state.0.exp_avg' is int64"),
    "optim-array-index": (None, lambda a: a.__setitem__("optim/state.9.exp_avg", np.zeros(2, np.float32)),
                          "unexpected optimizer entry 'optim/state.9.exp_avg'"),
    "stray-array": (None, lambda a: a.__setitem__("junk", np.zeros(1)), r"unexpected entries \['junk'\]"),
}


@pytest.mark.parametrize("meta_fn, array_fn, message", CASES.values(), ids=CASES.keys())
def test_a_bad_entry_is_named_and_changes_nothing(saved, meta_fn, array_fn, message):
    path, _, _ = saved
    if meta_fn:
        mutate_meta(path, meta_fn)
    if array_fn:
        mutate_arrays(path, array_fn)
    target = run(5)
    before = state_of(*target[:4])
    with pytest.raises(ValueError, match=message) as err:
        load_checkpoint(path, *target[:4])
    assert str(err.value).startswith(str(path))
    assert_same(state_of(*target[:4]), before)


def test_a_checkpoint_for_another_optimizer_changes_nothing(saved):
    path, _, _ = saved
    model, _, _, gens, _ = run(5)
    opt = SGD(model.params, lr=0.1, momentum=0.9)
    sched = StepLR(opt, 2)
    before = state_of(model, opt, sched, gens)
    with pytest.raises(ValueError, match="ck.npz: the checkpoint was saved with 'Adam', this run has SGD"):
        load_checkpoint(path, model, opt, sched, gens)
    assert_same(state_of(model, opt, sched, gens), before)


def test_loading_a_checkpoint_as_a_model_says_what_to_call(tmp_path):
    from models.trainer import Trainer
    model = Sequential(L.Dense(4, 3, rng=0))
    opt = SGD(model.params, 0.1)
    trainer = Trainer(model, L.SoftmaxCrossEntropy(), opt, StepLR(opt, 5, 0.5), rng=0)
    trainer.save_checkpoint(tmp_path / "ck.npz")
    for call in (lambda: models.load(tmp_path / "ck.npz"), lambda: models.load_weights(model, tmp_path / "ck.npz")):
        with pytest.raises(ValueError, match=r"ck.npz: a training checkpoint, not a saved model: "
                                             r"models.checkpoint.load_model\(path\) rebuilds its model"):
            call()
    plain = Trainer(Sequential(L.Dense(4, 3, rng=0)), L.SoftmaxCrossEntropy(), SGD(model.params, 0.1), rng=0)
    with pytest.raises(ValueError, match="saved with 'StepLR', this run has no schedule"):
        plain.resume(tmp_path / "ck.npz")


def test_a_checkpoint_of_another_network_says_which_networks_differ(saved):
    path, _, _ = saved
    for build, message in [
        (lambda rng: Sequential(L.Flatten(), L.Dense(3, 2, rng=rng)),
         r"ck.npz: the checkpoint holds another network than this one: saved Sequential\[Dense, BatchNorm1D, "
         r"ReLU, Dense, Dropout\] \(34 parameter values\), this run built Sequential\[Flatten, Dense\] "
         r"\(8 parameter values\)$"),
        (lambda rng: Sequential(L.Dense(3, 5, rng=rng), L.BatchNorm1D(5), L.ReLU(), L.Dense(5, 2, rng=rng),
                                L.Dropout(0.3, rng=rng)),
         r"saved Sequential\[Dense, BatchNorm1D, ReLU, Dense, Dropout\] \(34 parameter values\), this run built "
         r"Sequential\[Dense, BatchNorm1D, ReLU, Dense, Dropout\] \(42 parameter values\); "
         r"model/params/0.weight is \(4, 3\) there, \(5, 3\) here$")]:
        model = build(np.random.default_rng(1))
        opt = Adam(model.params, lr=0.01)
        sched, gens = StepLR(opt, 2), [np.random.default_rng(2)] + model.generators()
        before = state_of(model, opt, sched, gens)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(path, model, opt, sched, gens)
        assert_same(state_of(model, opt, sched, gens), before)


def deeply_nested(levels):
    inner = {"class": "Dense"}
    for _ in range(levels):
        inner = {"class": "Sequential", "config": {"layers": [inner]}}
    return inner


@pytest.mark.parametrize("architecture", [
    {"class": 5}, {"class": "Sequential", "config": [1, {"x": None}]}, [], "Sequential",
    {"class": "Sequential", "config": {"layers": [{"class": "Dense" * 50}] * 100}},
    {"class": "Sequential", "config": {"layers": json.loads("[" * 600 + "]" * 600)}},
    deeply_nested(150),
    {"class": "Conv2D\nerror: disk full \x1b[31m", "config": {}}],
    ids=["class-int", "config-list", "list", "string", "long", "deep-lists", "deep-layers", "control-chars"])
def test_a_garbled_architecture_still_gives_a_one_line_error(saved, architecture):
    path, _, _ = saved
    mutate_meta(path, lambda m: m.update(architecture=architecture))
    model = Sequential(L.Dense(3, 2, rng=0))
    opt = Adam(model.params, lr=0.01)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path, model, opt, StepLR(opt, 2), [np.random.default_rng(0)] + model.generators())
    text = str(err.value)
    assert text.startswith(str(path)) and len(text) < 1000, text
    assert text.isprintable(), text  # no line breaks or terminal escapes from the file


def test_networks_that_differ_past_the_outline_name_the_first_differing_array(tmp_path):
    def build(bias, extra):
        layers = [L.Dense(3, 4, bias=bias, rng=0), L.ReLU()] + [L.Dense(4, 4, rng=0) for _ in range(extra)]
        return Sequential(*layers)

    path = tmp_path / "ck.npz"
    model = build(True, 0)
    opt = SGD(model.params, 0.1)
    save_checkpoint(path, model, opt, StepLR(opt, 2), [], {"epoch": 0, "step_in_epoch": 0, "global_step": 0,
                                                         "epoch_rng": None})
    for other, message in [
            (build(False, 0), r"saved Sequential\[Dense, ReLU\] \(16 parameter values\), this run built "
                              r"Sequential\[Dense, ReLU\] \(12 parameter values\); model/params/0.bias is in "
                              r"the checkpoint, not in this network$"),
            (build(True, 1), r"Sequential\[Dense, ReLU, Dense\] \(36 parameter values\)$")]:
        opt = SGD(other.params, 0.1)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(path, other, opt, StepLR(opt, 2), [])
    # outlines cut at 300 characters compare equal: the first differing array still shows
    long = Sequential(*[L.ReLU() for _ in range(60)], L.Dense(3, 2, rng=0))
    opt = SGD(long.params, 0.1)
    save_checkpoint(path, long, opt, StepLR(opt, 2), [], {"epoch": 0, "step_in_epoch": 0, "global_step": 0,
                                                        "epoch_rng": None})
    longer = Sequential(*[L.ReLU() for _ in range(60)], L.Dense(3, 5, rng=0))
    opt = SGD(longer.params, 0.1)
    with pytest.raises(ValueError, match=r"ReLU, R\.\.\. \(8 parameter values\).*"
                                         r"model/params/60.weight is \(2, 3\) there, \(5, 3\) here$"):
        load_checkpoint(path, longer, opt, StepLR(opt, 2), [])
