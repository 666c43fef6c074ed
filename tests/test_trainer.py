"""models.trainer.Trainer on small in-memory arrays: learning, history, exact resume,
Ctrl-C, the non-finite stop, the callback order, the strategy seam, 0-row inference."""
import os
import signal

import numpy as np
import pytest

import layers as L
from models import Sequential
from models.callbacks import Callback, Checkpoint
from models.archive import write_archive
from models.evaluation import predict
from models.serialization import read_archive
from models.strategy import LocalStrategy
from models.trainer import Trainer, TrainingStopped
from optim import SGD, StepLR


def blobs(n=96, seed=0):
    """Three Gaussian clusters in 4-D: learnable, not linearly trivial for a random net."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[3, 0, 0, 1], [0, 3, 0, -1], [0, 0, 3, 0]], np.float32)
    x = centres[y] + rng.standard_normal((n, 4), dtype=np.float32)
    return x, y


def jitter(x, rng):
    return x + np.float32(0.05) * rng.standard_normal(x.shape, dtype=np.float32)


def make_trainer(callbacks=(), seed=0, lr=0.05, momentum=0.9, weight_decay=1e-4):
    """A network with every kind of state: params, BatchNorm buffers, a Dropout generator."""
    rng = np.random.default_rng(seed)
    model = Sequential(L.Dense(4, 16, rng=rng), L.BatchNorm1D(16), L.ReLU(), L.Dropout(0.2, rng=rng),
                       L.Dense(16, 3, rng=rng))
    opt = SGD(model.params, lr, momentum=momentum, weight_decay=weight_decay)
    return Trainer(model, L.SoftmaxCrossEntropy(), opt, StepLR(opt, 5, 0.5), rng=seed + 1, callbacks=callbacks)


class At(Callback):
    """Runs ``action(trainer)`` after global step ``when``."""

    def __init__(self, when, action):
        self.when, self.action = when, action

    def on_step_end(self, trainer, logs):
        if trainer.progress["global_step"] == self.when:
            self.action(trainer)


def params(trainer):
    return {k: v.copy() for k, v in {**trainer.model.params, **trainer.model.buffers}.items()}


def assert_same(a, b):
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_fit_lowers_the_loss_and_learns():
    x, y = blobs()
    trainer = make_trainer()
    before = trainer.evaluate(x, y)
    history = trainer.fit(x, y, epochs=6, batch_size=16, validation=(x, y))
    assert history is trainer.history and len(history) == 6
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    after = trainer.evaluate(x, y)
    assert after.loss < 0.5 * before.loss and after.accuracy > 0.85
    assert after.count == len(x) and after.confusion.sum() == len(x)
    assert after.accuracy == pytest.approx(np.trace(after.confusion) / len(x))


def test_history_records_the_log_fields():
    x, y = blobs()
    trainer = make_trainer()
    trainer.fit(x, y, epochs=2, batch_size=32, validation=blobs(30, seed=1))
    assert [r["epoch"] for r in trainer.history] == [1, 2]
    assert list(trainer.history[0]) == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                                        "time_s", "images_per_s", "peak_rss_mb"]
    assert trainer.history[1]["lr"] == trainer.optimizer.lr
    assert trainer.progress == {**trainer.progress, "epoch": 2, "step_in_epoch": 0, "global_step": 6}
    no_validation = make_trainer().fit(x, y, epochs=1, batch_size=32)
    assert "test_loss" not in no_validation[0]


@pytest.mark.parametrize("stop_after", [4, 3])  # mid-epoch (3 steps per epoch), and at an epoch end
def test_resume_mid_epoch_is_bit_identical(tmp_path, stop_after):
    x, y = blobs()
    straight = make_trainer()
    straight.fit(x, y, epochs=3, batch_size=40, augment=jitter)
    first = make_trainer()
    first.fit(x, y, epochs=3, batch_size=40, augment=jitter, max_steps=stop_after)
    assert first.progress["global_step"] == stop_after
    first.save_checkpoint(tmp_path / "ck.npz", {"note": "test"})
    resumed = make_trainer(seed=7)  # different initial weights and generators: all restored
    progress = resumed.resume(tmp_path / "ck.npz")
    assert progress["global_step"] == stop_after
    resumed.fit(x, y, epochs=3, batch_size=40, augment=jitter)
    assert_same(params(straight), params(resumed))
    assert resumed.optimizer.lr == straight.optimizer.lr


def test_resume_restores_the_optimizer_hyper_parameters(tmp_path):
    """A checkpoint of SGD(momentum=0.9) resumed into SGD(momentum=0.5) continues with 0.9."""
    x, y = blobs()
    straight = make_trainer()
    straight.fit(x, y, epochs=2, batch_size=40)
    first = make_trainer()
    first.fit(x, y, epochs=2, batch_size=40, max_steps=4)
    first.save_checkpoint(tmp_path / "ck.npz")
    resumed = make_trainer(momentum=0.5, weight_decay=0.0)
    resumed.resume(tmp_path / "ck.npz")
    assert (resumed.optimizer.momentum, resumed.optimizer.weight_decay) == (0.9, 1e-4)
    resumed.fit(x, y, epochs=2, batch_size=40)
    assert_same(params(straight), params(resumed))


def test_a_checkpoint_without_hyper_parameters_still_resumes(tmp_path):
    """Checkpoints written before hyper-parameters were saved load; the current ones stay."""
    x, y = blobs()
    first = make_trainer()
    first.fit(x, y, epochs=1, batch_size=40)
    first.save_checkpoint(tmp_path / "ck.npz")
    arrays, meta = read_archive(tmp_path / "ck.npz")
    meta["optimizer"] = {k: meta["optimizer"][k] for k in ("lr", "step_count")}
    write_archive(tmp_path / "old.npz", arrays, meta)
    resumed = make_trainer(momentum=0.5)
    assert resumed.resume(tmp_path / "old.npz")["epoch"] == 1
    assert resumed.optimizer.momentum == 0.5 and resumed.optimizer.step_count == 3


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    x, y = blobs()
    ck = tmp_path / "ck.npz"
    straight = make_trainer()
    straight.fit(x, y, epochs=2, batch_size=16)
    interrupt = At(4, lambda t: os.kill(os.getpid(), signal.SIGINT))
    stopped = make_trainer([interrupt, Checkpoint(ck)])
    previous = signal.getsignal(signal.SIGINT)
    history = stopped.fit(x, y, epochs=2, batch_size=16)
    assert stopped.interrupted and history == []
    assert signal.getsignal(signal.SIGINT) is previous
    _, meta = read_archive(ck)
    assert meta["progress"]["step_in_epoch"] == 4 and meta["progress"]["epoch"] == 0
    resumed = make_trainer()
    resumed.resume(ck)
    resumed.fit(x, y, epochs=2, batch_size=16)
    assert not resumed.interrupted
    assert_same(params(straight), params(resumed))
    # fit again on the interrupted trainer itself: it continues where it stopped
    stopped.fit(x, y, epochs=2, batch_size=16)
    assert_same(params(straight), params(stopped))


class AtEpochEnd(Callback):
    """Runs ``action(trainer)`` at the end of epoch ``when`` (0-based), during validation's wake."""

    def __init__(self, when, action):
        self.when, self.action = when, action

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == self.when + 1:
            self.action(trainer)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_between_epochs_saves_a_checkpoint_that_resumes_exactly(tmp_path, sig):
    x, y = blobs()
    ck = tmp_path / "ck.npz"
    straight = make_trainer()
    straight.fit(x, y, epochs=3, batch_size=16)
    stopped = make_trainer([AtEpochEnd(0, lambda t: os.kill(os.getpid(), sig)), Checkpoint(ck)])
    stopped.fit(x, y, epochs=3, batch_size=16)
    assert stopped.interrupted
    _, meta = read_archive(ck)
    assert meta["progress"]["epoch"] == 1 and meta["progress"]["step_in_epoch"] == 0
    resumed = make_trainer()
    resumed.resume(ck)
    resumed.fit(x, y, epochs=3, batch_size=16)
    assert_same(params(straight), params(resumed))
    stopped.fit(x, y, epochs=3, batch_size=16)  # and in the same process
    assert_same(params(straight), params(stopped))


