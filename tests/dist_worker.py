"""Worker for test_engine_distributed: run under torchrun; trains one epoch with DDP (gloo), then evaluates."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from helpers import BlobDataset, quick_cfg  # noqa: E402
from imagexplore import models  # noqa: E402
from imagexplore.classification.task import ClassificationTask  # noqa: E402
from imagexplore.engine import Trainer  # noqa: E402
from imagexplore.engine import distributed as dist  # noqa: E402


def main(run_dir: str) -> None:
    cfg = quick_cfg("train.epochs=1", "train.device=cpu")
    torch.manual_seed(0)
    model = models.create("simple_cnn", num_classes=4, **cfg.model.kwargs)
    train, val = BlobDataset(256), BlobDataset(101, seed=1)  # 101: odd, so padding would double-count
    trainer = Trainer(cfg, model, ClassificationTask(train.classes), train, val, run_dir, show_progress=False)
    summary = trainer.fit()
    again = trainer.evaluate()
    if dist.is_main():
        out = {
            "summary": summary,
            "eval": again,
            "world_size": dist.world_size(),
            "iters_per_epoch": trainer.iters_per_epoch,
        }
        (Path(run_dir) / "dist_result.json").write_text(json.dumps(out))
    dist.shutdown_and_exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
