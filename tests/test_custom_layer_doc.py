"""docs/custom_layer.md's code runs as written and keeps the layer contract, as its complete copy
in examples/custom_layers.py does."""
import os
import re

import numpy as np
import pytest

from examples import custom_layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def doc_blocks():
    """The ```python blocks of docs/custom_layer.md, each with the plain ``` block that follows
    it before the next ```python block ('' where none does)."""
    with open(os.path.join(ROOT, "docs", "custom_layer.md"), encoding="utf-8") as f:
        text = f.read()
    pieces = re.split(r"^```python\n", text, flags=re.M)[1:]
    code, outputs = [], []
    for piece in pieces:
        block, _, rest = piece.partition("```\n")
        shown = re.search(r"^```\n(.*?)^```$", rest, re.M | re.S)
        code.append(block)
        outputs.append(shown.group(1) if shown else "")
    return code, outputs


@pytest.fixture(scope="module")
def doc_layers():
    """The doc's classes, registered while the tests use them (a second Swish would make the
    bare name of older files ambiguous for the rest of the suite)."""
    from layers.registry import LAYER_REGISTRY
    before = dict(LAYER_REGISTRY)
    code, _ = doc_blocks()
    namespace = {"__name__": "docs_custom_layer"}
    exec(compile(code[0] + code[1], "docs/custom_layer.md", "exec"), namespace)
    yield namespace
    LAYER_REGISTRY.clear()
    LAYER_REGISTRY.update(before)


@pytest.mark.parametrize("name, shape", [("Swish", (4, 5)), ("PReLU", (2, 3, 4, 4))])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_doc_layer_matches_the_example_and_keeps_the_input_dtype(doc_layers, name, shape, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(shape)  # float64: converted to the forward's dtype
    args = (shape[1],) if name == "PReLU" else ()
    doc, example = doc_layers[name](*args), getattr(custom_layers, name)(*args)
    out, ref = doc.forward(x), example.forward(x)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_array_equal(out, ref)
    (dx, grads), (ref_dx, ref_grads) = doc.backward(dout), example.backward(dout)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, ref_dx)
    assert grads.keys() == ref_grads.keys() == doc.params.keys()
    for key in grads:
        assert grads[key].dtype == dtype and grads[key].shape == doc.params[key].shape
        np.testing.assert_array_equal(grads[key], ref_grads[key])


def test_doc_layers_refuse_a_wrongly_shaped_gradient(doc_layers):
    layer = doc_layers["PReLU"](3)
    layer.forward(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="PReLU"):
        layer.backward(np.ones((2, 3, 1), np.float32))


def test_doc_gradient_check_prints_what_the_doc_shows(doc_layers, capsys):
    code, outputs = doc_blocks()
    namespace = {"PReLU": doc_layers["PReLU"]}
    exec(compile(code[2], "docs/custom_layer.md: gradient check", "exec"), namespace)
    assert namespace["report"].passed()
    assert capsys.readouterr().out == outputs[2]
