"""The Python examples of docs/engine.md run as written (the toy GAN shortened to 30 iterations)."""

import re

from conftest import ROOT


def test_engine_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "engine.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "class MyTask" not in b]
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(block.replace("train.iterations=300", "train.iterations=30"), namespace)  # noqa: S102
    assert (tmp_path / "runs" / "toy_gan" / "checkpoints" / "last.pt").is_file()