def test_second_ctrl_c_aborts_at_once():
    x, y = blobs()

    def twice(trainer):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        make_trainer([At(2, twice)]).fit(x, y, epochs=1, batch_size=16)


def test_non_finite_stop_names_epoch_step_and_layer():
    x, y = blobs()
    ck_calls = []

    def poison(trainer):
        trainer.model.params["4.weight"][...] = np.float32(3e38)

    class Watch(Callback):
        def on_before_update(self, trainer, grads):
            ck_calls.append(trainer.progress["global_step"])

    trainer = make_trainer([At(8, poison), Watch()])
    with pytest.raises(TrainingStopped) as err:
        trainer.fit(x, y, epochs=3, batch_size=16)  # 6 steps per epoch: step 9 is epoch 2, step 3
    assert str(err.value).startswith("non-finite loss at epoch 2, step 3: ")
    assert "forward of layer 4 (Dense)" in str(err.value)
    assert ck_calls == list(range(9 - 1))  # no update once values stopped being finite


def test_callbacks_are_called_in_the_documented_order():
    calls = []

    class Recorder(Callback):
        def __init__(self, name):
            self.name = name

        def on_fit_start(self, trainer):
            calls.append((self.name, "fit_start"))

        def on_epoch_start(self, trainer, epoch):
            calls.append((self.name, "epoch_start", epoch))

        def on_before_update(self, trainer, grads):
            assert set(grads) == set(trainer.model.params)
            calls.append((self.name, "before_update"))

        def on_step_end(self, trainer, logs):
            calls.append((self.name, "step_end", logs["step"]))

        def on_epoch_end(self, trainer, record):
            record.setdefault("seen_by", []).append(self.name)
            calls.append((self.name, "epoch_end", record["epoch"]))

        def on_fit_end(self, trainer):
            calls.append((self.name, "fit_end"))

    x, y = blobs(32)
    trainer = make_trainer([Recorder("a"), Recorder("b")])
    trainer.fit(x, y, epochs=2, batch_size=16)
    expected = [("fit_start",)]
    for epoch in range(2):
        expected += [("epoch_start", epoch)]
        for step in range(2):
            expected += [("before_update",), ("step_end", step)]
        expected += [("epoch_end", epoch + 1)]
    expected += [("fit_end",)]
    assert calls == [(name,) + event for event in expected for name in "ab"]
    assert trainer.history[0]["seen_by"] == ["a", "b"]


