"""The engine learns: a small CNN trained a few dozen steps on the shapes world beats chance by a wide margin."""

from imagexplore.classification.train import train
from imagexplore.config import load_config


def test_simple_cnn_learns_shapes(tmp_path):
    cfg = load_config(
        "classify/shapes_baseline_quick.yaml",
        [
            "data.options={num_classes: 4}",  # 4 shape classes: chance = 25%
            "data.train_samples=3200",
            "data.val_samples=256",
            "data.batch_size=32",
            "train.iterations=200",
            "train.eval_every=0",
            "train.tensorboard=false",
            "schedule.warmup_iters=5",
            "train.device=cpu",
        ],
    )
    summary = train(cfg, tmp_path, show_progress=False)
    acc = summary["final"]["val/acc1"]
    assert summary["final"]["val/count"] == 256
    assert acc > 0.5, f"accuracy {acc:.3f} is not clearly above chance (0.25)"
