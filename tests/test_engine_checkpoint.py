import pickle

import pytest
import torch

from imagexplore import models
from imagexplore.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from imagexplore.errors import CheckpointError


def _state(model):
    return {"model": model.state_dict(), "model_name": model.registry_name, "config": {"a": [1, 2]}}


def test_roundtrip_and_sidecar(tmp_path):
    m = models.create("simple_cnn", num_classes=3, width=4, depth=1)
    p = save_checkpoint(_state(m), tmp_path / "ck.pt")
    assert (tmp_path / "ck.pt.sha256").is_file()
    assert not list(tmp_path.glob(".*tmp"))  # the temp file was renamed, not left behind
    ck = load_checkpoint(p)
    assert ck["format_version"] == 1 and ck["config"] == {"a": [1, 2]}
    m2 = models.create("simple_cnn", num_classes=3, width=4, depth=1)
    load_model_state(m2, ck, p)
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])


def test_corruption_is_detected(tmp_path):
    m = models.create("simple_cnn", num_classes=3, width=4, depth=1)
    p = save_checkpoint(_state(m), tmp_path / "ck.pt")
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(p)


def test_other_model_and_other_shapes(tmp_path):
    m = models.create("simple_cnn", num_classes=3, width=4, depth=1)
    p = save_checkpoint(_state(m), tmp_path / "ck.pt")
    ck = load_checkpoint(p)
    other = models.create("simple_cnn", num_classes=5, width=4, depth=1)
    with pytest.raises(CheckpointError, match=r"does not fit model 'simple_cnn'.*fc.weight"):
        load_model_state(other, ck, p)
    other.registry_name = "cfn_cifar10"
    with pytest.raises(CheckpointError, match="is for model 'simple_cnn', not 'cfn_cifar10'"):
        load_model_state(other, ck, p)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickles_are_refused(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointError, match=r"evil.pt is not a checkpoint \(or not a safe one\)") as e:
        load_checkpoint(p)
    assert "weights_only" not in str(e.value)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt is not a checkpoint") as e:
        load_checkpoint(tmp_path / "junk.pt")
    assert "weights_only" not in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