def test_interrupt_hooks_replace_epoch_end():
    calls = []

    class Recorder(Callback):
        def on_epoch_end(self, trainer, record):
            calls.append("epoch_end")

        def on_interrupt(self, trainer):
            calls.append("interrupt")

        def on_fit_end(self, trainer):
            calls.append("fit_end")

    x, y = blobs(32)
    make_trainer([At(1, lambda t: os.kill(os.getpid(), signal.SIGINT)), Recorder()]).fit(x, y, 2, 16)
    assert calls == ["interrupt", "fit_end"]


def test_strategy_seam_is_used_by_fit_and_evaluate():
    seen = []

    class Recording(LocalStrategy):
        def shard(self, indices):
            seen.append(("shard", len(indices)))
            return indices

        def reduce_gradients(self, grads, local_count):
            seen.append(("reduce", local_count))
            return grads

        def allreduce_sum(self, array):
            seen.append(("sum", len(array)))
            return super().allreduce_sum(array)

        def broadcast_model(self, model):
            seen.append(("broadcast",))

        def check_in_sync(self, model):
            seen.append(("sync",))

    x, y = blobs(24)
    trainer = make_trainer()
    trainer.strategy = Recording()
    trainer.fit(x, y, epochs=1, batch_size=16, validation=(x[:10], y[:10]))
    assert seen == [("broadcast",), ("shard", 16), ("reduce", 16), ("shard", 8), ("reduce", 8),
                    ("sum", 3), ("shard", 10), ("sum", 2 + 9), ("sync",)]


def test_predict_and_evaluate_on_zero_rows():
    trainer = make_trainer()
    empty = np.empty((0, 4), np.float32)
    out = trainer.predict(empty)
    assert out.shape == (0, 3) and out.dtype == np.float32
    result = trainer.evaluate(empty, np.empty(0, np.int64))
    assert result.count == 0 and np.isnan(result.loss) and np.isnan(result.accuracy)
    assert result.confusion.shape == (3, 3) and result.confusion.sum() == 0


