"""Worker for test_engine_multi's 2-process run: the toy GAN (two optimizers, EMA) under DDP with gloo, evaluated
by a gathering evaluator (recall@K over all pairs) on 101 samples — a size the 2 ranks cannot split evenly."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from imagexplore.engine import Trainer  # noqa: E402
from imagexplore.engine import distributed as dist  # noqa: E402
from test_engine_multi import GAN_RECIPE, EvalGANTask, Ring, ToyGAN, gan_cfg  # noqa: E402


def main(run_dir: str) -> None:
    cfg = gan_cfg("train.iterations=8", "data.batch_size=16", "train.eval_every=0", *GAN_RECIPE)
    trainer = Trainer(
        cfg, ToyGAN(), EvalGANTask(recall=True), Ring(128), Ring(101, seed=1), run_dir, show_progress=False
    )
    summary = trainer.fit()
    again = trainer.evaluate()
    if dist.is_main():
        out = {
            "summary": summary,
            "eval": again,
            "world_size": dist.world_size(),
            "wrapped": trainer.ddp_networks,
        }
        (Path(run_dir) / "dist_result.json").write_text(json.dumps(out))
    dist.shutdown_and_exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
