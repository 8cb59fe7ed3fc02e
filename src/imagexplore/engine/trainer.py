"""The training engine shared by every task.

One loop: optimizer steps counted as iterations (training length in epochs or iterations), gradient
accumulation, clipping, bf16 autocast on CUDA, DDP under torchrun, evaluation every N epochs or iterations (and of
the starting weights with `train.eval_at_start`) through `reset / update / compute` evaluators, best/last
checkpoints and exact resume.

Several networks (GANs, CycleMatch, JMC): named optimizers (`optimizers: {D: ..., G: ...}`) stepped in order,
each `steps` times per iteration; while one steps, only its own parameters require gradients, so no backward
leaks into another network (also with accumulation), and under DDP each network is its own DDP module. Optional
EMA of a network, freezing by name and by stage.

A task plugs in through a small object (see `Task`): how to compute the loss of a batch, which evaluators to
run and how to feed them, and optionally its own optimizers, sampler, artefacts and state. Everything else lives
here once.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
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
from imagexplore.engine.ema import EMA
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
        """Optimizers by name, stepped in this order every iteration (e.g. {'D': ..., 'G': ...} for a GAN).

        Default: one per `optimizers:` section over its `module`, or a single 'main' one from `optim`."""
        if cfg.optimizers:
            return {
                name: build_optimizer(submodule(model, o.module, f"optimizers.{name}.module"), o.optim)
                for name, o in cfg.optimizers.items()
            }
        return {"main": build_optimizer(model, cfg.optim)}

    def build_train_sampler(self, dataset: Dataset, *, seed: int, rank: int, world_size: int):
        """The training sampler, or None for the default `EpochSampler` (a seeded permutation per epoch).

        A task's own must keep that interface — `set_epoch(epoch, start)` (start: samples of this rank's shard
        already consumed) and `shard_len()` — and give every rank the same length (e.g. a `GroupedEpochSampler`,
        which keeps two captions of one image out of a batch)."""
        return None

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

    def state_dict(self) -> dict[str, Any]:
        """The task's own training state (vocabularies, running statistics): tensors and plain types, saved in
        every checkpoint as 'task_state' and given back to `load_state_dict` on resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def enter_stage(self, stage) -> None:
        """Called when training enters a `train.stages` entry (a `StageConfig`; None before the first one or
        without stages), also on resume: a task whose loss terms change by stage reads `stage.loss_weights`."""

    def after_evaluation(
        self, model: nn.Module, metrics: dict[str, float], run_dir: Path, iteration: int, tensorboard
    ) -> None:
        """Called on the main process after each evaluation, with the model as evaluated (EMA weights if so
        configured): write artefacts (sample galleries as PNG + HTML under run_dir, `tensorboard.add_image` when
        it is not None)."""


def submodule(model: nn.Module, name: str, key: str = "module") -> nn.Module:
    """`model` itself for '', else its child of that attribute name (one line naming the children otherwise)."""
    if not name:
        return model
    children = dict(model.named_children())
    if name not in children:
        raise ConfigError(
            f"{key}: the model has no child '{name}'; its children: {', '.join(children) or 'none'}"
        )
    return children[name]


