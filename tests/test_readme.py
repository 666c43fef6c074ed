"""The README's Python snippets run as written, so they cannot go stale."""
import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def section_code(title):
    """The ```python blocks of the README section headed ``## title``, in order."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end != -1 else None], re.S)


def test_training_from_python_snippets_run(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPNET_DATA", mnist_dir)
    monkeypatch.chdir(tmp_path)
    blocks = section_code("Training from Python")
    assert len(blocks) == 2
    namespace = {}
    exec(compile(blocks[0], "README: explicit loop", "exec"), namespace)
    out = capsys.readouterr().out
    assert re.findall(r"epoch (\d): ", out) == ["1", "2", "3"]
    assert namespace["accuracy"] > 0.8  # 2,000 images, 3 epochs; chance is 0.1
    exec(compile(blocks[1], "README: Trainer", "exec"), namespace)
    trainer = namespace["trainer"]
    assert len(trainer.history) == 3 and trainer.history[-1]["test_acc"] > 0.8
    assert namespace["result"].confusion.sum() == len(namespace["y_test"])
    assert (tmp_path / "run.npz").exists() and trainer.progress["epoch"] == 3
    assert np.isfinite(trainer.history[-1]["train_loss"])