def test_generators_accept_none_int_and_generator():
    for rng in (None, 3, np.random.default_rng(3)):
        trainer = make_trainer()
        trainer.rng = Trainer(trainer.model, trainer.loss, trainer.optimizer, rng=rng).rng
        assert isinstance(trainer.rng, np.random.Generator)
    a, b = make_trainer(), make_trainer()
    x, y = blobs()
    a.fit(x, y, 1, 16)
    b.fit(x, y, 1, 16)
    assert_same(params(a), params(b))


def test_non_finite_parameters_after_the_update_stop_and_are_never_saved(tmp_path):
    x, y = blobs()
    ck = tmp_path / "ck.npz"
    trainer = make_trainer([Checkpoint(ck)])
    trainer.fit(x, y, epochs=1, batch_size=16)
    good = ck.read_bytes()
    trainer.optimizer.lr = 1e40  # float32 update overflows: every parameter with a gradient goes inf/nan
    with pytest.raises(TrainingStopped) as err:
        trainer.fit(x, y, epochs=2, batch_size=16)
    assert str(err.value).startswith("non-finite values at epoch 2, step 1: parameter 0.weight after the "
                                     "optimizer update")
    assert ck.read_bytes() == good
    with pytest.raises(ValueError, match="not saved: parameter 0.weight is not finite"):
        trainer.save_checkpoint(ck)
    assert ck.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["ck.npz"]


def test_non_finite_optimizer_state_is_named():
    x, y = blobs()
    trainer = make_trainer()
    trainer.fit(x, y, epochs=1, batch_size=16)
    trainer.optimizer.state[0]["momentum_buffer"][0, 0] = np.nan
    with pytest.raises(ValueError, match="optimizer state state.0.momentum_buffer is not finite"):
        trainer.save_checkpoint("unused.npz")


@pytest.mark.parametrize("n,sizes", [(33, [16, 17]), (32, [16, 16]), (34, [16, 16, 2]), (1, [1])])
def test_a_last_batch_of_one_sample_joins_the_previous_one(n, sizes):
    x, y = blobs(n)
    seen = []

    class Sizes(Callback):
        def on_step_end(self, trainer, logs):
            seen.append(logs["seen"])

    trainer = make_trainer([Sizes()])
    assert Trainer.epoch_steps(n, 16) == len(sizes)
    if n == 1:  # a single sample in all: BatchNorm's own clear error
        with pytest.raises(ValueError, match="more than one value per channel"):
            trainer.fit(x, y, epochs=1, batch_size=16)
        return
    trainer.fit(x, y, epochs=2, batch_size=16)
    assert np.diff([0] + seen[:len(sizes)]).tolist() == sizes and seen[len(sizes) - 1] == n


def test_a_second_signal_stops_at_once_and_names_itself():
    x, y = blobs()
    twice = At(2, lambda t: [os.kill(os.getpid(), signal.SIGINT), os.kill(os.getpid(), signal.SIGTERM)])
    trainer = make_trainer([twice])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(x, y, epochs=2, batch_size=16)
    assert trainer.interrupted and trainer.stop_signal == signal.SIGTERM


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    x, y = blobs()
    ck = tmp_path / "ck.npz"
    trainer = make_trainer([At(3, lambda t: os.kill(os.getpid(), signal.SIGTERM)), Checkpoint(ck)])
    previous = signal.getsignal(signal.SIGTERM)
    trainer.fit(x, y, epochs=2, batch_size=16)
    assert trainer.interrupted and trainer.stop_signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous
    assert read_archive(ck)[1]["progress"]["global_step"] == 3