class ModelView:
    """The model as one optimizer's step sees it under DDP: its network replaced by that network's DDP wrapper,
    every other attribute the plain model's (other networks run without gradients and without DDP)."""

    def __init__(self, model: nn.Module, name: str, wrapper: nn.Module):
        self._model, self._name, self._wrapper = model, name, wrapper

    def __getattr__(self, attr):
        return self._wrapper if attr == self._name else getattr(self._model, attr)

    def __call__(self, *args, **kwargs):
        return self._model(*args, **kwargs)


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
        self.optimizers = task.configure_optimizers(self.model, cfg)
        self._setup_networks()
        self.ddp_model = self.model  # the single-network training path (kept as a name for the tasks' tests)
        if self.switching:  # DDP modules are built per stage, over the parameters trained in it
            if tc.compile:
                raise ConfigError(
                    "train.compile is not supported with several optimizers or freezing yet; set it to false"
                )
        else:
            if dist.is_initialized():
                self.ddp_model = nn.parallel.DistributedDataParallel(
                    self.model,
                    device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    find_unused_parameters=task.find_unused_parameters,
                )
            if tc.compile:
                # only the training path is compiled; state_dicts, evaluation and checkpoints use the plain module
                self.ddp_model = torch.compile(self.ddp_model)
        self.ema = None
        if tc.ema is not None:
            self.ema = EMA(submodule(self.model, tc.ema.module, "train.ema.module"), tc.ema.decay)

        bs = cfg.data.batch_size
        sampler_args = dict(seed=tc.seed, rank=dist.rank(), world_size=dist.world_size())
        self.train_sampler = task.build_train_sampler(train_set, **sampler_args) or EpochSampler(
            len(train_set), shuffle=True, pad=True, **sampler_args
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
            n: build_scheduler(o, self._schedule_cfg(n), self.total_iters, self.iters_per_epoch)
            for n, o in self.optimizers.items()
        }
        self.steps = {n: cfg.optimizers[n].steps if n in cfg.optimizers else 1 for n in self.optimizers}
        if max(self.steps.values()) > 1 and tc.accumulate > 1:
            raise ConfigError(
                "optimizers.<name>.steps > 1 needs train.accumulate = 1 (each step is a whole batch)"
            )
        self._stage_starts = [
            st.start * (self.iters_per_epoch if st.unit == "epochs" else 1) for st in tc.stages
        ]
        if self._stage_starts != sorted(self._stage_starts):
            raise ConfigError("train.stages must be listed in the order they start")
        self.amp = tc.amp and self.device.type == "cuda"
        self.state = TrainState()
        self.logger = RunLogger(self.run_dir, tensorboard=tc.tensorboard)

    # ----------------------------------------------------------------------------------------------------------
    # networks, optimizers, freezing

    def _schedule_cfg(self, name: str):
        named = self.cfg.optimizers.get(name)
        return named.schedule if named is not None and named.schedule is not None else self.cfg.schedule

    def _setup_networks(self) -> None:
        """Who owns each parameter, which network each optimizer trains, and what freezing applies."""
        tc = self.cfg.train
        self.params = dict(self.model.named_parameters())
        self.initial_grad = {n: p.requires_grad for n, p in self.params.items()}
        by_id = {id(p): n for n, p in self.params.items()}
        self.owner: dict[str, str] = {}
        for opt_name, opt in self.optimizers.items():
            for group in opt.param_groups:
                for p in group["params"]:
                    pname = by_id.get(id(p))
                    if pname is None:
                        raise ConfigError(f"optimizer '{opt_name}' holds a parameter that is not the model's")
                    if self.owner.get(pname, opt_name) != opt_name:
                        raise ConfigError(
                            f"parameter '{pname}' is trained by two optimizers ('{self.owner[pname]}' and "
                            f"'{opt_name}'); give each optimizer its own network (optimizers.<name>.module)"
                        )
                    self.owner[pname] = opt_name
        self.units = {
            n: (self.cfg.optimizers[n].module if n in self.cfg.optimizers else "") for n in self.optimizers
        }
        self.several = len(self.optimizers) > 1
        # per-step gradient switching is only needed with several optimizers or freezing; a single plain optimizer
        # keeps the exact single-network path (and its numbers) of before
        self.switching = self.several or bool(tc.freeze) or bool(tc.stages)
        known = set(self.optimizers)
        for i, st in enumerate(tc.stages):
            unknown = sorted(set(st.optimizers or []) - known)
            if unknown:
                raise ConfigError(
                    f"train.stages[{i}].optimizers: unknown '{unknown[0]}'; optimizers: {', '.join(known)}"
                )
        for key, patterns in [("train.freeze", tc.freeze)] + [
            (f"train.stages[{i}].freeze", st.freeze) for i, st in enumerate(tc.stages)
        ]:
            for pat in patterns:
                try:
                    rx = re.compile(pat)
                except re.error as e:
                    raise ConfigError(f"{key}: invalid regex {pat!r}: {e}") from None
                if not any(rx.search(n) for n in self.params):
                    raise ConfigError(
                        f"{key}: {pat!r} matches no parameter name (e.g. {next(iter(self.params))})"
                    )
        self.stage = None  # index into train.stages (-1: none configured), set by _enter_stage
        self.active = list(self.optimizers)
        self.frozen: set[str] = set()
        self.wrappers: dict[str, nn.Module] = {}

    def _stage_index(self, iteration: int) -> int:
        return max((i for i, s in enumerate(self._stage_starts) if s <= iteration), default=-1)

    def _enter_stage(self) -> None:
        """Apply the stage of the current iteration (freezing, active optimizers) if it changed; under DDP with
        several networks, (re)build one DDP module per network over the parameters it trains in this stage."""
        tc = self.cfg.train
        index = self._stage_index(self.state.iteration)
        if index == self.stage:
            return
        self.stage = index
        stage = tc.stages[index] if index >= 0 else None
        patterns = [re.compile(p) for p in [*tc.freeze, *(stage.freeze if stage else [])]]
        self.frozen = {n for n in self.params if any(rx.search(n) for rx in patterns)}
        self.active = [
            n for n in self.optimizers if stage is None or stage.optimizers is None or n in stage.optimizers
        ]
        self.task.enter_stage(stage)
        for name in self.active:
            if not any(self.owner.get(p) == name and p not in self.frozen for p in self.params):
                where = f"in stage '{stage.name or index}'" if stage else "with train.freeze"
                raise ConfigError(
                    f"optimizer '{name}' has nothing to train {where}; leave it out of the stage's optimizers"
                )
        if stage is not None and dist.is_main():
            print(
                f"stage '{stage.name or index}' from iteration {self.state.iteration}: optimizers "
                f"{', '.join(self.active)}; {len(self.frozen)} parameter tensors frozen",
                file=sys.stderr,
            )
        if dist.is_initialized():
            self.wrappers = {}  # drop the old DDP modules (and their gradient hooks) first
            for name in self.active:
                self._grad_for(name)
                self.wrappers[name] = nn.parallel.DistributedDataParallel(
                    submodule(self.model, self.units[name]),
                    device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    find_unused_parameters=self.task.find_unused_parameters,
                )
            if not self.several:
                self.ddp_model = self.wrappers[self.active[0]]
            self.ddp_networks = sorted(self.units[n] or "<model>" for n in self.active)  # what DDP wrapped

    def _grad_for(self, name: str) -> None:
        """Only `name`'s unfrozen parameters require gradients while it steps: nothing leaks into the others."""
        if self.switching:
            for pname, p in self.params.items():
                p.requires_grad_(self.owner.get(pname) == name and pname not in self.frozen)

    def _view(self, name: str):
        """What `training_step` gets for optimizer `name`: the model (or its DDP wrapper / a `ModelView`)."""
        if not self.several:
            return self.ddp_model
        if not self.wrappers:
            return self.model
        unit = self.units[name]
        return self.wrappers[name] if not unit else ModelView(self.model, unit, self.wrappers[name])

    def _no_sync(self, name: str):
        if not dist.is_initialized():
            return contextlib.nullcontext()
        return (self.wrappers[name] if self.wrappers else self.ddp_model).no_sync()

    @contextlib.contextmanager
    def _evaluation_weights(self):
        """The model to evaluate: with `train.ema.evaluate`, the averaged network stands in for the trained one."""
        ema = self.cfg.train.ema
        if self.ema is None or not ema.evaluate:
            yield self.model
        elif not ema.module:
            yield self.ema.module
        else:
            trained = getattr(self.model, ema.module)
            setattr(self.model, ema.module, self.ema.module)
            try:
                yield self.model
            finally:
                setattr(self.model, ema.module, trained)

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
            "meta": {**({"task": self.cfg.task} if self.cfg.task else {}), **self.task.checkpoint_meta()},
            "task_state": self.task.state_dict(),
            **(
                {"ema": {"module": self.cfg.train.ema.module, "state": self.ema.state_dict()}}
                if self.ema
                else {}
            ),
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
        if self.ema is not None:
            if "ema" not in ck:
                raise CheckpointError(f"checkpoint {path} holds no EMA weights, but train.ema is set")
            self.ema.load_state_dict(ck["ema"]["state"])
        self.task.load_state_dict(ck.get("task_state", {}))
        self.stage = None  # re-applied for the resumed iteration
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
        indices = torch.tensor(
            sampler.shard_indices(), dtype=torch.long
        )  # dataset index of each sample, in order
        seen = 0
        with self._evaluation_weights() as model:
            model.eval()
            with torch.inference_mode(), self._progress(len(loader), "eval") as bar:
                for batch in loader:
                    n = _batch_len(batch)
                    for ev in evaluators.values():  # gathering evaluators keep per-sample results by index
                        ev.set_batch_indices(indices[seen : seen + n])
                    seen += n
                    batch = to_device(batch, self.device, self.cfg.train.channels_last)
                    with self._autocast():
                        self.task.evaluation_step(model, batch, evaluators)
                    bar.update()
            out = {}
            for name, ev in evaluators.items():
                for k, v in ev.compute().items():
                    out[f"val/{name + '/' if name else ''}{k}"] = v
            if dist.is_main():
                self.task.after_evaluation(model, out, self.run_dir, self.state.iteration, self.logger.tb)
            model.train()
        self.model.train()
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
        if there is one, else a new run (said on stderr); see `resume_path`.

        `train.eval_at_start`: a new run evaluates the starting weights first (iteration 0), so best.pt is them
        until training beats them; a resumed run does not evaluate again. If they stay the best, one line on
        stderr says so and the summary's ``best.best_is_start`` is true."""
        tc = self.cfg.train
        end = self.total_iters if stop_at is None else min(stop_at, self.total_iters)
        resumed = False
        if resume:
            path = resume_path(self.run_dir, resume)
            if path is not None:
                resumed = self.resume(path)
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
        self.logger.write_env(self.device)
        start_time = time.time()
        names = list(self.optimizers)
        self.ddp_model.train()
        bs = self.cfg.data.batch_size
        if tc.eval_at_start and not resumed and self.state.iteration == 0 and self.val_set is not None:
            self._after_eval(self.evaluate())  # the starting weights: best.pt until training beats them

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
                self._enter_stage()
                for n in self.active:
                    opt = self.optimizers[n]
                    for _ in range(self.steps[n]):
                        if micro == 0:
                            opt.zero_grad(set_to_none=True)
                        self._grad_for(n)
                        sync = boundary or not dist.is_initialized()
                        with contextlib.nullcontext() if sync else self._no_sync(n), self._autocast():
                            loss, logs = self.task.training_step(self._view(n), batch, n)
                        (loss / tc.accumulate).backward()
                        value = loss.detach().float()
                        if (
                            dist.is_initialized()
                        ):  # agree on the loss (logging, and all ranks stop together on NaN)
                            value = dist.all_reduce_sum(value.clone().to(self.device)) / dist.world_size()
                        value = value.item()
                        if not math.isfinite(value):
                            self._stop_non_finite(n, value)
                        window_loss[n] += value / self.steps[n]
                        for k, v in logs.items():
                            window_logs[k] = window_logs.get(k, 0.0) + float(v) / self.steps[n]
                        if boundary:
                            if tc.grad_clip:
                                torch.nn.utils.clip_grad_norm_(
                                    [p for g in opt.param_groups for p in g["params"]], tc.grad_clip
                                )
                            opt.step()
                    if boundary:
                        self.schedulers[n].step()
                if boundary and self.ema is not None:
                    self.ema.update(submodule(self.model, self.cfg.train.ema.module))
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

        for pname, p in self.params.items():  # hand the model back as it came
            p.requires_grad_(self.initial_grad[pname])
        self.wrappers = {}
        best_is_start = self.state.best_iteration == 0  # only an evaluation at start (eval_at_start) has it
        if best_is_start and self.state.iteration > 0 and dist.is_main():
            last = self.state.last_eval.get(tc.best_metric)
            print(
                f"fine-tuning did not beat the starting weights on validation ({tc.best_metric} "
                f"{self.state.best_value:.3f} at iteration 0"
                + (f"; last {last:.3f}" if last is not None else "")
                + "): best.pt holds the starting weights",
                file=sys.stderr,
            )
        summary = {
            "best": {
                "metric": tc.best_metric,
                "value": self.state.best_value,
                "epoch": self.state.best_epoch,
                "iteration": self.state.best_iteration,
                "best_is_start": best_is_start,
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
