"""The layer registry: no silent replacement, private bases unloadable, and
get_config checked when a model is saved."""
import importlib
import os
import sys

import numpy as np
import pytest

import layers as L
import models
from layer_table import ROWS
from layers.registry import LAYER_REGISTRY, lookup_layer, registry_key
from models import Sequential, build_layer, layer_spec
from models.serialization import load


def test_builtins_keep_short_names_and_private_bases_are_absent():
    for name in ("Dense", "Conv2D", "ReLU", "BatchNorm2D", "Sequential", "Residual"):
        assert LAYER_REGISTRY[name].__name__ == name
    for name in ("Layer", "Container", "_BatchNorm", "_Pool2D"):
        assert name not in LAYER_REGISTRY
        with pytest.raises(ValueError, match=f"unknown layer class '{name}'"):
            build_layer({"class": name, "config": {}})


def test_user_class_named_like_a_builtin_does_not_replace_it(tmp_path, rng):
    class ReLU(L.Layer):
        def forward(self, x):
            return 2 * x

    assert LAYER_REGISTRY["ReLU"] is L.ReLU
    assert registry_key(ReLU) == f"{__name__}.{ReLU.__qualname__}"
    builtin = Sequential(L.Dense(3, 2, rng=rng), L.ReLU())
    builtin.save(tmp_path / "builtin.npz")
    assert type(load(tmp_path / "builtin.npz")[1]) is L.ReLU
    mine = Sequential(L.Dense(3, 2, rng=rng), ReLU())
    mine.save(tmp_path / "mine.npz")
    assert type(load(tmp_path / "mine.npz")[1]) is ReLU


def test_duplicate_builtin_name_is_refused():
    with pytest.raises(TypeError, match="'Dense' is already registered for layers.linear.Dense"):
        type("Dense", (L.Layer,), {"__module__": "layers.elsewhere"})
    assert LAYER_REGISTRY["Dense"] is L.Dense