@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (1.5, TypeError)])
def test_predict_on_any_layer_refuses_a_bad_batch_size(batch_size, error):
    with pytest.raises(error, match="predict: batch_size must be"):
        predict(L.Tanh(), np.zeros((3, 2), np.float32), batch_size=batch_size)
    np.testing.assert_array_equal(predict(L.Tanh(), np.zeros((3, 2), np.float32), batch_size=2), 0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_steps": 0}, ValueError, "max_steps must be >= 1"),
    ({"max_steps": 2.0}, TypeError, "max_steps must be an integer"),
    ({"epochs": -1}, ValueError, "epochs must be >= 1"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
    ({"epochs": True}, TypeError, "epochs must be an integer"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": 16.0}, TypeError, "batch_size must be an integer")])
def test_fit_refuses_bad_counts_before_training(kwargs, error, match):
    x, y = blobs()
    trainer = make_trainer()
    before = params(trainer)
    with pytest.raises(error, match=f"Trainer.fit: {match}"):
        trainer.fit(x, y, **{"epochs": 1, "batch_size": 16, **kwargs})
    assert_same(before, params(trainer))
    assert trainer.progress["global_step"] == 0


@pytest.mark.parametrize("which", ["x", "y"])
def test_fit_requires_numpy_arrays(which):
    x, y = blobs()
    data = {"x": x, "y": y}
    data[which] = data[which].tolist()
    with pytest.raises(TypeError, match=f"Trainer.fit: {which} must be a numpy array, got list"):
        make_trainer().fit(data["x"], data["y"], epochs=1, batch_size=16)


def test_fit_takes_numpy_integer_counts():
    x, y = blobs()
    trainer = make_trainer()
    trainer.fit(x, y, epochs=np.int64(1), batch_size=np.int32(40), max_steps=np.int64(2))
    assert trainer.progress["global_step"] == 2


def test_a_resume_at_an_epoch_end_with_fewer_samples_runs_every_remaining_epoch(tmp_path):
    x, y = blobs()
    first = make_trainer([Checkpoint(tmp_path / "ck.npz")])
    first.fit(x, y, epochs=1, batch_size=16)  # 6 steps
    resumed = make_trainer()
    resumed.resume(tmp_path / "ck.npz")
    resumed.fit(x[:48], y[:48], epochs=3, batch_size=16)  # 3 steps per epoch from here
    assert resumed.progress["epoch"] == 3 and resumed.progress["global_step"] == 6 + 2 * 3
    assert [r["epoch"] for r in resumed.history] == [2, 3]


@pytest.mark.parametrize("how", ["same trainer", "resumed"])
def test_a_mid_epoch_stop_continues_only_with_the_epoch_it_stopped_in(tmp_path, how):
    x, y = blobs(40)
    first = make_trainer()
    first.fit(x, y, epochs=3, batch_size=8, max_steps=4)  # stopped at step 4 of 5
    first.save_checkpoint(tmp_path / "ck.npz")
    trainer = first if how == "same trainer" else make_trainer(seed=3)
    if how == "resumed":
        trainer.resume(tmp_path / "ck.npz")
    before = params(trainer)
    for xs, ys, batch in [(x, y, 20), (x, y, 16), (x[:32], y[:32], 8)]:
        with pytest.raises(ValueError, match=r"Trainer.fit: training stopped at step 4 of an epoch of 40 samples "
                                             r"in batches of 8; finish that epoch with the same data"):
            trainer.fit(xs, ys, epochs=3, batch_size=batch, max_steps=50)
        assert_same(before, params(trainer))
    trainer.fit(x, y, epochs=3, batch_size=8)  # the same epoch: goes on, then any size
    assert trainer.progress == {**trainer.progress, "epoch": 3, "step_in_epoch": 0, "global_step": 15}
    trainer.fit(x[:20], y[:20], epochs=4, batch_size=4)
    assert trainer.progress["global_step"] == 20


def test_a_mid_epoch_checkpoint_without_the_epoch_size_still_refuses_an_epoch_it_overran(tmp_path):
    x, y = blobs(40)
    first = make_trainer()
    first.fit(x, y, epochs=3, batch_size=8, max_steps=4)
    first.progress.pop("epoch_size")  # as an older checkpoint holds it
    first.save_checkpoint(tmp_path / "ck.npz")
    resumed = make_trainer()
    resumed.resume(tmp_path / "ck.npz")
    with pytest.raises(ValueError, match=r"stopped at step 4 of an epoch, but 40 samples in batches of 20 make 2 "
                                         r"steps"):
        resumed.fit(x, y, epochs=3, batch_size=20)


def test_a_checkpoint_with_a_garbled_epoch_size_is_refused(tmp_path):
    x, y = blobs(40)
    first = make_trainer()
    first.fit(x, y, epochs=1, batch_size=8, max_steps=2)
    first.progress["epoch_size"] = [40, -8]
    first.save_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(ValueError, match=r"ck.npz: progress field 'epoch_size' is \[40, -8\], expected"):
        make_trainer().resume(tmp_path / "ck.npz")


def test_fit_refuses_an_optimizer_that_does_not_hold_the_model_s_arrays(tmp_path):
    import models
    x, y = blobs()
    trainer = make_trainer()
    trainer.model.save(tmp_path / "m.npz")
    trainer.model = models.load(tmp_path / "m.npz")  # new arrays; the optimizer holds the old ones
    with pytest.raises(ValueError, match=r"Trainer.fit: the optimizer does not hold the model's parameter arrays "
                                         r"\['0.weight', '0.bias', '1.weight'\] \.\.\. \(6 of 6\): it was built for "
                                         r"another model, or before models.load"):
        trainer.fit(x, y, epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="this Trainer has no optimizer"):
        Trainer(trainer.model, L.SoftmaxCrossEntropy(), None).fit(x, y, epochs=1, batch_size=16)


@pytest.mark.parametrize("validation, error, match", [
    ("xy", TypeError, "validation must be a pair"),
    ("triple", TypeError, "validation must be a pair"),
    ("lists", TypeError, "validation x must be a numpy array, got list"),
    ("short-y", ValueError, r"validation x of shape \(10, 4\) and y of shape \(9,\) do not match"),
    ("other-shape", ValueError, r"validation inputs of shape \(10, 3\) do not fit the model: .*Dense: expected "
                                r"per-sample input shape \(4,\), got \(3,\)"),
    ("other-rank", ValueError, r"validation x of shape \(10, 1, 4\) and y of shape \(10,\) do not match"),
    ("one-hot", ValueError, r"validation targets \(float32 \(10, 3\)\) are not of the training targets' kind "
                            r"\(int64 \(96,\)\)"),
])
def test_fit_checks_validation_and_augment_before_training(validation, error, match):
    x, y = blobs()
    vx, vy = x[:10], y[:10]
    value = {"xy": vx, "triple": (vx, vy, vy), "lists": (vx.tolist(), vy.tolist()), "short-y": (vx, vy[:9]),
             "other-shape": (vx[:, :3], vy), "other-rank": (vx[:, None], vy),
             "one-hot": (vx, np.eye(3, dtype=np.float32)[vy])}[validation]
    trainer = make_trainer()
    with pytest.raises(error, match=f"Trainer.fit: {match}"):
        trainer.fit(x, y, epochs=1, batch_size=16, validation=value)
    with pytest.raises(TypeError, match="Trainer.fit: augment must be a function"):
        trainer.fit(x, y, epochs=1, batch_size=16, augment=5)
    assert trainer.progress["global_step"] == 0


@pytest.mark.parametrize("make", [lambda d: Checkpoint(d / "missing" / "ck.npz"),
                                  lambda d: Checkpoint(d),  # a directory
                                  lambda d: __import__("models.callbacks").callbacks.JsonLog(d / "missing" / "log")])
def test_checkpoint_and_log_destinations_are_checked_before_training(tmp_path, make):
    x, y = blobs()
    trainer = make_trainer([make(tmp_path)])
    before = params(trainer)
    with pytest.raises(OSError, match=str(tmp_path)):
        trainer.fit(x, y, epochs=1, batch_size=16)
    assert trainer.progress["global_step"] == 0
    assert_same(before, params(trainer))
    assert sorted(os.listdir(tmp_path)) == []  # nothing left behind


def test_predict_and_evaluate_refuse_lists_and_a_zero_batch_size():
    x, y = blobs()
    trainer = make_trainer()
    with pytest.raises(TypeError, match="predict: x must be a numpy array, got list"):
        trainer.predict(x.tolist())
    with pytest.raises(TypeError, match="evaluate: x must be a numpy array with a batch axis, got list"):
        trainer.evaluate(x.tolist(), y.tolist())
    with pytest.raises(TypeError, match="Sequential: expected a numpy array of shape"):
        trainer.model.forward(x.tolist())
    with pytest.raises(TypeError, match="Sequential.predict: expected a numpy array"):
        trainer.model.predict([])
    for call in (lambda: trainer.predict(x, batch_size=0), lambda: trainer.evaluate(x, y, batch_size=0)):
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            call()


def test_trainer_arguments_are_checked_with_the_trainer_named(tmp_path):
    model = Sequential(L.Dense(4, 3, rng=0))
    opt = SGD(model.params, 0.1)
    with pytest.raises(ValueError, match=r"Trainer: rng must be a numpy Generator, a seed \(an integer >= 0\) or "
                                         r"None, got -1"):
        Trainer(model, L.SoftmaxCrossEntropy(), opt, rng=-1)
    with pytest.raises(TypeError, match="Trainer: augment_rng must be"):
        Trainer(model, L.SoftmaxCrossEntropy(), opt, augment_rng="seed")
    with pytest.raises(TypeError, match="Trainer: loss must be a loss .* got ReLU"):
        Trainer(model, L.ReLU(), opt)
    with pytest.raises(TypeError, match=r"got the class SoftmaxCrossEntropy \(pass an instance\)"):
        Trainer(model, L.SoftmaxCrossEntropy, opt)
    with pytest.raises(ValueError, match="Trainer.fit: this Trainer has no loss"):
        Trainer(model, None, opt).fit(*blobs(), epochs=1, batch_size=32)
    with pytest.raises(TypeError, match="Trainer: eval_loss must be a loss .* got int"):
        Trainer(model, L.SoftmaxCrossEntropy(), opt, eval_loss=3)
    trainer = Trainer(model, L.SoftmaxCrossEntropy(), opt, callbacks=None, rng=0)  # None: no callbacks
    x, y = blobs()
    trainer.fit(x, y, epochs=1, batch_size=32)
    assert trainer.progress["epoch"] == 1


def test_astype_takes_only_the_three_float_dtypes_and_save_takes_a_bytes_path(tmp_path):
    import models
    model = Sequential(L.Dense(4, 3, rng=0))
    cases = [(None, "got None"), (np.int32, "got int32")]
    if np.dtype(np.longdouble).itemsize > 8:  # where long double is wider than float64
        cases.append((np.longdouble, f"got {np.dtype(np.longdouble)}"))
    for dtype, got in cases:
        with pytest.raises(TypeError, match=f"Sequential.astype: expected .*{got}"):
            model.astype(dtype)
    assert model.params["0.weight"].dtype == np.float32
    model.astype(np.dtype(">f8"))  # big-endian float64: float64 in this machine's order
    assert model.params["0.weight"].dtype == np.float64 and model.params["0.weight"].dtype.isnative
    model.astype(np.float32)
    with pytest.raises(TypeError, match="Checkpoint: path must be a file name, got NoneType"):
        Checkpoint(None)
    model.save(os.fsencode(tmp_path / "m.npz"))
    assert_same(dict(models.load(os.fsencode(tmp_path / "m.npz")).params), dict(model.params))


def test_a_run_stopped_between_the_last_step_and_the_epoch_end_continues():
    class FailingOnce(L.SoftmaxCrossEntropy):  # the evaluation at the epoch's end fails the first time
        failed = False

        def forward(self, pred, target):
            if not FailingOnce.failed:
                FailingOnce.failed = True
                raise RuntimeError("evaluation failed")
            return super().forward(pred, target)

    x, y = blobs()
    trainer = make_trainer()
    trainer.eval_loss = FailingOnce()
    with pytest.raises(RuntimeError, match="evaluation failed"):
        trainer.fit(x, y, epochs=2, batch_size=16, validation=(x[:10], y[:10]))
    assert trainer.progress["step_in_epoch"] == 6 and trainer.progress["epoch"] == 0  # 6 of 6 steps taken
    trainer.fit(x, y, epochs=2, batch_size=16, validation=(x[:10], y[:10]))
    assert trainer.progress["epoch"] == 2 and trainer.progress["global_step"] == 12


def test_fully_convolutional_validation_at_another_size_and_wrapped_optimizers_are_accepted():
    rng = np.random.default_rng(0)
    model = Sequential(L.Conv2D(3, 4, 3, rng=rng), L.GlobalAvgPool2D(), L.Dense(4, 3, rng=rng))

    class Clipping:  # an optimizer wrapper of the user's own, without .params
        def __init__(self, inner):
            self.wrapped_optimizer, self.lr = inner, inner.lr

        def step(self, grads):
            self.wrapped_optimizer.step({k: np.clip(g, -1, 1) for k, g in grads.items()})

        def state_dict(self):
            return self.wrapped_optimizer.state_dict()

    trainer = Trainer(model, L.SoftmaxCrossEntropy(), Clipping(SGD(model.params, 0.1)), rng=0)
    x = rng.standard_normal((16, 3, 12, 12)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    vx = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    trainer.fit(x, y, epochs=1, batch_size=8, validation=(vx, y[:8]))
    assert np.isfinite(trainer.history[-1]["test_loss"])
