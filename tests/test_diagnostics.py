"""Training diagnostics, non-finite localisation and the --plot figures."""
import json
import sys

import numpy as np

import layers as L
import train
from conftest import require
from fixtures import write_mnist
from models import Sequential
from models.diagnostics import Diagnostics, first_nonfinite
from optim import SGD


def test_dead_relu_fraction_and_ratios(rng):
    dense = L.Dense(3, 4, rng=rng)
    dense.params["weight"][...] = 0
    dense.params["bias"][...] = [1.0, -1.0, 1.0, -1.0]  # units 1 and 3 can never be positive
    model = Sequential(dense, L.ReLU(), L.Dense(4, 2, rng=rng))
    diag = Diagnostics(model)
    opt = SGD(model.params, lr=0.1)
    for _ in range(3):
        out = model.forward(rng.standard_normal((5, 3)).astype(np.float32))
        diag.after_forward()
        _, grads = model.backward(np.ones_like(out))
        diag.before_step()
        before = model.params["2.weight"].copy()
        opt.step(grads)
        diag.after_step(grads)
    summary = diag.summary()
    assert summary["dead_relu_fraction"] == {"1": 0.5}
    np.testing.assert_allclose(summary["grad_norm"]["2.bias"], np.sqrt(2) * 5, rtol=1e-6)
    last = np.linalg.norm(model.params["2.weight"] - before) / np.linalg.norm(before)
    assert summary["update_ratio"]["2.weight"] > 0 and last > 0
    assert "dead ReLU units: 1 50.0%" in Diagnostics.format(summary)
    json.dumps(summary)


def test_first_nonfinite_names_forward_and_backward_layers(rng):
    model = Sequential(L.Dense(3, 3, rng=rng), L.ReLU(), L.Dense(3, 2, rng=rng))
    x = np.ones((2, 3), np.float32)
    assert first_nonfinite(model, x, np.ones_like) is None
    model.params["2.weight"][0, 0] = np.inf
    assert first_nonfinite(model, x, np.ones_like) == "forward of layer 2 (Dense)"
    model.params["2.weight"][0, 0] = 1.0
    with np.errstate(all="ignore"):
        where = first_nonfinite(model, x, lambda out: np.full_like(out, np.nan))
    assert where == "the loss gradient"
    with np.errstate(all="ignore"):
        where = first_nonfinite(model, x, lambda out: np.array([[1e38, 0], [1e38, 0]], np.float32) * 10)
    assert where == "the loss gradient"


def test_train_diagnostics_are_logged(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=256, n_test=64)
    log = tmp_path / "log.jsonl"
    train.train(train.parse_args(["--data-dir", str(tmp_path), "--epochs", "1", "--batch-size", "64",
                                  "--diagnostics", "--log", str(log), "--quiet", "--no-download"]))
    record = json.loads(log.read_text())
    diag = record["diagnostics"]
    assert set(diag["dead_relu_fraction"]) == {"2", "6", "9", "14"}
    assert all(0.0 <= v <= 1.0 for v in diag["dead_relu_fraction"].values())
    assert set(diag["grad_norm"]) == set(diag["update_ratio"]) and "0.weight" in diag["grad_norm"]


def test_plots_are_valid_pngs(tmp_path):
    require("matplotlib")
    write_mnist(tmp_path / "mnist", n_train=256, n_test=64)
    out = tmp_path / "figs"
    train.train(train.parse_args(["--data-dir", str(tmp_path), "--epochs", "2", "--batch-size", "64",
                                  "--plot", str(out), "--quiet", "--no-download"]))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["confusion.png", "curves.png", "filters.png", "misclassified.png"]
    for p in out.iterdir():
        content = p.read_bytes()
        assert content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) > 2000


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = train.main(["--data-dir", str(tmp_path), "--plot", str(tmp_path / "figs")])
    assert code == 2
    assert 'pip install -e ".[plot]"' in caplog.text
    assert not (tmp_path / "figs").exists()