def test_reloading_a_module_keeps_saved_models_loadable(tmp_path, monkeypatch, rng):
    (tmp_path / "reloaded_layers.py").write_text(
        "from layers import Layer\n"
        "class Scale(Layer):\n"
        "    def __init__(self, factor):\n"
        "        super().__init__()\n"
        "        self.factor = factor\n"
        "    def get_config(self):\n"
        "        return {'factor': self.factor}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("reloaded_layers")
    try:
        Sequential(module.Scale(2.0)).save(tmp_path / "m.npz")
        module = importlib.reload(module)
        assert LAYER_REGISTRY["reloaded_layers.Scale"] is module.Scale
        loaded = load(tmp_path / "m.npz")
        assert type(loaded[0]) is module.Scale and loaded[0].factor == 2.0
    finally:
        sys.modules.pop("reloaded_layers", None)


def test_bare_names_from_older_files_resolve_only_when_unambiguous():
    from examples.custom_layers import Swish
    assert lookup_layer("Swish") is Swish
    type("Swish", (L.Layer,), {"__module__": "other_package.acts"})
    with pytest.raises(ValueError, match="'Swish' is ambiguous"):
        build_layer({"class": "Swish", "config": {}})
    assert lookup_layer("examples.custom_layers.Swish") is Swish


def test_a_test_defined_class_is_registered_during_the_test():
    type("LeakProbe", (L.Layer,), {"__module__": "probe_module"})
    assert "probe_module.LeakProbe" in LAYER_REGISTRY


def test_classes_defined_by_earlier_tests_do_not_leak():
    # runs after the test above (file order): the autouse fixture in conftest.py restored the registry
    assert "probe_module.LeakProbe" not in LAYER_REGISTRY
    assert not any(".test_user_class_named_like" in key for key in LAYER_REGISTRY)


def test_private_class_instances_cannot_be_saved(tmp_path):
    class _Hidden(L.Layer):
        pass

    with pytest.raises(ValueError, match="_Hidden is not a registered layer class"):
        Sequential(_Hidden()).save(tmp_path / "h.npz")
    assert not list(tmp_path.iterdir())


class NoConfig(L.Layer):
    """Takes an argument but does not report it."""

    def __init__(self, width):
        super().__init__()
        self.params["weight"] = np.ones(width, np.float32)


class DefaultedNoConfig(L.Layer):
    """A defaulted argument that shapes a parameter, not reported."""

    def __init__(self, width=1):
        super().__init__()
        self.params["weight"] = np.ones(width, np.float32)


class BadConfig(L.Layer):
    def __init__(self, width=1):
        super().__init__()
        self.width = width

    def get_config(self):
        return {"width": self.width, "colour": "blue"}


class NotJSON(L.Layer):
    def __init__(self, table=None):
        super().__init__()
        self.table = table

    def get_config(self):
        return {"table": self.table}


@pytest.mark.parametrize("layer, message", [
    (NoConfig(3), r"NoConfig: constructor argument 'width' is missing from get_config\(\)"),
    (DefaultedNoConfig(3), r"DefaultedNoConfig: constructor argument 'width' is missing from get_config\(\)"),
    (BadConfig(2), r"BadConfig.get_config\(\) returns \['colour'\], which the constructor does not take"),
    (NotJSON(np.arange(3)), r"NotJSON.get_config\(\) is not JSON-serialisable"),
], ids=["required-arg", "defaulted-arg", "unknown-key", "not-json"])
def test_save_refuses_a_layer_its_config_cannot_rebuild(tmp_path, rng, layer, message):
    model = Sequential(L.Dense(4, 3, rng=rng), layer)
    with pytest.raises(ValueError, match=message):
        model.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


class Scale(L.Layer):
    """A defaulted argument that changes the output but no array: only get_config can keep it."""

    def __init__(self, k=2.0):
        super().__init__()
        self.k = k

    def forward(self, x):
        return self.k * x

    def backward(self, dout):
        return self.k * dout, {}


def test_save_refuses_a_defaulted_argument_missing_from_get_config(tmp_path):
    with pytest.raises(ValueError, match=r"Scale: constructor argument 'k' is missing from get_config\(\)"):
        Sequential(Scale(3.0)).save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def test_reported_defaulted_argument_survives_a_round_trip(tmp_path):
    class ReportedScale(Scale):
        def get_config(self):
            return {"k": self.k}

    Sequential(ReportedScale(3.0)).save(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").layers[0].k == 3.0


class Noisy(L.Layer):
    """``rng`` only draws the initial weights (saved with the model): declared init-only."""

    init_only = ("rng",)

    def __init__(self, width, rng=None):
        super().__init__()
        self.width = width
        self.params["weight"] = np.random.default_rng(rng).standard_normal(width).astype(np.float32)

    def get_config(self):
        return {"width": self.width}


def test_init_only_arguments_need_not_be_reported(tmp_path):
    model = Sequential(Noisy(3, rng=7))
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load(tmp_path / "m.npz").params["0.weight"], model.params["0.weight"])


def test_init_only_must_name_constructor_arguments(tmp_path):
    class Typo(Noisy):
        init_only = ("rgn",)

    with pytest.raises(ValueError, match=r"Typo.init_only names 'rgn', which the constructor does not take"):
        Sequential(Typo(3)).save(tmp_path / "m.npz")


def test_every_layer_in_the_table_reports_its_constructor_arguments(rng):
    for name, factory, _ in ROWS:
        layer = factory(rng)
        spec = layer_spec(layer)  # raises for an argument neither reported nor init-only
        assert build_layer(spec).get_config() == layer.get_config(), name


def test_layer_spec_of_a_deeply_nested_model_is_a_clear_error():
    model = L.ReLU()
    for _ in range(200):
        model = Sequential(model)
    with pytest.raises(ValueError, match="nested more than"):
        layer_spec(model)
    assert models.layer_spec(Sequential(L.ReLU()))["class"] == "Sequential"


@pytest.mark.parametrize("module", ["models.container", "models.serialization", "models.sequential",
                                    "models.branches", "layers.registry", "models.trainer"])
def test_every_module_imports_first_without_a_cycle(module):
    """Imported first in a fresh interpreter, each module loads (no circular import)."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
