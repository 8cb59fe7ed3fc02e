"""The training engine shared by every task.

One loop: optimizer steps counted as iterations (training length in epochs or iterations), gradient
accumulation, clipping, bf16 autocast on CUDA, several optimizers in sequence (GANs), DDP under torchrun,
evaluation every N epochs or iterations through `reset / update / compute` evaluators, best/last checkpoints and
exact resume.

A task plugs in through a small object (see `Task`): how to compute the loss of a batch, which evaluators to
run and how to feed them, and optionally its own optimizers. Everything else lives here once.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from imagexplore.config import ExperimentConfig, save_config, to_dict
from imagexplore.engine import distributed as dist
from imagexplore.engine.checkpoint import (
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from imagexplore.engine.evaluators import Evaluator
from imagexplore.engine.logging import RunLogger
from imagexplore.engine.optim import build_optimizer, build_scheduler
from imagexplore.engine.sampler import EpochSampler
from imagexplore.errors import CheckpointError, ConfigError, TrainingError


class Task:
    """What a task tells the engine. Subclass and override; the defaults fit single-optimizer tasks."""

    #: DDP option for models whose forward does not use every parameter every step
    find_unused_parameters: bool = False

    def configure_optimizers(
        self, model: nn.Module, cfg: ExperimentConfig
    ) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name, stepped in this order every iteration (e.g. {'D': ..., 'G': ...} for a GAN)."""
        return {"main": build_optimizer(model, cfg.optim)}

    def training_step(
        self, model: nn.Module, batch: Any, optimizer: str
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss for `optimizer` on one (micro-)batch, plus scalars to log."""
        raise NotImplementedError

    def evaluators(self) -> dict[str, Evaluator]:
        """Evaluators by name; their metrics are logged as 'val/<metric>' (name '' ) or 'val/<name>/<metric>'."""
        return {}

    def evaluation_step(self, model: nn.Module, batch: Any, evaluators: dict[str, Evaluator]) -> None:
        raise NotImplementedError

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra data stored with every checkpoint (class names, normalisation, ...): plain types only."""
        return {}


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    epoch: int = 0  # epoch being run (or next to run)
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed (mid-epoch resume)
    iteration: int = 0  # optimizer steps done
    best_value: float | None = None
    best_epoch: float | None = None
    best_iteration: int | None = None
    last_eval: dict[str, float] = field(default_factory=dict)


def resume_path(run_dir: str | Path, resume: bool | str | Path) -> Path | None:
    """The checkpoint a `resume` request means, or None for a new run. True: RUN_DIR/checkpoints/last.pt, which
    must exist (resuming nothing would silently start over); "auto": that file if it exists (a requeued job), else
    None with a notice; a path: that checkpoint, which must exist."""
    if not resume:
        return None
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if resume == "auto":
        if last.is_file():
            return last
        if dist.is_main():
            print(f"no checkpoint at {last}: starting a new run", file=sys.stderr)
        return None
    path = last if resume is True else Path(resume)
    if not path.is_file():
        if resume is True:
            raise CheckpointError(
                f"nothing to resume: {last} does not exist; drop --resume to start a new run there "
                "(or use --auto-resume)"
            )
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


class Trainer:
    def __init__(
        self,
        cfg: ExperimentConfig,
        model: nn.Module,
        task: Task,
        train_set: Dataset,
        val_set: Dataset | None,
        run_dir: str | Path,
        *,
        collate_fn=None,
        show_progress: bool | None = None,
    ):
        self.cfg = cfg
        self.task = task
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.collate_fn = collate_fn
        self.show_progress = show_progress
        tc = cfg.train
        if tc.accumulate < 1:
            raise ConfigError("train.accumulate must be >= 1")
        if tc.iterations is None and tc.epochs is None:
            raise ConfigError("set train.epochs or train.iterations")

        self.device = dist.setup(tc.device)
        seed_everything(tc.seed)
        if tc.deterministic and self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not tc.deterministic
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        self.model = model.to(self.device)
        if tc.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ddp_model = self.model
        if dist.is_initialized():
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=task.find_unused_parameters,
            )
        if tc.compile:
            # only the training path is compiled; state_dicts, evaluation and checkpoints use the plain module
            self.ddp_model = torch.compile(self.ddp_model)
        self.optimizers = task.configure_optimizers(self.model, cfg)

        bs = cfg.data.batch_size
        self.train_sampler = EpochSampler(
            len(train_set),
            shuffle=True,
            seed=tc.seed,
            rank=dist.rank(),
            world_size=dist.world_size(),
            pad=True,
        )
        batches = self.train_sampler.shard_len() // bs
        if batches < tc.accumulate:
            raise ConfigError(
                f"the training set gives {batches} full batches of {bs} per process, fewer than "
                f"train.accumulate={tc.accumulate}: lower data.batch_size or add data"
            )
        self.iters_per_epoch = batches // tc.accumulate
        # an epoch ends on an accumulation boundary: trailing micro-batches that cannot fill a step are left out
        self.batches_per_epoch = self.iters_per_epoch * tc.accumulate
        if tc.iterations is not None:
            self.total_iters = tc.iterations
            self.total_epochs = math.ceil(tc.iterations / self.iters_per_epoch)
        else:
            self.total_epochs = tc.epochs
            self.total_iters = tc.epochs * self.iters_per_epoch
        self.schedulers = {
            n: build_scheduler(o, cfg.schedule, self.total_iters, self.iters_per_epoch)
            for n, o in self.optimizers.items()
        }
        self.amp = tc.amp and self.device.type == "cuda"
        self.state = TrainState()
        self.logger = RunLogger(self.run_dir, tensorboard=tc.tensorboard)

    # ----------------------------------------------------------------------------------------------------------
    # checkpoints

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_name": getattr(self.model, "registry_name", type(self.model).__name__),
            "config": to_dict(self.cfg),
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "train_state": {
                "epoch": self.state.epoch,
                "batch_in_epoch": self.state.batch_in_epoch,
                "iteration": self.state.iteration,
                "best_value": self.state.best_value,
                "best_epoch": self.state.best_epoch,
                "best_iteration": self.state.best_iteration,
                "last_eval": dict(self.state.last_eval),
            },
            "rng": rng_state(),
            "world_size": dist.world_size(),
            "meta": self.task.checkpoint_meta(),
        }

    def save(self, name: str) -> Path | None:
        path = None
        if dist.is_main():
            path = save_checkpoint(self.state_dict(), self.ckpt_dir / name)
        dist.barrier()
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore everything from `path` (default: the run's last.pt). Returns False if there is none."""
        path = Path(path) if path else self.ckpt_dir / "last.pt"
        if not path.is_file():
            return False
        ck = load_checkpoint(path, map_location=self.device)
        load_model_state(self.model, ck, path)
        if set(ck.get("optimizers", {})) != set(self.optimizers):
            raise CheckpointError(
                f"checkpoint {path} has optimizers {sorted(ck.get('optimizers', {}))}, "
                f"expected {sorted(self.optimizers)}"
            )
        for n, o in self.optimizers.items():
            o.load_state_dict(ck["optimizers"][n])
        for n, s in self.schedulers.items():
            s.load_state_dict(ck["schedulers"][n])
        ts = ck["train_state"]
        self.state = TrainState(
            epoch=ts["epoch"],
            batch_in_epoch=ts["batch_in_epoch"],
            iteration=ts["iteration"],
            best_value=ts["best_value"],
            best_epoch=ts["best_epoch"],
            best_iteration=ts["best_iteration"],
            last_eval=dict(ts.get("last_eval", {})),
        )
        if ck.get("world_size", 1) == dist.world_size():
            set_rng_state(ck["rng"])
        if dist.is_main():
            print(
                f"resumed from {path} at epoch {self.state.epoch}, iteration {self.state.iteration}",
                file=sys.stderr,
            )
        return True

    # ----------------------------------------------------------------------------------------------------------
    # loops

    def _loader(self, dataset, sampler, batch_size, drop_last, epoch) -> DataLoader:
        g = torch.Generator().manual_seed(
            self.cfg.train.seed * 7919 + epoch
        )  # worker seeds per epoch, not global RNG
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.cfg.data.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            collate_fn=self.collate_fn,
            generator=g,
            persistent_workers=False,
        )

    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _progress(self, total, desc):
        if not dist.is_main():
            disable = True
        elif self.show_progress is None:
            disable = None  # tqdm's own choice: a bar on a terminal, nothing in a log file
        else:
            disable = not self.show_progress
        return tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val_set is None:
            return {}
        evaluators = self.task.evaluators()
        for ev in evaluators.values():
            ev.reset()
        sampler = EpochSampler(
            len(self.val_set), shuffle=False, rank=dist.rank(), world_size=dist.world_size(), pad=False
        )  # no padding: every sample is counted exactly once
        bs = self.cfg.data.eval_batch_size or 2 * self.cfg.data.batch_size
        loader = self._loader(self.val_set, sampler, bs, False, 0)
        self.model.eval()
        with torch.inference_mode(), self._progress(len(loader), "eval") as bar:
            for batch in loader:
                batch = to_device(batch, self.device, self.cfg.train.channels_last)
                with self._autocast():
                    self.task.evaluation_step(self.model, batch, evaluators)
                bar.update()
        self.model.train()
        out = {}
        for name, ev in evaluators.items():
            for k, v in ev.compute().items():
                out[f"val/{name + '/' if name else ''}{k}"] = v
        return out

    @property
    def epoch_progress(self) -> float:
        """Epochs done, fractional mid-epoch (1.0 = the first epoch is complete); what logs call 'epoch'."""
        return round(self.state.epoch + self.state.batch_in_epoch / self.batches_per_epoch, 4)

    def _after_eval(self, metrics: dict[str, float]) -> None:
        self.state.last_eval = metrics
        self.logger.log(self.state.iteration, self.epoch_progress, metrics)
        key = self.cfg.train.best_metric
        if key in metrics:
            v = metrics[key]
            better = (
                self.state.best_value is None
                or (self.cfg.train.best_mode == "max" and v > self.state.best_value)
                or (self.cfg.train.best_mode == "min" and v < self.state.best_value)
            )
            if better:
                self.state.best_value, self.state.best_epoch = v, self.epoch_progress
                self.state.best_iteration = self.state.iteration
                self.save("best.pt")
        if dist.is_main():
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not k.endswith("count"))
            print(f"epoch {self.epoch_progress:g} iter {self.state.iteration}: {shown}", file=sys.stderr)

    def fit(self, resume: bool | str | Path = False, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the configured length. `stop_at` ends early after that many iterations (last.pt is saved),
        as an interrupted run would; a later `fit(resume=True)` continues exactly where it stopped.

        `resume`: True = the run's last.pt (refused if there is none), a path = that checkpoint, "auto" = last.pt
        if there is one, else a new run (said on stderr); see `resume_path`."""
        tc = self.cfg.train
        end = self.total_iters if stop_at is None else min(stop_at, self.total_iters)
        if resume:
            path = resume_path(self.run_dir, resume)
            if path is not None:
                self.resume(path)
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
        self.logger.write_env(self.device)
        start_time = time.time()
        names = list(self.optimizers)
        self.ddp_model.train()
        bs = self.cfg.data.batch_size

        while self.state.iteration < end:
            epoch = self.state.epoch
            skip = self.state.batch_in_epoch
            self.train_sampler.set_epoch(epoch, start=skip * bs)
            if hasattr(self.train_set, "set_epoch"):  # datasets whose augmentation is a function of the epoch
                self.train_set.set_epoch(epoch)
            loader = self._loader(self.train_set, self.train_sampler, bs, True, epoch)
            window_loss = {n: 0.0 for n in names}
            window_logs: dict[str, float] = {}
            window_count, window_images, window_t0 = 0, 0, time.time()
            bar = self._progress(self.batches_per_epoch - skip, f"epoch {epoch + 1}/{self.total_epochs}")
            for batch in loader:
                batch = to_device(batch, self.device, tc.channels_last)
                micro = self.state.batch_in_epoch % tc.accumulate
                boundary = micro == tc.accumulate - 1
                for n in names:
                    opt = self.optimizers[n]
                    if micro == 0:
                        opt.zero_grad(set_to_none=True)
                    sync = boundary or not dist.is_initialized()
                    ctx = contextlib.nullcontext() if sync else self.ddp_model.no_sync()
                    with ctx, self._autocast():
                        loss, logs = self.task.training_step(self.ddp_model, batch, n)
                    (loss / tc.accumulate).backward()
                    value = loss.detach().float()
                    if (
                        dist.is_initialized()
                    ):  # agree on the loss (logging, and all ranks stop together on NaN)
                        value = dist.all_reduce_sum(value.clone().to(self.device)) / dist.world_size()
                    value = value.item()
                    if not math.isfinite(value):
                        self._stop_non_finite(n, value)
                    window_loss[n] += value
                    for k, v in logs.items():
                        window_logs[k] = window_logs.get(k, 0.0) + float(v)
                    if boundary:
                        if tc.grad_clip:
                            torch.nn.utils.clip_grad_norm_(
                                [p for g in opt.param_groups for p in g["params"]], tc.grad_clip
                            )
                        opt.step()
                        self.schedulers[n].step()
                window_count += 1
                window_images += _batch_len(batch)
                self.state.batch_in_epoch += 1
                bar.update()
                if boundary:
                    self.state.iteration += 1
                    it = self.state.iteration
                    if it % tc.log_every == 0 or it == self.total_iters:
                        rec = {
                            f"train/loss{'' if n == 'main' else '_' + n}": window_loss[n] / window_count
                            for n in names
                        }
                        rec.update({f"train/{k}": v / window_count for k, v in window_logs.items()})
                        for n in names:
                            rec[f"lr{'' if n == 'main' else '_' + n}"] = self.optimizers[n].param_groups[0][
                                "lr"
                            ]
                        rec["train/images_per_s"] = (
                            window_images * dist.world_size() / max(time.time() - window_t0, 1e-9)
                        )
                        self.logger.log(it, self.epoch_progress, rec)
                        bar.set_postfix(loss=f"{rec[next(iter(rec))]:.4f}")
                        window_loss = {n: 0.0 for n in names}
                        window_logs, window_count, window_images, window_t0 = {}, 0, 0, time.time()
                    if (
                        tc.eval_every_iters
                        and it % tc.eval_every_iters == 0
                        and it < self.total_iters
                        and self.val_set is not None
                    ):
                        self._after_eval(self.evaluate())
                    if tc.checkpoint_every_iters and it % tc.checkpoint_every_iters == 0:
                        self.save("last.pt")
                # stop before fetching another batch: fetching may consume random state (augmentation)
                if self.state.batch_in_epoch >= self.batches_per_epoch or self.state.iteration >= end:
                    break
            bar.close()
            epoch_done = self.state.batch_in_epoch >= self.batches_per_epoch
            finished = self.state.iteration >= self.total_iters
            if epoch_done:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
            evaluate_now = finished or (
                epoch_done and tc.eval_every > 0 and self.state.epoch % tc.eval_every == 0
            )
            if evaluate_now and self.val_set is not None:
                self._after_eval(self.evaluate())
            self.save("last.pt")

        summary = {
            "best": {
                "metric": tc.best_metric,
                "value": self.state.best_value,
                "epoch": self.state.best_epoch,
                "iteration": self.state.best_iteration,
            },
            "final": self.state.last_eval,
            "seconds": round(time.time() - start_time, 3),
            "iterations": self.state.iteration,
            "epochs": self.state.epoch,
        }
        self.logger.write_summary(summary)
        self.logger.close()
        return summary

    def _stop_non_finite(self, optimizer: str, value: float) -> None:
        self.logger.close()
        last = self.ckpt_dir / "last.pt"
        kept = f"last good checkpoint kept at {last}" if last.is_file() else "no checkpoint was written yet"
        raise TrainingError(
            f"non-finite loss ({value}) for optimizer '{optimizer}' at epoch {self.state.epoch}, "
            f"iteration {self.state.iteration}; stopped, {kept}. Lower optim.lr or set train.grad_clip."
        )


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, Mapping):
        return _batch_len(next(iter(batch.values())))
    if isinstance(batch, Sequence) and batch:
        return _batch_len(batch[0])
    return 0
